"""`ScalingModel`: the base of every strategy, a model that wraps a model so strategies stack."""

from __future__ import annotations

import dataclasses
import functools
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from agentdag.errors import ModelError
from agentdag.fanout import fan_out
from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model, WrapperModel
from agentdag.scaling.answers import AnswerRule, vote
from agentdag.scaling.budget import Budget, Ledger, ScaledResponse, ScalingReport, report_of

__all__ = ["Outcome", "SampleCallback", "ScalingModel", "Single", "replace_last_user"]

SampleCallback = Callable[[int, ModelResponse], bool]
"""Called with a sample's index and its response as soon as it arrives; True stops the draw (see `draw`)."""
Solve = Callable[[ModelRequest, Ledger], Awaitable["Outcome"]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a strategy's `solve` returns: the chosen completion and how sampling ended.

    Attributes:
        completion: the reply handed back to the caller.
        answer: its extracted answer, if any.
        stopped: why sampling ended (see `ScalingReport.stopped`).
        rounds: sequential rounds run.
        pruned: samples stopped early because they were judged redundant.
    """

    completion: Completion
    answer: str | None
    stopped: str = "done"
    rounds: int = 1
    pruned: int = 0


def replace_last_user(request: ModelRequest, suffix: str) -> ModelRequest:
    """The request with `suffix` appended to its last user message (or added as a new user message)."""
    messages = list(request.messages)
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            messages[index] = Message(role="user", content=f"{messages[index].content}\n\n{suffix}")
            return dataclasses.replace(request, messages=tuple(messages))
    return dataclasses.replace(request, messages=(*messages, Message(role="user", content=suffix)))


class ScalingModel(WrapperModel):
    """A test-time scaling strategy: spends several calls of the wrapped model on one reply.

    Each `request` runs the strategy once per requested sample (`settings.n` runs, concurrently) under its own
    `Budget`, and returns a `ScaledResponse` whose usage sums every call and whose `report` says what was spent.
    `stream` runs the strategy and yields its reply as one chunk: a strategy's reply exists only once it ends.

    Args:
        wrapped: the model sampled (possibly another strategy).
        answers: how replies become answers and when two answers agree.
        budget: the most one request may spend.
        temperature: the sampling temperature of the samples (None keeps the request's). Sampling the same
            prompt several times only helps if the samples differ.
    """

    strategy = "scaling"

    def __init__(
        self,
        wrapped: Model,
        *,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = 0.7,
    ) -> None:
        super().__init__(wrapped)
        self.counts_usage = True  # every call it makes is counted as it ends (`Ledger.settle`)
        self.answers = answers or AnswerRule()
        self.budget = budget or Budget()
        self.temperature = temperature

    @abstractmethod
    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Run the strategy once for a one-sample request, spending through `ledger`."""

    async def request(self, request: ModelRequest) -> ScaledResponse:
        """Run the strategy `settings.n` times (concurrently) and return the replies with their report.

        Raises:
            ModelError: every sample failed, or the budget cannot afford a single sample.
        """
        single = dataclasses.replace(request, settings=dataclasses.replace(request.settings, n=1))
        count = max(1, request.settings.n)
        if count == 1:
            return await self._run(single)
        ran = await fan_out([functools.partial(self._run, single)] * count, catch=(ModelError,))
        if ran.errors:
            raise ran.errors[0]
        return _merge(ran.done)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Run the strategy, then yield its reply as one chunk and the response."""
        response = await self.request(request)
        yield response.text
        yield response

    async def _run(self, request: ModelRequest, solve: Solve | None = None) -> ScaledResponse:
        started = time.perf_counter()
        ledger = Ledger(self.budget)
        outcome = await (solve or self.solve)(request, ledger)
        wall_s = time.perf_counter() - started
        usage = dataclasses.replace(ledger.usage, latency_s=wall_s)
        report = ScalingReport(
            strategy=self.strategy,
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            tokens_seq=ledger.tokens_seq,
            wall_s=wall_s,
            samples=ledger.samples,
            rounds=outcome.rounds,
            stopped=outcome.stopped,
            answer=outcome.answer,
            pruned=outcome.pruned,
        )
        return ScaledResponse(completions=(outcome.completion,), usage=usage, model=self.name, report=report)

    # -- helpers for strategies ----------------------------------------------------------------------------

    def sample_request(self, request: ModelRequest, offset: int) -> ModelRequest:
        """The request for one sample: one completion, the strategy's temperature, a distinct seed."""
        settings = request.settings
        seed = settings.seed + offset if settings.seed is not None else None
        temperature = self.temperature if self.temperature is not None else settings.temperature
        return dataclasses.replace(
            request, settings=dataclasses.replace(settings, n=1, seed=seed, temperature=temperature)
        )

    async def draw(
        self,
        requests: Sequence[ModelRequest],
        ledger: Ledger,
        *,
        stage: bool = True,
        on_sample: SampleCallback | None = None,
        streamed: bool = False,
    ) -> list[ModelResponse]:
        """Send one sample per request concurrently within the budget; the successes, in request order.

        Samples the budget cannot afford are not sent. With `stage`, the draw is one stage of B_seq (its
        longest sample) and its samples count in `ledger.samples`. `on_sample` sees each success as it
        arrives, with its request's index; when it returns True the samples still running are stopped (and
        charged what they used). With `streamed` the samples are streamed, so a stopped one is charged what
        it generated.

        Raises:
            ModelError: every sample failed (the first error).
        """

        async def sample(index: int) -> ModelResponse | None:
            # Seeded by the calls started before it, when it starts: samples the budget skips take no seed.
            request = self.sample_request(requests[index], ledger.started)
            return await ledger.call(self.wrapped, request, share=len(requests) - index, streamed=streamed)

        jobs = [functools.partial(sample, index) for index in range(len(requests))]
        ran = await fan_out(jobs, catch=(ModelError,), stop=on_sample)
        done = ran.done
        if not done and ran.errors:
            raise ran.errors[0]
        if stage and done:
            ledger.add_stage(max(report_of(response).tokens_seq for response in done))
            ledger.samples += len(done)
        return done

    def budget_error(self) -> ModelError:
        """The error for a budget that cannot afford a single sample."""
        return ModelError(f"the budget {self.budget} cannot afford one sample", source=f"{self.strategy} strategy")

    def choose_by_vote(self, texts: Sequence[Completion]) -> tuple[Completion, str | None]:
        """The completion representing the majority answer, with that answer."""
        answers = [self.answers.extract(completion.text) for completion in texts]
        result = vote(answers, self.answers.equivalent)
        return texts[result.winner], result.answer


class Single(ScalingModel):
    """One sample, as a strategy: the baseline the others are measured against, with the same report.

    Unlike the other strategies it keeps the request's temperature unless one is given.
    """

    strategy = "single"

    def __init__(
        self,
        wrapped: Model,
        *,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = None,
    ) -> None:
        super().__init__(wrapped, answers=answers, budget=budget, temperature=temperature)

    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Draw one sample."""
        drawn = await self.draw([request], ledger)
        if not drawn:
            raise self.budget_error()
        completion = drawn[0].completions[0]
        return Outcome(completion=completion, answer=self.answers.extract(completion.text))


def _merge(responses: Sequence[ScaledResponse]) -> ScaledResponse:
    usage = sum((response.usage for response in responses), Usage())
    reports = [response.report for response in responses]
    wall_s = max(report.wall_s for report in reports)
    first = reports[0]
    report = dataclasses.replace(
        first,
        calls=usage.calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        tokens_seq=max(report.tokens_seq for report in reports),
        wall_s=wall_s,
        samples=sum(report.samples for report in reports),
        rounds=max(report.rounds for report in reports),
        pruned=sum(report.pruned for report in reports),
    )
    return ScaledResponse(
        completions=tuple(completion for response in responses for completion in response.completions),
        usage=dataclasses.replace(usage, latency_s=wall_s),
        model=responses[0].model,
        report=report,
    )
