"""Adaptive self-consistency: sample until a stopping rule fires (or `max_n`), then take the majority answer.

Two rules:

* "beta" (Adaptive-Consistency): with a votes for the top answer and b for the runner-up, stop once
  P = ∫_{0.5}^{1} x^a (1-x)^b dx / ∫_0^1 x^a (1-x)^b dx reaches the threshold (0.95). For integer a, b this
  is exactly P(Binomial(a+b+1, ½) ≤ a), computed with integers, no numerical integration.
* "window" (Early-Stopping Self-Consistency): sample in windows of w; stop when every answer of a window
  agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import comb
from typing import Literal

from agentdag.messages import Completion, ModelRequest
from agentdag.models.base import Model
from agentdag.scaling.answers import AnswerRule, Equivalent, vote
from agentdag.scaling.base import Outcome, ScalingModel
from agentdag.scaling.budget import Budget, Ledger

__all__ = ["SelfConsistency", "StopRule", "majority_probability", "window_agrees"]

StopRule = Literal["beta", "window"]


def majority_probability(top: int, runner_up: int) -> float:
    """P(the top answer is the true majority) under a uniform prior: the Beta rule's statistic.

    Equals ∫_{0.5}^{1} x^a (1-x)^b dx / ∫_0^1 x^a (1-x)^b dx with a = `top`, b = `runner_up`, i.e.
    1 - I_{1/2}(a+1, b+1) = Σ_{j=0}^{a} C(a+b+1, j) / 2^(a+b+1), exact for integer counts.
    """
    if top < 0 or runner_up < 0:
        raise ValueError("vote counts cannot be negative")
    total = top + runner_up + 1
    return float(Fraction(sum(comb(total, j) for j in range(top + 1)), 2**total))


def window_agrees(window: Sequence[str | None], equivalent: Equivalent) -> bool:
    """Whether every answer of a window is present and equivalent to the first."""
    first = window[0] if window else None
    return first is not None and all(answer is not None and equivalent(first, answer) for answer in window)


class SelfConsistency(ScalingModel):
    """Sample until the stopping rule fires or `max_n` samples are drawn; return the majority answer's sample.

    Args:
        wrapped: the model sampled.
        rule: "beta" (Adaptive-Consistency) or "window" (ESC).
        max_n: the most samples drawn.
        threshold: the Beta rule's stopping probability.
        window: the ESC window size (samples drawn in parallel per window).
        batch: for the Beta rule, samples drawn in parallel between checks (1 is the paper's one at a time,
            fewest samples; more use the server's parallel slots but may overshoot by up to `batch - 1`).
        answers: answer extraction and equivalence.
        budget: the most one request may spend.
        temperature: the samples' temperature.
    """

    strategy = "self_consistency"

    def __init__(
        self,
        wrapped: Model,
        *,
        rule: StopRule = "beta",
        max_n: int = 16,
        threshold: float = 0.95,
        window: int = 5,
        batch: int = 1,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = 0.7,
    ) -> None:
        super().__init__(wrapped, answers=answers, budget=budget, temperature=temperature)
        if max_n < 1 or window < 1 or batch < 1:
            raise ValueError("max_n, window and batch must be at least 1")
        self.rule: StopRule = rule
        self.max_n = max_n
        self.threshold = threshold
        self.window = window
        self.batch = batch

    def fires(self, answers: Sequence[str | None], latest: Sequence[str | None]) -> bool:
        """Whether the rule stops sampling, given all answers so far and the latest batch (or window)."""
        if self.rule == "window":
            return len(latest) == self.window and window_agrees(latest, self.answers.equivalent)
        result = vote(answers, self.answers.equivalent)
        return majority_probability(result.top, result.runner_up) >= self.threshold

    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Sample batch by batch, checking the rule after each."""
        step = self.window if self.rule == "window" else self.batch
        completions: list[Completion] = []
        answers: list[str | None] = []
        stopped, rounds = "limit", 0
        while len(completions) < self.max_n:
            wanted = min(step, self.max_n - len(completions))
            drawn = await self.draw([request] * wanted, ledger)
            if drawn:
                rounds += 1
            latest = [self.answers.extract(response.text) for response in drawn]
            completions += [response.completions[0] for response in drawn]
            answers += latest
            if drawn and self.fires(answers, latest):
                stopped = "rule"
                break
            if len(drawn) < wanted:
                stopped = "budget"
                break
        if not completions:
            raise self.budget_error()
        completion, answer = self.choose_by_vote(completions)
        return Outcome(completion=completion, answer=answer, stopped=stopped, rounds=rounds)
