"""The scaling benchmark's simulator: calibrated to published statistics, no built-in refinement gain, and a
same-answer judge of known quality."""

from __future__ import annotations

import math
from collections import Counter

import anyio
import pytest
from agentdag.benchmarks.calibration import describe_calibration, measure_traces
from agentdag.benchmarks.data_paths import find_data_file
from agentdag.benchmarks.judging import SimulatedJudge, auroc, binormal_separation
from agentdag.benchmarks.math_data import load_questions
from agentdag.benchmarks.simulated import SimulatedModel, SimulatedQuestion

from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.scaling import Ledger, LexicalJudge, PruneConfig, extract_number
from agentdag.scaling.pdr import REFINE_INSTRUCTION

LEXICAL_BAND = (0.55, 0.69)
"""DeepPrune's 0.58 (embeddings) to 0.66 (zero-shot LLM judge), widened by the sampling error of 100 questions."""
JUDGE_BAND = (0.84, 0.90)
"""The stated 0.87, widened by the sampling error of the same pairs."""


def ask(question: str, *, seed: int, n: int = 1, notes: str = "") -> ModelRequest:
    content = f"{question}\n\nSolve the problem step by step."
    if notes:
        content += f"\n\n{REFINE_INSTRUCTION}\n\n<notes>\n{notes}\n</notes>"
    settings = ModelSettings(n=n, seed=seed, max_tokens=16_000)
    return ModelRequest(messages=(Message(role="user", content=content),), settings=settings)


@pytest.fixture(scope="module")
def sampled() -> SimulatedModel:
    """12 traces of each of the first 100 GSM8K questions, as best-of-n would draw them."""
    try:
        source = find_data_file("math/gsm8k_test.jsonl")
    except FileNotFoundError:
        pytest.skip("the shared GSM8K split is not available (set AGENTDAG_DATA)")
    questions = load_questions(source, limit=100)
    model = SimulatedModel([(item.question, item.answer) for item in questions], seed=0)

    async def draw() -> None:
        for index, item in enumerate(questions):
            await model.request(ask(item.question, seed=index, n=12))

    anyio.run(draw)
    return model


def test_the_shipped_lexical_judge_separates_prefixes_as_weakly_as_published(sampled: SimulatedModel) -> None:
    shipped = PruneConfig()
    lexical = LexicalJudge(threshold=shipped.judge_threshold, measure=shipped.measure)
    measured = measure_traces(
        sampled, lexical=lexical, judge=SimulatedJudge(sampled), prefix_tokens=shipped.prefix_tokens
    )
    judges = measured["judges"]
    assert judges["pairs"] == 100 * 66
    low, high = LEXICAL_BAND
    assert low <= judges["lexical"]["auroc"] <= high, judges["lexical"]


def test_the_simulated_judge_has_its_stated_auroc_on_the_same_pairs(sampled: SimulatedModel) -> None:
    judge = SimulatedJudge(sampled)
    measured = measure_traces(sampled, lexical=LexicalJudge(), judge=judge, prefix_tokens=64)["judges"]["simulated"]
    low, high = JUDGE_BAND
    assert low <= measured["auroc"] <= high, measured
    # at the d'/2 threshold both error rates are about Φ(-d'/2) = 0.21
    expected = 1 - 0.5 * (1 + math.erf(-judge.separation / 2 / math.sqrt(2)))
    assert measured["same_judged_same"] == pytest.approx(expected, abs=0.03)
    assert measured["different_judged_same"] == pytest.approx(1 - expected, abs=0.04)


def test_traces_match_the_published_accuracy_agreement_and_length(sampled: SimulatedModel) -> None:
    traces = measure_traces(sampled, lexical=LexicalJudge(), judge=SimulatedJudge(sampled), prefix_tokens=64)["traces"]
    assert traces["count"] == 1200 and traces["per_question"] == 12
    assert 0.85 <= traces["per_sample_accuracy"] <= 0.94  # DEER: 89.6% on GSM8K
    assert traces["answer_agreement"] >= 0.78  # DeepPrune: over 80% of traces agree
    assert 1484 * 0.9 <= traces["tokens_mean"] <= 1484 * 1.1  # DEER: 1,484 tokens on average
    assert traces["tokens_p90"] >= 1.8 * traces["tokens_p10"]  # lengths spread, as real traces do


def test_the_calibration_table_names_a_source_for_every_parameter() -> None:
    model = SimulatedModel([("What is 1 + 1?", "2")])
    table = describe_calibration(model, judge=SimulatedJudge(model))
    by_name = {item["parameter"]: item for item in table}
    assert by_name["copy_rate"]["value"] == 0 and by_name["refine_gain"]["value"] == 0
    assert by_name["per_sample_accuracy"]["value"] == pytest.approx(0.896)
    assert by_name["answer_agreement"]["value"] > 0.8
    assert by_name["simulated_judge_auroc"]["value"] == 0.87
    assert all(item["source"] for item in table)


def test_refinement_has_no_built_in_gain() -> None:
    """A sample whose prompt carries notes answers exactly as a fresh one would, by default."""
    question, answer = "A hard question: what is 20 + 22?", "42"
    model = SimulatedModel([(question, answer)], trace_tokens=20, trace_spread=0.0)
    model.questions[question] = SimulatedQuestion(
        question=question, answer=answer, accuracy=0.5, wrong=("40", "41", "43"), wrong_weights=(0.5, 0.3, 0.2)
    )
    notes = "Candidates agree and differ as follows: 42 (7 of 8); 41 (1 of 8). The answer is 42."

    def accuracy(with_notes: bool) -> float:
        async def draw() -> float:
            correct = 0
            for seed in range(1500):
                response = await model.request(ask(question, seed=seed, notes=notes if with_notes else ""))
                correct += extract_number(response.text) == answer
            return correct / 1500

        return anyio.run(draw)

    assert model.copy_rate == 0 and model.refine_gain == 0
    fresh, refined = accuracy(False), accuracy(True)
    assert fresh == pytest.approx(0.5, abs=0.04)
    assert refined == pytest.approx(fresh, abs=0.04)  # notes whose majority is right do not help


@pytest.mark.asyncio
async def test_copying_the_notes_majority_is_a_named_parameter() -> None:
    question = "What is 20 + 22?"
    model = SimulatedModel([(question, "42")], trace_tokens=20, copy_rate=1.0)
    notes = "Attempt 1: so the answer is 41. Attempt 2: The answer is 41."
    answers: Counter[str | None] = Counter()
    for seed in range(50):
        response = await model.request(ask(question, seed=seed, notes=notes))
        answers[extract_number(response.text)] += 1
    assert answers == {"41": 50}


@pytest.mark.asyncio
async def test_the_simulated_judge_is_seeded_symmetric_and_charged() -> None:
    model = SimulatedModel([("What is 20 + 22?", "42")], seed=1)
    first, second = [(await model.request(ask("What is 20 + 22?", seed=seed))).text for seed in (1, 2)]
    judge, again = SimulatedJudge(model, seed=5), SimulatedJudge(model, seed=5)
    assert judge.score(first[:256], second[:256]) == again.score(second[:256], first[:256])
    ledger = Ledger()
    await judge.same_answer(first[:256], second[:256], ledger)
    assert ledger.usage.calls == 1 and ledger.usage.prompt_tokens > 128 and judge.tokens == ledger.usage.total_tokens
    assert len(judge.comparisons) == 1
    with pytest.raises(LookupError, match="only judges the simulated model's traces"):
        judge.score("a prefix no trace starts with", first[:256])


def test_auroc_and_the_binormal_separation() -> None:
    assert auroc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert auroc([1.0], [1.0]) == 0.5
    assert auroc([2.0, 0.0], [1.0]) == 0.5
    assert auroc([], [1.0]) is None
    assert binormal_separation(0.5) == 0.0
    assert binormal_separation(0.87) == pytest.approx(1.593, abs=1e-3)
    with pytest.raises(ValueError, match="AUROC"):
        binormal_separation(1.0)
