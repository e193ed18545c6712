from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from agentdag.errors import ModelError
from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, Usage
from agentdag.models import FunctionModel
from agentdag.scaling import (
    AdaptiveTermination,
    AdaptiveTerminationConfig,
    BestOfN,
    BestOfNConfig,
    Budget,
    JudgeSelect,
    LogprobSelect,
    ParallelDistillRefine,
    PDRConfig,
    ScaledResponse,
    SelfConsistency,
    SelfConsistencyConfig,
    Single,
    VerifierSelect,
    create_strategy,
    parse_scaling_config,
    report_of,
)
from agentdag.scaling.best_of_n import JUDGE_INSTRUCTION
from agentdag.scaling.termination import calibrate_threshold

QUESTION = ModelRequest(messages=(Message(role="user", content="What is 2 + 2?"),))


def scripted(answers: list[str]) -> FunctionModel:
    """A model whose n-th reply answers answers[n] (the last one repeats)."""
    replies: Iterator[str] = iter(answers)
    last = [answers[-1]]

    def reply(request: ModelRequest) -> str:
        last[0] = next(replies, last[0])
        return f"Let me think step by step about it. The answer is {last[0]}."

    return FunctionModel(reply)


def scaled(response: ModelResponse) -> ScaledResponse:
    assert isinstance(response, ScaledResponse)
    return response


@pytest.mark.asyncio
async def test_single_reports_one_sample() -> None:
    model = scripted(["4"])
    response = scaled(await Single(model).request(QUESTION))
    assert response.report.samples == 1
    assert response.report.answer == "4"
    assert response.report.tokens_total == response.usage.total_tokens == response.report.tokens_seq
    assert response.usage.calls == 1


@pytest.mark.asyncio
async def test_best_of_n_majority_draws_n_in_parallel_and_votes() -> None:
    model = scripted(["5", "4", "4", "3", "4"])
    strategy = BestOfN(model, n=5)
    response = scaled(await strategy.request(QUESTION))
    assert response.report.answer == "4"
    assert "The answer is 4" in response.text
    assert len(model.requests) == 5
    assert all(request.settings.temperature == 0.7 for request in model.requests)
    report = response.report
    assert report.samples == 5 and report.calls == 5 and report.rounds == 1
    # Parallel samples: B_seq is one sample's tokens, B_total all five.
    assert report.tokens_seq * 5 == report.tokens_total
    assert report.tokens_total == response.usage.total_tokens


@pytest.mark.asyncio
async def test_seeds_are_distinct_per_sample() -> None:
    model = scripted(["4"])
    request = ModelRequest(messages=QUESTION.messages, settings=ModelSettings(seed=10))
    await BestOfN(model, n=3).request(request)
    assert sorted(r.settings.seed for r in model.requests if r.settings.seed is not None) == [10, 11, 12]


@pytest.mark.asyncio
async def test_judge_select_makes_one_comparison_call() -> None:
    answers = iter(["4", "5", "6"])

    def reply(request: ModelRequest) -> str:
        if JUDGE_INSTRUCTION in request.messages[-1].content:
            assert "Candidate 3:" in request.messages[-1].content
            return "Best: 2"
        return f"The answer is {next(answers)}."

    model = FunctionModel(reply)
    response = scaled(await BestOfN(model, n=3, selector=JudgeSelect()).request(QUESTION))
    assert response.report.answer == "5"
    assert response.report.calls == 4
    assert response.report.samples == 3


@pytest.mark.asyncio
async def test_judge_select_falls_back_to_majority_on_a_bad_reply() -> None:
    answers = iter(["4", "4", "6"])

    def reply(request: ModelRequest) -> str:
        if JUDGE_INSTRUCTION in request.messages[-1].content:
            return "Best: 9"
        return f"The answer is {next(answers)}."

    response = scaled(await BestOfN(FunctionModel(reply), n=3, selector=JudgeSelect()).request(QUESTION))
    assert response.report.answer == "4"


@pytest.mark.asyncio
async def test_verifier_and_logprob_selectors() -> None:
    model = scripted(["3", "4", "3"])
    verifier = BestOfN(model, n=3, selector=VerifierSelect(lambda problem, text: "is 4" in text))
    assert scaled(await verifier.request(QUESTION)).report.answer == "4"

    means = iter([-2.0, -0.1, -1.0])

    def with_logprobs(request: ModelRequest) -> ModelResponse:
        assert request.settings.logprobs
        mean = next(means)
        completion = Completion(text=f"The answer is {int(-mean * 10)}.", logprobs=(mean, mean))
        return ModelResponse(completions=(completion,), usage=Usage(calls=1, completion_tokens=2), model="f")

    logprob = BestOfN(FunctionModel(with_logprobs), n=3, selector=LogprobSelect())
    assert scaled(await logprob.request(QUESTION)).report.answer == "1"


@pytest.mark.asyncio
async def test_beta_rule_stops_after_four_unanimous_votes() -> None:
    model = scripted(["4"])
    response = scaled(await SelfConsistency(model, max_n=16).request(QUESTION))
    assert response.report.samples == 4
    assert response.report.stopped == "rule"
    assert len(model.requests) == 4


@pytest.mark.asyncio
async def test_beta_rule_keeps_sampling_while_votes_are_split() -> None:
    # 4,5 alternate: the top answer never leads enough, so sampling runs to max_n.
    model = scripted(["4", "5"] * 10)
    response = scaled(await SelfConsistency(model, max_n=10).request(QUESTION))
    assert response.report.samples == 10
    assert response.report.stopped == "limit"


@pytest.mark.asyncio
async def test_beta_rule_fires_exactly_when_the_probability_crosses() -> None:
    # After 4,5,4,4,4,4: a=5, b=1 -> P = 0.9375 (<0.95); one more 4: a=6, b=1 -> P = 0.9648 (>=0.95).
    model = scripted(["4", "5", "4", "4", "4", "4", "4", "4"])
    response = scaled(await SelfConsistency(model, max_n=20).request(QUESTION))
    assert response.report.samples == 7
    assert response.report.answer == "4"


@pytest.mark.asyncio
async def test_window_rule_stops_at_the_first_unanimous_window() -> None:
    model = scripted(["4", "5", "4", "4", "4", "4"])
    response = scaled(await SelfConsistency(model, rule="window", window=3, max_n=12).request(QUESTION))
    assert response.report.samples == 6  # first window split, second unanimous
    assert response.report.rounds == 2
    assert response.report.stopped == "rule"
    split = scripted(["4", "5", "6"] * 5)
    report = scaled(await SelfConsistency(split, rule="window", window=3, max_n=9).request(QUESTION)).report
    assert report.samples == 9 and report.stopped == "limit"


@pytest.mark.asyncio
async def test_budgets_hold_for_tokens_and_calls() -> None:
    model = scripted(["4", "5"] * 50)
    calls = scaled(await SelfConsistency(model, max_n=40, budget=Budget(max_calls=6)).request(QUESTION))
    assert calls.report.calls == 6
    assert calls.report.stopped == "budget"

    def long_reply(request: ModelRequest) -> str:
        cap = request.settings.max_tokens
        assert cap is not None  # the budget caps every call
        return ("word " * 400)[: 4 * cap] + " The answer is 4."

    strategy = BestOfN(FunctionModel(long_reply), n=8, budget=Budget(max_tokens=300))
    report = scaled(await strategy.request(QUESTION)).report
    assert report.tokens_total <= 300 + 8 * 5  # each reply may overrun its cap by its answer line
    with pytest.raises(ModelError, match="cannot afford"):
        await BestOfN(model, n=2, budget=Budget(max_tokens=10)).request(QUESTION)


@pytest.mark.asyncio
async def test_adaptive_termination_secretary_rule() -> None:
    # R=5 watches floor(5/e)=1 round. Entropies: round 1 ln3 (three answers), round 2 ln2, which is lower: stop.
    model = scripted(["1", "2", "3", "1", "2", "1"])
    strategy = AdaptiveTermination(model, n=3, max_rounds=5, stop_at_zero=False)
    report = scaled(await strategy.request(QUESTION)).report
    assert report.rounds == 2 and report.stopped == "rule"
    # Round 2 saw round 1's attempts.
    assert "Attempt 3:" in model.requests[3].messages[-1].content


@pytest.mark.asyncio
async def test_secretary_rule_does_not_fire_without_a_lower_entropy() -> None:
    model = scripted(["1", "2", "1", "2"] * 10)  # every round of 2 splits evenly: ln2 each
    strategy = AdaptiveTermination(model, n=2, max_rounds=4, stop_at_zero=False)
    report = scaled(await strategy.request(QUESTION)).report
    assert report.rounds == 4 and report.stopped == "limit"
    unanimous = AdaptiveTermination(scripted(["7"]), n=3, max_rounds=4, stop_at_zero=False)
    assert scaled(await unanimous.request(QUESTION)).report.rounds == 4  # 0 is never below 0
    assert scaled(await AdaptiveTermination(scripted(["7"]), n=3).request(QUESTION)).report.rounds == 1


@pytest.mark.asyncio
async def test_adaptive_termination_threshold_rule_and_calibration() -> None:
    model = scripted(["1", "2", "1", "1", "1", "1"])  # round 1: ln2 > 0.6; round 2 unanimous
    strategy = AdaptiveTermination(model, n=2, max_rounds=5, rule="threshold", threshold=0.6, stop_at_zero=False)
    report = scaled(await strategy.request(QUESTION)).report
    assert report.rounds == 2 and report.stopped == "rule"
    threshold, ledger = await calibrate_threshold(scripted(["1", "2", "3", "3"]), [QUESTION, QUESTION], n=2)
    assert threshold == pytest.approx(0.0) or threshold == pytest.approx(0.6931, abs=1e-3)
    assert ledger.usage.calls == 4
    with pytest.raises(ValueError, match="threshold"):
        AdaptiveTermination(model, rule="threshold")


@pytest.mark.asyncio
async def test_strategies_stack() -> None:
    model = scripted(["4", "5", "4", "4", "6", "4", "4", "4", "5", "4", "4", "4"])
    inner = BestOfN(model, n=3)
    outer = SelfConsistency(inner, rule="window", window=2, max_n=4)
    response = scaled(await outer.request(QUESTION))
    assert response.report.answer == "4"
    inner_samples = len(model.requests)
    assert inner_samples == 3 * response.report.samples
    # Usage and B_total include every inner call; B_seq counts the inner strategies' own critical paths.
    assert response.report.calls == inner_samples
    assert response.report.tokens_total == response.usage.total_tokens
    assert response.report.tokens_seq < response.report.tokens_total


@pytest.mark.asyncio
async def test_n_greater_than_one_runs_the_strategy_per_sample_and_stream_runs_it() -> None:
    model = scripted(["4"])
    strategy = SelfConsistency(model, max_n=8)
    request = ModelRequest(messages=QUESTION.messages, settings=ModelSettings(n=2))
    response = scaled(await strategy.request(request))
    assert len(response.completions) == 2
    assert response.report.samples == 8
    chunks = [chunk async for chunk in strategy.stream(QUESTION)]
    assert isinstance(chunks[-1], ScaledResponse)
    assert chunks[0] == chunks[-1].text
    assert chunks[-1].report.samples == 4  # streaming did not bypass the strategy


def test_scaling_config_parses_and_validates() -> None:
    configs = parse_scaling_config([{"strategy": "pdr", "rounds": [4, 2, 1]}, {"strategy": "best_of_n", "n": 2}])
    assert isinstance(configs[0], PDRConfig) and configs[0].rounds == (4, 2, 1)
    assert isinstance(configs[1], BestOfNConfig)
    (single,) = parse_scaling_config({"strategy": "self_consistency", "max_n": 8})
    assert isinstance(single, SelfConsistencyConfig) and single.max_n == 8
    with pytest.raises(ValidationError):
        parse_scaling_config({"strategy": "self_consistency", "maxn": 8})
    with pytest.raises(ValidationError):
        parse_scaling_config({"strategy": "pdr", "rounds": [4, 2]})
    with pytest.raises(ValidationError):
        parse_scaling_config({"strategy": "best_of_n", "selector": "verifier"})
    with pytest.raises(ValidationError):
        parse_scaling_config({"strategy": "adaptive_termination", "rule": "threshold"})
    with pytest.raises(ValidationError):
        parse_scaling_config({"strategy": "magic"})


def test_create_strategy_builds_and_stacks() -> None:
    model = scripted(["4"])
    configs = parse_scaling_config(
        [
            {"strategy": "best_of_n", "n": 3, "selector": "verifier", "verifier": "operator:contains"},
            {"strategy": "adaptive_termination", "rule": "threshold", "threshold": 0.3, "budget_calls": 12},
        ]
    )
    stacked = create_strategy(configs, model)
    assert isinstance(stacked, AdaptiveTermination)
    assert isinstance(stacked.wrapped, BestOfN)
    assert stacked.budget.max_calls == 12
    assert isinstance(create_strategy(AdaptiveTerminationConfig(), model), AdaptiveTermination)
    assert isinstance(create_strategy(PDRConfig(rounds=(1, 1, 1)), model), ParallelDistillRefine)
    with pytest.raises(ValueError, match="cannot import"):
        create_strategy(BestOfNConfig(selector="verifier", verifier="nowhere.at_all:fn"), model)


@pytest.mark.asyncio
async def test_report_of_a_plain_response() -> None:
    response = await scripted(["4"]).request(QUESTION)
    report = report_of(response)
    assert report.strategy == "single" and report.tokens_seq == response.usage.total_tokens


def test_scaling_exports_are_sorted_and_documented() -> None:
    import inspect

    import agentdag.scaling as scaling

    assert isinstance(scaling.__all__, tuple)
    assert list(scaling.__all__) == sorted(scaling.__all__)
    for name in scaling.__all__:
        value = getattr(scaling, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert getattr(value, "__doc__", None), f"{name} has no docstring"
