"""Budgets and accounting: what a strategy may spend, what it spent, and the report it returns.

`B_total` is every token (prompt + completion) of every call; `B_seq` is the tokens on the critical path: for
each stage of calls that run in parallel, the largest of them, summed over the stages that run one after the
other (the latency proxy of the PDR paper).
"""

from __future__ import annotations

import dataclasses
from contextlib import aclosing
from dataclasses import dataclass

import anyio

from agentdag.messages import Completion, ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens
from agentdag.usage import report_usage

__all__ = ["Budget", "Ledger", "Reservation", "ScaledResponse", "ScalingReport", "report_of"]

_MIN_COMPLETION_TOKENS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """The most one strategy request may spend; None means unlimited.

    Attributes:
        max_tokens: prompt plus completion tokens over all calls. Each call's `max_tokens` is capped to what is
            left, and no call starts unless at least a few completion tokens remain after its prompt.
        max_calls: model calls (a stacked strategy's calls count once it returns).
    """

    max_tokens: int | None = None
    max_calls: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingReport:
    """What one strategy request spent and why it stopped.

    Attributes:
        strategy: the strategy's name, e.g. "self_consistency".
        calls: model calls made (a stacked strategy's calls included).
        prompt_tokens: prompt tokens over all calls.
        completion_tokens: completion tokens over all calls (for streams stopped early: those generated).
        tokens_seq: B_seq, the tokens on the critical path.
        wall_s: wall time of the request.
        samples: samples drawn (drafts, traces, votes), not counting judge or summary calls.
        rounds: sequential rounds (1 for one batch of parallel samples).
        stopped: why sampling ended: "rule" (a stopping rule fired), "limit" (max samples or rounds reached),
            "budget" (the budget ran out) or "done" (the strategy has no early stop).
        answer: the extracted answer of the returned completion, if any.
        pruned: samples stopped early because they were judged redundant.
    """

    strategy: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    tokens_seq: int
    wall_s: float
    samples: int
    rounds: int
    stopped: str
    answer: str | None
    pruned: int = 0

    @property
    def tokens_total(self) -> int:
        """B_total: prompt plus completion tokens over all calls."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaledResponse(ModelResponse):
    """A `ModelResponse` from a strategy, carrying its `ScalingReport`."""

    report: ScalingReport


def report_of(response: ModelResponse) -> ScalingReport:
    """The response's scaling report; a plain response gets one built from its usage (one sample, one round)."""
    if isinstance(response, ScaledResponse):
        return response.report
    usage = response.usage
    return ScalingReport(
        strategy="single",
        calls=usage.calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        tokens_seq=usage.total_tokens,
        wall_s=usage.latency_s,
        samples=len(response.completions),
        rounds=1,
        stopped="done",
        answer=None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Budget held for one call in flight: the request with its capped `max_tokens`, and what was held."""

    request: ModelRequest
    tokens: int
    calls: int


class Ledger:
    """The running account of one strategy request: spent usage, budget held by calls in flight, B_seq.

    Calls reserve before they start, so parallel calls cannot together overrun the budget.
    """

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self.usage = Usage()
        self.tokens_seq = 0
        self.samples = 0
        self.started = 0
        self._held_tokens = 0
        self._held_calls = 0

    @property
    def spent(self) -> bool:
        """Whether the budget leaves no room for another call."""
        if self.budget.max_calls is not None and self.usage.calls + self._held_calls >= self.budget.max_calls:
            return True
        room = self._room_tokens()
        return room is not None and room <= _MIN_COMPLETION_TOKENS

    def _room_tokens(self) -> int | None:
        if self.budget.max_tokens is None:
            return None
        return self.budget.max_tokens - self.usage.total_tokens - self._held_tokens

    def reserve(self, request: ModelRequest, *, share: int = 1) -> Reservation | None:
        """Hold budget for one call, or return None if the budget cannot afford it.

        Args:
            request: the call's request; its `max_tokens` is capped to the tokens left after its prompt.
            share: how many calls are about to start together, this one included: each is held at most an
                equal share of what is left.
        """
        if self.budget.max_calls is not None and self.usage.calls + self._held_calls >= self.budget.max_calls:
            return None
        room = self._room_tokens()
        if room is None:
            self._held_calls += 1
            return Reservation(request=request, tokens=0, calls=1)
        prompt = estimate_prompt_tokens(request.messages, tools=request.settings.tools)
        allowed = room // max(1, share) - prompt
        if allowed < _MIN_COMPLETION_TOKENS:
            return None
        wanted = request.settings.max_tokens
        cap = allowed if wanted is None else min(wanted, allowed)
        self._held_tokens += prompt + cap
        self._held_calls += 1
        settings = dataclasses.replace(request.settings, max_tokens=cap)
        return Reservation(request=dataclasses.replace(request, settings=settings), tokens=prompt + cap, calls=1)

    def settle(self, reservation: Reservation, usage: Usage, *, counted: bool = False) -> None:
        """Release a reservation and charge what the call actually used.

        The usage goes to the run's meter too, unless the model that made the call `counted` it itself.
        """
        self._held_tokens -= reservation.tokens
        self._held_calls -= reservation.calls
        self.usage += usage
        if not counted:
            report_usage(usage)

    def charge(self, usage: Usage) -> None:
        """Charge usage that no reservation held (e.g. a judge that brought its own model)."""
        self.usage += usage
        report_usage(usage)

    async def call(
        self, model: Model, request: ModelRequest, *, share: int = 1, streamed: bool = False
    ) -> ModelResponse | None:
        """Send one request within the budget; None (and no call) if the budget cannot afford it.

        With `streamed`, the reply is read as a stream, so that a call cancelled half-way is charged what it
        generated so far (a cancelled request is charged its prompt only: what it generated is unknown).
        """
        reservation = self.reserve(request, share=share)
        if reservation is None:
            return None
        self.started += 1
        usage = Usage()
        parts: list[str] = []
        try:
            if streamed:
                response = await _read_stream(model, reservation.request, parts)
            else:
                response = await model.request(reservation.request)
            usage = response.usage
            return response
        except anyio.get_cancelled_exc_class():
            prompt = estimate_prompt_tokens(reservation.request.messages, tools=reservation.request.settings.tools)
            usage = Usage(calls=1, prompt_tokens=prompt, completion_tokens=estimate_tokens("".join(parts)))
            raise
        finally:
            self.settle(reservation, usage, counted=model.counts_usage)

    def add_stage(self, seq_tokens: int) -> None:
        """Add one sequential stage's critical-path tokens to B_seq."""
        self.tokens_seq += seq_tokens


async def _read_stream(model: Model, request: ModelRequest, parts: list[str]) -> ModelResponse:
    """The model's streamed reply, its text collected in `parts` as it arrives."""
    async with aclosing(model.stream(request)) as chunks:
        async for chunk in chunks:
            if isinstance(chunk, ModelResponse):
                return chunk
            parts.append(chunk)
    text = "".join(parts)  # a stream without its final response: what it sent, as a reply cut off
    prompt_tokens = estimate_prompt_tokens(request.messages, tools=request.settings.tools)
    completion_tokens = estimate_tokens(text)
    usage = Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    return ModelResponse(completions=(Completion(text=text, finish_reason="length"),), usage=usage, model=model.name)
