from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import anyio.lowlevel
import pytest
from agentdag.benchmarks.judging import SimulatedJudge
from agentdag.benchmarks.simulated import SimulatedModel

from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, Usage
from agentdag.models.base import Model
from agentdag.scaling import (
    BestOfN,
    Budget,
    Ledger,
    LexicalJudge,
    ModelJudge,
    Prune,
    ScaledResponse,
    TraceJudge,
)
from agentdag.tokens import estimate_tokens

QUESTION = ModelRequest(messages=(Message(role="user", content="What is 6 * 7?"),))


class WordStream(Model):
    """Streams scripted traces word by word; counts the words it generated and the streams closed early."""

    name = "words"

    def __init__(self, traces: list[str]) -> None:
        self.traces = traces
        self.calls = 0
        self.generated = 0
        self.closed_early = 0

    async def request(self, request: ModelRequest) -> ModelResponse:
        text = self.traces[self.calls % len(self.traces)]
        self.calls += 1
        self.generated += estimate_tokens(text)
        usage = Usage(calls=1, completion_tokens=estimate_tokens(text))
        return ModelResponse(completions=(Completion(text=text),), usage=usage, model=self.name)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        text = self.traces[self.calls % len(self.traces)]
        self.calls += 1
        words = text.split(" ")
        finished = False
        sent = ""
        try:
            for index, word in enumerate(words):
                chunk = word if index == 0 else " " + word
                self.generated += estimate_tokens(sent + chunk) - estimate_tokens(sent)
                sent += chunk
                yield chunk
                await anyio.lowlevel.checkpoint()
            finished = True
        finally:
            if not finished:
                self.closed_early += 1
        usage = Usage(calls=1, completion_tokens=estimate_tokens(text))
        yield ModelResponse(completions=(Completion(text=text),), usage=usage, model=self.name)


def trace(topic: str, answer: int, words: int = 200) -> str:
    return " ".join(f"{topic}{index % 7}" for index in range(words)) + f" The answer is {answer}."


@pytest.mark.asyncio
async def test_prune_stops_redundant_traces_and_their_streams() -> None:
    # Traces 0, 2, 4 share a vocabulary (and answer); 1 and 3 share another.
    traces = [trace("alpha", 42), trace("beta", 41), trace("alpha", 42), trace("beta", 41), trace("alpha", 42)]
    model = WordStream(traces)
    strategy = Prune(model, n=5, prefix_tokens=20, judge=LexicalJudge(threshold=0.8))
    response = await strategy.request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert response.report.pruned == 3
    assert model.closed_early == 3
    assert response.report.answer == "42"  # the alpha cluster has three votes
    full = sum(estimate_tokens(text) for text in traces)
    assert model.generated < full * 0.6  # pruned streams generated only their prefixes
    assert response.report.completion_tokens == model.generated
    assert response.report.stopped == "rule"


@pytest.mark.asyncio
async def test_prune_keeps_every_trace_when_none_is_redundant() -> None:
    traces = [trace(topic, 40 + index) for index, topic in enumerate(["aa", "bb", "cc", "dd"])]
    model = WordStream(traces)
    response = await Prune(model, n=4, prefix_tokens=20, judge=LexicalJudge(threshold=0.8)).request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert response.report.pruned == 0 and model.closed_early == 0
    assert model.generated == sum(estimate_tokens(text) for text in traces)


class AlwaysSame(TraceJudge):
    def __init__(self) -> None:
        self.asked = 0

    async def same_answer(self, first: str, second: str, ledger: Ledger) -> bool:
        self.asked += 1
        return True


@pytest.mark.asyncio
async def test_traces_shorter_than_the_prefix_are_never_pruned() -> None:
    model = WordStream(["The answer is 4."])
    judge = AlwaysSame()
    response = await Prune(model, n=3, prefix_tokens=50, judge=judge).request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert response.report.pruned == 0 and model.closed_early == 0
    assert judge.asked == 2  # finished traces still join the clustering
    assert response.report.answer == "4"


@pytest.mark.asyncio
async def test_model_judge_asks_yes_or_no_and_is_charged() -> None:
    class Judge(Model):
        def __init__(self) -> None:
            self.asked = 0

        async def request(self, request: ModelRequest) -> ModelResponse:
            self.asked += 1
            usage = Usage(calls=1, prompt_tokens=50, completion_tokens=1)
            return ModelResponse(completions=(Completion(text="Yes."),), usage=usage, model="judge")

    judge_model = Judge()
    model = WordStream([trace("alpha", 1), trace("beta", 2)])
    response = await Prune(model, n=2, prefix_tokens=20, judge=ModelJudge(judge_model)).request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert judge_model.asked == 1
    assert response.report.pruned == 1
    assert response.report.calls == 3  # two traces and one judge call


@pytest.mark.asyncio
async def test_prune_honours_its_budget() -> None:
    model = WordStream([trace("alpha", 1, words=400)])
    strategy = Prune(model, n=4, prefix_tokens=20, judge=LexicalJudge(threshold=1.1), budget=Budget(max_calls=2))
    response = await strategy.request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert model.calls == 2 and response.report.samples == 2


@pytest.mark.asyncio
async def test_prune_with_a_judge_of_known_quality_saves_tokens_on_the_simulated_model() -> None:
    """With a judge as good as DeepPrune's (AUROC 0.87), pruning stops most redundant traces of ~1,500 tokens."""
    questions = [(f"Question number {index}: what is {index} + {index}?", str(2 * index)) for index in range(30)]

    async def run(make: type[BestOfN] | type[Prune]) -> tuple[int, int]:
        model = SimulatedModel(questions, seed=3)
        correct = 0
        for index, (question, answer) in enumerate(questions):
            settings = ModelSettings(seed=index, max_tokens=16_000)
            request = ModelRequest(messages=(Message(role="user", content=question),), settings=settings)
            if make is Prune:
                strategy: BestOfN | Prune = Prune(model, n=8, judge=SimulatedJudge(model))
            else:
                strategy = BestOfN(model, n=8)
            response = await strategy.request(request)
            correct += isinstance(response, ScaledResponse) and response.report.answer == answer
        return correct, model.generated_tokens

    voted, voted_tokens = await run(BestOfN)
    pruned, pruned_tokens = await run(Prune)
    assert pruned_tokens < 0.6 * voted_tokens  # generated tokens only: the judge's prompts are not generated
    assert pruned >= voted - 3  # within 10 points on 30 questions
