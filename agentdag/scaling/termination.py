"""SEAT-style adaptive termination: rounds of parallel samples, stopped when the answers' semantic entropy is low.

Each round draws `n` samples; from the second round on they see the previous round's replies (a bounded
excerpt). After each round the semantic entropy SE = -Σ p(c) log p(c) over clusters of equivalent answers is
compared with a stopping rule:

* "threshold": stop once SE ≤ a threshold, calibrated beforehand by `calibrate_threshold` (pre-sampling);
* "secretary" (threshold-free): watch the first ⌊R/e⌋ rounds, then stop at the first round whose SE is below
  the least SE seen while watching.

With `stop_at_zero` (the default) either rule also stops as soon as all answers agree (SE = 0): no later round
can go lower, and without it the secretary rule would run every round after a unanimous first one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from agentdag.errors import ModelError
from agentdag.messages import Completion, ModelRequest
from agentdag.models.base import Model
from agentdag.scaling.answers import AnswerRule, semantic_entropy
from agentdag.scaling.base import Outcome, ScalingModel, replace_last_user
from agentdag.scaling.budget import Budget, Ledger
from agentdag.scaling.pdr import bound_tokens

__all__ = ["RECONSIDER_INSTRUCTION", "AdaptiveTermination", "TerminationRule", "calibrate_threshold"]

TerminationRule = Literal["threshold", "secretary"]

RECONSIDER_INSTRUCTION = (
    "Earlier attempts at this problem follow. Check their reasoning, keep what is right, fix what is wrong, "
    "and solve the problem again. State the final answer."
)


class AdaptiveTermination(ScalingModel):
    """Multi-round parallel reasoning, stopped by the semantic entropy of each round's answers.

    Args:
        wrapped: the model sampled.
        n: samples per round.
        max_rounds: R, the most rounds.
        rule: "secretary" or "threshold".
        threshold: the entropy threshold (nats) of the threshold rule; see `calibrate_threshold`.
        stop_at_zero: also stop when every answer of a round agrees.
        context_tokens: the bound on the previous round's excerpt each sample sees.
        answers: answer extraction and equivalence (the entropy's clusters).
        budget: the most one request may spend.
        temperature: the samples' temperature.
    """

    strategy = "adaptive_termination"

    def __init__(
        self,
        wrapped: Model,
        *,
        n: int = 4,
        max_rounds: int = 5,
        rule: TerminationRule = "secretary",
        threshold: float | None = None,
        stop_at_zero: bool = True,
        context_tokens: int = 512,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = 0.7,
    ) -> None:
        super().__init__(wrapped, answers=answers, budget=budget, temperature=temperature)
        if n < 1 or max_rounds < 1:
            raise ValueError("n and max_rounds must be at least 1")
        if rule == "threshold" and threshold is None:
            raise ValueError("the threshold rule needs a threshold (see calibrate_threshold)")
        self.n = n
        self.max_rounds = max_rounds
        self.rule: TerminationRule = rule
        self.threshold = threshold
        self.stop_at_zero = stop_at_zero
        self.context_tokens = context_tokens

    def fires(self, entropies: Sequence[float]) -> bool:
        """Whether the rule stops after the latest of these per-round entropies."""
        current = entropies[-1]
        if self.stop_at_zero and current == 0.0:
            return True
        if self.rule == "threshold":
            assert self.threshold is not None
            return current <= self.threshold
        watched = math.floor(self.max_rounds / math.e)
        if len(entropies) <= watched:
            return False
        return current < min(entropies[:watched], default=math.inf)

    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Run rounds until the rule fires, `max_rounds` pass or the budget runs out; vote over the last round."""
        previous: list[Completion] = []
        entropies: list[float] = []
        stopped = "limit"
        for _ in range(self.max_rounds):
            drawn = await self.draw([self.condition(request, previous)] * self.n, ledger)
            if not drawn:
                stopped = "budget"
                break
            previous = [response.completions[0] for response in drawn]
            answers = [self.answers.extract(completion.text) for completion in previous]
            entropies.append(semantic_entropy(answers, self.answers.equivalent))
            if self.fires(entropies):
                stopped = "rule"
                break
            if len(drawn) < self.n:
                stopped = "budget"
                break
        if not previous:
            raise self.budget_error()
        completion, answer = self.choose_by_vote(previous)
        return Outcome(completion=completion, answer=answer, stopped=stopped, rounds=len(entropies))

    def condition(self, request: ModelRequest, previous: Sequence[Completion]) -> ModelRequest:
        """The request of a round that follows `previous` (the plain request for the first round)."""
        if not previous:
            return request
        share = max(8, self.context_tokens // len(previous) - 4)
        excerpts = "\n\n".join(
            f"Attempt {number}:\n{bound_tokens(completion.text, share)}"
            for number, completion in enumerate(previous, 1)
        )
        notes = bound_tokens(excerpts, self.context_tokens)
        return replace_last_user(request, f"{RECONSIDER_INSTRUCTION}\n\n<attempts>\n{notes}\n</attempts>")


async def calibrate_threshold(
    model: Model,
    requests: Sequence[ModelRequest],
    *,
    n: int = 4,
    quantile: float = 0.5,
    answers: AnswerRule | None = None,
    temperature: float | None = 0.7,
) -> tuple[float, Ledger]:
    """Pre-sample one round of `n` for each request and return the `quantile` of their entropies.

    Rounds whose entropy is at most the returned threshold are as settled as the better part of fresh first
    rounds, so later rounds are stopped there.

    Returns:
        The threshold (nats) and the ledger of the pre-sampling calls, so their cost can be reported.

    Raises:
        ModelError: every request's samples failed.
    """
    if not requests:
        raise ValueError("calibration needs at least one request")
    sampler = AdaptiveTermination(model, n=n, max_rounds=1, answers=answers, temperature=temperature)
    ledger = Ledger()
    entropies: list[float] = []
    errors: list[ModelError] = []
    for request in requests:  # one request's samples at a time: calibration should not flood the server
        try:
            drawn = await sampler.draw([request] * n, ledger)
        except ModelError as error:
            errors.append(error)
            continue
        found = [sampler.answers.extract(response.text) for response in drawn]
        entropies.append(semantic_entropy(found, sampler.answers.equivalent))
    if not entropies:
        raise errors[0]
    ordered = sorted(entropies)
    position = min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))
    return ordered[position], ledger
