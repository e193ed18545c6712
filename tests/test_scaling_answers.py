from __future__ import annotations

import math

import pytest

from agentdag.scaling import (
    create_answer_rule,
    extract_boxed,
    extract_number,
    extract_text,
    majority_probability,
    same_number,
    semantic_entropy,
    vote,
    window_agrees,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 3 + 4 = 7. The answer is 7.", "7"),
        ("The answer is 1,200.50 dollars, not 3", "1200.5"),
        ("we get \\boxed{12} or 5", "12"),  # the boxed answer wins over later numbers
        ("x = 2, y = 3, so \\boxed{42}", "42"),
        ("first 10 then 12", "12"),
        ("Answer: -3", "-3"),
        ("So, the answer is 7 * 8 = 54.\nCheck: 7", "54"),
        ("The answer is 12. Then 5 more", "12"),
        ("no digits here", None),
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


def test_extract_boxed_handles_nesting_and_absence() -> None:
    assert extract_boxed("a \\boxed{x} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("nothing") is None
    assert extract_boxed("\\boxed{open") is None


def test_extract_text_normalises() -> None:
    assert extract_text("Thinking...\nThe answer is: The Eiffel Tower!") == "eiffel tower"
    assert extract_text("line one\n\nParis.") == "paris"
    assert extract_text("") is None


def test_equivalence_of_numbers_and_semantic_clusters() -> None:
    assert same_number("3.0", "3")
    assert same_number("1/2", "0.5")
    assert not same_number("3", "4")
    rule = create_answer_rule("text", similarity=0.7)
    assert rule.equivalent("new york city", "new york city usa")
    assert not rule.equivalent("paris", "london")
    assert not create_answer_rule("text").equivalent("new york city", "new york city usa")


def test_vote_counts_clusters_and_ignores_missing_answers() -> None:
    result = vote(["4", None, "5", "4.0", "5", "4"], same_number)
    assert result.answer == "4"
    assert result.winner == 0
    assert result.counts == (3, 2)
    assert (result.top, result.runner_up) == (3, 2)
    assert result.members == (0, 3, 5)
    tie = vote(["5", "4", "4", "5"], same_number)
    assert tie.answer == "5"  # ties go to the answer seen first
    assert vote([None, None], same_number).answer is None
    weighted = vote(["1", "2"], same_number, weights=[1, 3])
    assert weighted.answer == "2"


def test_semantic_entropy() -> None:
    assert semantic_entropy(["1", "1", "1"], same_number) == 0.0
    assert semantic_entropy(["1", "2"], same_number) == pytest.approx(math.log(2))
    assert semantic_entropy(["1", "1", "2", "3"], same_number) == pytest.approx(
        -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    )
    assert semantic_entropy([None, None], same_number) == pytest.approx(math.log(2))  # no answers: uncertain


def _integral_ratio(a: int, b: int, steps: int = 20_000) -> float:
    def f(x: float) -> float:
        return float(x**a * (1 - x) ** b)

    width = 1 / steps
    points = [(index + 0.5) * width for index in range(steps)]
    total = sum(f(x) for x in points)
    upper = sum(f(x) for x in points if x > 0.5)
    return upper / total


@pytest.mark.parametrize(("a", "b"), [(0, 0), (1, 0), (3, 0), (4, 0), (5, 2), (7, 3), (12, 9), (2, 5)])
def test_majority_probability_matches_the_integral(a: int, b: int) -> None:
    assert majority_probability(a, b) == pytest.approx(_integral_ratio(a, b), abs=1e-6)


def test_majority_probability_threshold_points() -> None:
    assert majority_probability(4, 0) == 31 / 32  # four unanimous votes pass 0.95
    assert majority_probability(3, 0) == 15 / 16  # three do not
    assert majority_probability(3, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="negative"):
        majority_probability(-1, 0)


def test_window_agrees() -> None:
    assert window_agrees(["2", "2.0", "2"], same_number)
    assert not window_agrees(["2", "3", "2"], same_number)
    assert not window_agrees(["2", None], same_number)
    assert not window_agrees([], same_number)
