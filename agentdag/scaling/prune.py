"""DeepPrune-style pruning: stream n traces in parallel, stop those headed for an answer already being reached.

When a trace has generated `prefix_tokens` tokens, a judge compares its prefix with the prefix of each cluster's
first trace (online greedy clustering): if the judge deems them headed for the same answer, the trace joins that
cluster and its stream is closed at once (the server stops generating it); else it starts a new cluster and
runs to the end. A pruned trace's vote goes to its cluster's first trace's final answer, and the majority
answer wins. The default judge is lexical (word-set Jaccard or character n-gram cosine of the prefixes),
cheap but weak; `ModelJudge` asks a model.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

import anyio

from agentdag.errors import ModelError
from agentdag.fanout import FanOut, fan_out
from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, Usage
from agentdag.models.base import Model
from agentdag.scaling.answers import AnswerRule, jaccard_similarity, ngram_cosine, vote
from agentdag.scaling.base import Outcome, ScalingModel
from agentdag.scaling.budget import Budget, Ledger
from agentdag.tokens import CHARS_PER_TOKEN, estimate_prompt_tokens, estimate_tokens

__all__ = ["SAME_ANSWER_INSTRUCTION", "LexicalJudge", "ModelJudge", "Prune", "TraceJudge"]

SAME_ANSWER_INSTRUCTION = (
    "Two partial solutions to the same problem follow, both cut off mid-way. Will they reach the same final "
    "answer? Reply with yes or no only."
)


class TraceJudge(ABC):
    """Predicts, from two truncated traces, whether they will reach the same final answer."""

    @abstractmethod
    async def same_answer(self, first: str, second: str, ledger: Ledger) -> bool:
        """Whether the traces whose prefixes are given are headed for the same answer."""


class LexicalJudge(TraceJudge):
    """Same answer when the prefixes' lexical similarity reaches `threshold`.

    Args:
        threshold: the similarity at which two prefixes count as redundant.
        measure: "jaccard" (word sets) or "ngram" (character 3-gram cosine).
    """

    def __init__(self, *, threshold: float = 0.5, measure: Literal["jaccard", "ngram"] = "jaccard") -> None:
        self.threshold = threshold
        self.measure = measure

    async def same_answer(self, first: str, second: str, ledger: Ledger) -> bool:
        """Compare the prefixes' similarity with the threshold."""
        similarity = jaccard_similarity(first, second) if self.measure == "jaccard" else ngram_cosine(first, second)
        return similarity >= self.threshold


class ModelJudge(TraceJudge):
    """Asks a model whether two partial traces will reach the same answer (a yes/no call, charged to the budget).

    Args:
        model: the judging model.
        max_tokens: the judge call's completion limit.
    """

    def __init__(self, model: Model, *, max_tokens: int = 4) -> None:
        self.model = model
        self.max_tokens = max_tokens

    async def same_answer(self, first: str, second: str, ledger: Ledger) -> bool:
        """One judge call; a reply starting with "yes" means the same answer. Unaffordable calls say no."""
        prompt = f"{SAME_ANSWER_INSTRUCTION}\n\nSolution A:\n{first}\n\nSolution B:\n{second}"
        request = ModelRequest(
            messages=(Message(role="user", content=prompt),),
            settings=ModelSettings(temperature=0.0, max_tokens=self.max_tokens),
        )
        try:
            response = await ledger.call(self.model, request)
        except ModelError:
            return False
        return response is not None and re.match(r"\W*yes", response.text, re.IGNORECASE) is not None


_Assign = Callable[["_Trace"], Awaitable[None]]


@dataclass(kw_only=True)
class _Trace:
    """One streamed sample's state (mutable: the stream task updates it)."""

    index: int
    text: str = ""
    prefix: str = ""
    sent: bool = False
    pruned: bool = False
    completion: Completion | None = None
    cluster: list[int] = field(default_factory=list)
    tokens: int = 0


class Prune(ScalingModel):
    """Stream `n` traces in parallel, stop those judged redundant after `prefix_tokens`, vote over the rest.

    Args:
        wrapped: the model streamed (a model that streams token by token lets pruning save tokens).
        n: traces started.
        prefix_tokens: T, the tokens a trace generates before it is judged.
        judge: the redundancy judge (default: `LexicalJudge()`).
        answers: answer extraction and equivalence.
        budget: the most one request may spend.
        temperature: the traces' temperature.
    """

    strategy = "prune"

    def __init__(
        self,
        wrapped: Model,
        *,
        n: int = 8,
        prefix_tokens: int = 64,
        judge: TraceJudge | None = None,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = 0.7,
    ) -> None:
        super().__init__(wrapped, answers=answers, budget=budget, temperature=temperature)
        if n < 1 or prefix_tokens < 1:
            raise ValueError("n and prefix_tokens must be at least 1")
        self.n = n
        self.prefix_tokens = prefix_tokens
        self.judge = judge or LexicalJudge()

    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Stream the traces, prune, then vote."""
        traces = [_Trace(index=index) for index in range(self.n)]
        clusters: list[list[int]] = []
        lock = anyio.Lock()

        async def assign(trace: _Trace) -> None:
            async with lock:
                for cluster in clusters:
                    if await self.judge.same_answer(traces[cluster[0]].prefix, trace.prefix, ledger):
                        cluster.append(trace.index)
                        trace.cluster = cluster
                        return
                trace.cluster = [trace.index]
                clusters.append(trace.cluster)

        jobs = [functools.partial(self._stream_trace, request, trace, ledger, assign) for trace in traces]
        ran: FanOut[None] = await fan_out(jobs, catch=(ModelError,))
        sent = [trace for trace in traces if trace.sent]
        finished = [trace for trace in sent if trace.completion is not None]
        if not finished:
            raise ran.errors[0] if ran.errors else self.budget_error()
        ledger.samples += len(sent)
        ledger.add_stage(max(trace.tokens for trace in sent))
        return self._vote(traces, sent)

    async def _stream_trace(
        self, request: ModelRequest, trace: _Trace, ledger: Ledger, assign: Callable[[_Trace], Awaitable[None]]
    ) -> None:
        reservation = ledger.reserve(self.sample_request(request, ledger.started), share=self.n - trace.index)
        if reservation is None:
            return
        ledger.started += 1
        trace.sent = True
        prefix_chars = CHARS_PER_TOKEN * self.prefix_tokens
        parts: list[str] = []
        length = 0
        final: ModelResponse | None = None
        try:
            async with aclosing(self.wrapped.stream(reservation.request)) as chunks:
                async for chunk in chunks:
                    if isinstance(chunk, ModelResponse):
                        final = chunk
                        break
                    parts.append(chunk)
                    length += len(chunk)
                    if not trace.cluster and length >= prefix_chars:
                        trace.prefix = "".join(parts)[:prefix_chars]
                        await assign(trace)
                        if trace.cluster[0] != trace.index:
                            trace.pruned = True
                            break  # leaving the block closes the stream: the server stops generating
        finally:
            trace.text = "".join(parts)
            prompt_tokens = estimate_prompt_tokens(reservation.request.messages)
            usage = (
                final.usage
                if final is not None
                else Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=estimate_tokens(trace.text))
            )
            trace.tokens = usage.total_tokens
            ledger.settle(reservation, usage, counted=self.wrapped.counts_usage)
        if final is not None:
            trace.completion = final.completions[0]
            if not trace.cluster:  # finished before its prefix was judged: it joins the clustering whole
                trace.prefix = final.text[:prefix_chars]
                await assign(trace)

    def _vote(self, traces: list[_Trace], sent: list[_Trace]) -> Outcome:
        answers: list[str | None] = []
        for trace in traces:
            source = trace if trace.completion is not None else traces[trace.cluster[0]] if trace.pruned else None
            done = source.completion if source is not None else None
            answers.append(self.answers.extract(done.text) if done is not None else None)
        result = vote(answers, self.answers.equivalent)
        members = [traces[index] for index in result.members if traces[index].completion is not None]
        chosen = members[0] if members else next(trace for trace in traces if trace.completion is not None)
        assert chosen.completion is not None
        pruned = sum(trace.pruned for trace in sent)
        return Outcome(
            completion=chosen.completion,
            answer=answers[chosen.index],
            stopped="rule" if pruned else "done",
            pruned=pruned,
        )
