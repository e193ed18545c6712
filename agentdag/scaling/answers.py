r"""Answer extraction and equivalence: how samples are reduced to answers, clustered and voted on.

An `AnswerRule` pairs an `extract` function (reply text to answer, or None when the reply gives none) with an
`equivalent` function (do two answers say the same?). Every strategy takes one, so numbers, `\boxed{}`
answers, normalised strings and semantic clusters plug in the same way.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from agentdag.scaling.reading import current_plan_reading, extract_plan
from agentdag.schemas import parse_decision

__all__ = [
    "AnswerKind",
    "AnswerRule",
    "Vote",
    "cluster_answers",
    "create_answer_rule",
    "extract_boxed",
    "extract_number",
    "extract_text",
    "jaccard_similarity",
    "ngram_cosine",
    "normalize_text",
    "same_number",
    "same_text",
    "semantic_entropy",
    "vote",
]

AnswerKind = Literal["auto", "number", "boxed", "text", "plan"]
Extract = Callable[[str], str | None]
Equivalent = Callable[[str, str], bool]

# An exponent has at most three digits: 10**1e9 would take minutes to compute (`\boxed{1e999999999}`).
_EXPONENT = r"(?:[eE][-+]?\d{1,3}(?!\d))?"
_NUMBER = re.compile(rf"-?\d[\d,]*(?:\.\d+)?{_EXPONENT}(?:/\d+)?|-?\.\d+{_EXPONENT}")
_LONG_EXPONENT = re.compile(r"[eE][-+]?0*\d{4}")
_ANSWER_MARK = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_KEYED = ("plan:", "refine:")
_PLAN_START = re.compile(r'\s*\{\s*"(?:thought|nodes)"')


def extract_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return text[begin:index].strip() or None
            depth -= 1
    return None


def extract_number(text: str) -> str | None:
    r"""The number a reply answers with, in canonical form (`1,200.50` becomes `1200.5`), or None.

    Scientific notation is one number (`1.5e-7`); an exponent of four or more digits is not read as one.

    Looks in the last `\boxed{}` (its last number), then in the sentence after the last "answer is"/"answer:"
    (its first number, or its last after an "="), then anywhere (the last number).
    """
    boxed = extract_boxed(text)
    marks = list(_ANSWER_MARK.finditer(text))
    # After an "answer is" mark the first number of its sentence is the answer, unless the sentence works it
    # out ("7 * 8 = 56"): then the last one is. Elsewhere the last number is.
    regions: list[tuple[str, int]] = [(boxed, -1)] if boxed else []
    if marks:
        sentence = re.split(r"\n|\.\s", text[marks[-1].end() :], maxsplit=1)[0]
        regions.append((sentence, -1 if "=" in sentence else 0))
    regions.append((text, -1))
    for region, position in regions:
        numbers = _NUMBER.findall(region)
        if numbers:
            return _canonical_number(numbers[position])
    return None


def _canonical_number(raw: str) -> str:
    cleaned = raw.replace(",", "")
    value = _fraction(cleaned)
    if value is None:
        return cleaned
    try:
        return str(value.numerator) if value.denominator == 1 else f"{float(value):.10g}"
    except OverflowError:  # a fraction past float's range
        return cleaned


def _fraction(text: str) -> Fraction | None:
    """`text` as an exact number, or None when it is none (or has an exponent of four or more digits)."""
    if _LONG_EXPONENT.search(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def normalize_text(text: str) -> str:
    """Lower-case, strip punctuation and the articles a/an/the, collapse whitespace."""
    lowered = text.lower().translate(str.maketrans("", "", string.punctuation))
    words = [word for word in lowered.split() if word not in ("a", "an", "the")]
    return " ".join(words)


def extract_text(text: str) -> str | None:
    r"""A normalised string answer, or None for an empty reply.

    The `\boxed{}` content, else what follows the last "answer is", else the last non-empty line.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return normalize_text(boxed) or None
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        tail = text[marks[-1].end() :].strip().splitlines()
        if tail:
            return normalize_text(tail[0]) or None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return normalize_text(lines[-1]) or None if lines else None


def same_text(first: str, second: str) -> bool:
    """Equal after `normalize_text`."""
    return normalize_text(first) == normalize_text(second)


def same_number(first: str, second: str) -> bool:
    """Numerically equal (within 1e-9 relative); falls back to `same_text` for non-numbers."""
    exact = _fraction(first.replace(",", "")), _fraction(second.replace(",", ""))
    if exact[0] is None or exact[1] is None:
        return same_text(first, second)
    try:
        a, b = float(exact[0]), float(exact[1])
    except OverflowError:  # past float's range: compare exactly
        return exact[0] == exact[1]
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def jaccard_similarity(first: str, second: str) -> float:
    """Jaccard similarity of the two texts' sets of lower-cased words (1.0 for two empty texts)."""
    a, b = set(_WORD.findall(first.lower())), set(_WORD.findall(second.lower()))
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def ngram_cosine(first: str, second: str, *, n: int = 3) -> float:
    """Cosine similarity of the two texts' character n-gram counts (1.0 for two empty texts)."""
    a, b = _ngrams(first, n), _ngrams(second, n)
    if not a and not b:
        return 1.0
    dot = sum(count * b[gram] for gram, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0


def _ngrams(text: str, n: int) -> Counter[str]:
    squeezed = " ".join(text.lower().split())
    return Counter(squeezed[index : index + n] for index in range(max(0, len(squeezed) - n + 1)))


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerRule:
    """How replies become comparable answers.

    Attributes:
        extract: reply text to its answer, or None when the reply gives no answer.
        equivalent: whether two extracted answers say the same thing; should be reflexive and symmetric.
    """

    extract: Extract = extract_number
    equivalent: Equivalent = same_number


def _extract_auto(text: str) -> str | None:
    """A plan's key for plans, a decision's answer for joiner decisions, else a number or normalised text."""
    if current_plan_reading() is not None or _PLAN_START.match(text):
        plan = extract_plan(text)
        if plan is not None:
            return plan
    decision = parse_decision(text) if text.lstrip().startswith("{") else None
    if decision is not None:
        text = decision.answer
    return extract_number(text) or extract_text(text)


def _same(first: str, second: str) -> bool:
    return first == second


def create_answer_rule(kind: AnswerKind = "auto", *, similarity: float | None = None) -> AnswerRule:
    r"""The answer rule for a kind of answer.

    Args:
        kind: "number" (numerically equal), "boxed" (`\boxed{}` contents, numbers compared as numbers), "text"
            (normalised strings), "plan" (plans, equal when they make the same calls: see `extract_plan`),
            "auto" (a plan for plans, the answer field for joiner decisions, else a number if the reply has
            one, else normalised text).
        similarity: when set, answers also count as equivalent when their character 3-gram cosine reaches it
            (semantic clusters of free-text answers).
    """
    extractors: dict[AnswerKind, Extract] = {
        "auto": _extract_auto,
        "number": extract_number,
        "boxed": extract_boxed,
        "text": extract_text,
        "plan": extract_plan,
    }
    base = same_text if kind == "text" else _same if kind == "plan" else same_number
    if similarity is None:
        return AnswerRule(extract=extractors[kind], equivalent=base)
    threshold = similarity

    def equivalent(first: str, second: str) -> bool:
        if first.startswith(_KEYED) or second.startswith(_KEYED):
            return first == second  # plan keys are digests: only equal ones are the same plan
        return base(first, second) or ngram_cosine(normalize_text(first), normalize_text(second)) >= threshold

    return AnswerRule(extract=extractors[kind], equivalent=equivalent)


def cluster_answers(answers: Sequence[str | None], equivalent: Equivalent) -> list[list[int]]:
    """Group answer indices greedily: each answer joins the first cluster whose first member it equals.

    None answers (no answer given) form a singleton cluster each. Clusters come in order of first appearance.
    """
    clusters: list[list[int]] = []
    for index, answer in enumerate(answers):
        if answer is not None:
            for cluster in clusters:
                head = answers[cluster[0]]
                if head is not None and equivalent(head, answer):
                    cluster.append(index)
                    break
            else:
                clusters.append([index])
        else:
            clusters.append([index])
    return clusters


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """The outcome of a vote over answers.

    Attributes:
        answer: the winning answer (None if no sample gave one).
        winner: the index of the sample that represents the winning answer (its first member).
        counts: votes per cluster of equivalent answers, largest first (answered clusters only).
        members: the sample indices of the winning cluster.
    """

    answer: str | None
    winner: int
    counts: tuple[int, ...]
    members: tuple[int, ...]

    @property
    def top(self) -> int:
        """Votes for the winning answer."""
        return self.counts[0] if self.counts else 0

    @property
    def runner_up(self) -> int:
        """Votes for the second most common answer."""
        return self.counts[1] if len(self.counts) > 1 else 0


def vote(answers: Sequence[str | None], equivalent: Equivalent, *, weights: Sequence[float] | None = None) -> Vote:
    """Majority vote over answers, ties going to the answer seen first; samples without an answer abstain.

    Args:
        answers: one extracted answer per sample.
        equivalent: the equivalence of answers.
        weights: the weight of each sample's vote (default 1 each); `counts` then sums rounded weights.
    """
    if not answers:
        raise ValueError("vote() needs at least one answer")
    weight = list(weights) if weights is not None else [1.0] * len(answers)
    clusters = [c for c in cluster_answers(answers, equivalent) if answers[c[0]] is not None]
    if not clusters:
        return Vote(answer=None, winner=0, counts=(), members=(0,))
    totals = [sum(weight[index] for index in cluster) for cluster in clusters]
    order = sorted(range(len(clusters)), key=lambda position: -totals[position])  # stable: first seen wins ties
    best = clusters[order[0]]
    return Vote(
        answer=answers[best[0]],
        winner=best[0],
        counts=tuple(round(totals[position]) for position in order),
        members=tuple(best),
    )


def semantic_entropy(answers: Sequence[str | None], equivalent: Equivalent) -> float:
    """Entropy -Σ p log p (nats) of the clusters of equivalent answers, p = cluster size / number of answers.

    Each missing answer counts as its own cluster: a sample that gives no answer adds uncertainty.
    """
    if not answers:
        return 0.0
    total = len(answers)
    sizes = [len(cluster) for cluster in cluster_answers(answers, equivalent)]
    return -sum((size / total) * math.log(size / total) for size in sizes)
