"""Best-of-n: draw n samples in parallel, then a selector picks one.

Selectors: `MajorityVote` (self-consistency over extracted answers), `JudgeSelect` (GenSelect: one call
compares the candidates and names the best), `VerifierSelect` (a user function scores each candidate) and
`LogprobSelect` (the highest mean token log-probability).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings
from agentdag.models.base import Model
from agentdag.scaling.answers import AnswerRule, vote
from agentdag.scaling.base import Outcome, ScalingModel
from agentdag.scaling.budget import Budget, Ledger

__all__ = [
    "JUDGE_INSTRUCTION",
    "BestOfN",
    "Candidates",
    "JudgeSelect",
    "LogprobSelect",
    "MajorityVote",
    "Selector",
    "Verifier",
    "VerifierSelect",
    "import_verifier",
]

JUDGE_INSTRUCTION = (
    "Below are a problem and several candidate solutions. Compare them, decide which one is correct, and "
    "reply with the number of the best candidate only, as `Best: <number>`."
)
_BEST = re.compile(r"best\D{0,20}(\d+)", re.IGNORECASE)
_CANDIDATE_CHARS = 2000

Verifier = Callable[[str, str], float | bool | Awaitable[float | bool]]
"""A user check of one candidate: (the problem's last user message, the candidate's text) to a score."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidates:
    """What a selector chooses among.

    Attributes:
        request: the original request.
        completions: the samples.
        answers: each sample's extracted answer.
        rule: the answer rule in force.
    """

    request: ModelRequest
    completions: tuple[Completion, ...]
    answers: tuple[str | None, ...]
    rule: AnswerRule


class Selector(ABC):
    """Picks one of several candidates."""

    @abstractmethod
    async def select(self, candidates: Candidates, ledger: Ledger, model: Model) -> int:
        """The index of the chosen candidate; `model` is the strategy's wrapped model, for selectors that ask."""

    def decide(self, candidates: Candidates, remaining: int) -> int | None:
        """The candidate that will be chosen whatever the `remaining` samples say, or None if it is not certain.

        By default a selector decides only once every sample is in.
        """
        del candidates, remaining
        return None


class MajorityVote(Selector):
    """The sample whose answer most samples share (ties: the answer seen first)."""

    async def select(self, candidates: Candidates, ledger: Ledger, model: Model) -> int:
        """Vote over the extracted answers."""
        return vote(candidates.answers, candidates.rule.equivalent).winner

    def decide(self, candidates: Candidates, remaining: int) -> int | None:
        """The leading answer's sample once no other answer can catch up with the samples still to come."""
        result = vote(candidates.answers, candidates.rule.equivalent)
        if result.answer is not None and result.top > result.runner_up + remaining:
            return result.winner
        return None


class LogprobSelect(Selector):
    """The sample with the highest mean token log-probability; majority vote if the server gave none."""

    wants_logprobs = True

    async def select(self, candidates: Candidates, ledger: Ledger, model: Model) -> int:
        """Rank by mean log-probability."""
        scores = [sum(c.logprobs) / len(c.logprobs) if c.logprobs else -math.inf for c in candidates.completions]
        if all(score == -math.inf for score in scores):
            return await MajorityVote().select(candidates, ledger, model)
        return max(range(len(scores)), key=lambda index: scores[index])


class VerifierSelect(Selector):
    """The sample a user function scores highest (True counts as 1); ties go to the majority answer's sample."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def select(self, candidates: Candidates, ledger: Ledger, model: Model) -> int:
        """Score every candidate with the verifier."""
        problem = _problem_text(candidates.request)
        scores: list[float] = []
        for completion in candidates.completions:
            score = self.verifier(problem, completion.text)
            if inspect.isawaitable(score):
                score = await score
            scores.append(float(score))
        best = max(scores)
        majority = vote(candidates.answers, candidates.rule.equivalent)
        if scores[majority.winner] == best:
            return majority.winner
        return scores.index(best)


class JudgeSelect(Selector):
    """GenSelect: one call shows the model every candidate and asks it to name the best.

    Args:
        judge: the model that compares (default: the strategy's wrapped model).
        max_tokens: the judge call's completion limit.
    """

    def __init__(self, judge: Model | None = None, *, max_tokens: int = 64) -> None:
        self.judge = judge
        self.max_tokens = max_tokens

    async def select(self, candidates: Candidates, ledger: Ledger, model: Model) -> int:
        """Ask the judge; if its reply names no valid candidate, fall back to majority vote."""
        fallback = vote(candidates.answers, candidates.rule.equivalent).winner
        if len({answer for answer in candidates.answers if answer is not None}) <= 1 and all(
            answer is not None for answer in candidates.answers
        ):
            return fallback  # all agree: nothing to judge
        listing = "\n\n".join(
            f"Candidate {index + 1}:\n{_tail(completion.text, _CANDIDATE_CHARS)}"
            for index, completion in enumerate(candidates.completions)
        )
        prompt = f"{JUDGE_INSTRUCTION}\n\nProblem:\n{_problem_text(candidates.request)}\n\n{listing}"
        request = ModelRequest(
            messages=(Message(role="user", content=prompt),),
            settings=ModelSettings(temperature=0.0, max_tokens=self.max_tokens),
        )
        response = await ledger.call(self.judge or model, request)
        if response is None:
            return fallback
        ledger.add_stage(response.usage.total_tokens)
        match = _BEST.search(response.text) or re.search(r"\d+", response.text)
        if match is None:
            return fallback
        chosen = int(match.group(1) if match.groups() else match.group(0)) - 1
        return chosen if 0 <= chosen < len(candidates.completions) else fallback


class BestOfN(ScalingModel):
    """Draw `n` samples in parallel and return the one the selector picks.

    Streamed (`stream`, as the planner reads it), the reply comes the moment the selector's choice is
    certain: for a majority vote, once no other answer can catch up with the samples still running. Those
    samples are then stopped (streamed, so each is charged what it generated), and the reply and the report
    follow at once. A plain `request` draws every sample.

    Args:
        wrapped: the model sampled.
        n: samples to draw.
        selector: how the sample is chosen (default: majority vote).
        answers: answer extraction and equivalence.
        budget: the most one request may spend.
        temperature: the samples' temperature.
    """

    strategy = "best_of_n"

    def __init__(
        self,
        wrapped: Model,
        *,
        n: int = 8,
        selector: Selector | None = None,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = 0.7,
    ) -> None:
        super().__init__(wrapped, answers=answers, budget=budget, temperature=temperature)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.selector = selector or MajorityVote()

    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Draw the samples, then select."""
        return await self._solve(request, ledger)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Run the strategy, deciding as early as the selector can, then yield its reply and the response."""
        if request.settings.n != 1 or getattr(self.selector, "wants_logprobs", False):
            async for chunk in super().stream(request):
                yield chunk
            return
        response = await self._run(request, lambda item, ledger: self._solve(item, ledger, early=True))
        yield response.text
        yield response

    async def _solve(self, request: ModelRequest, ledger: Ledger, *, early: bool = False) -> Outcome:
        if getattr(self.selector, "wants_logprobs", False):
            request = dataclasses.replace(request, settings=dataclasses.replace(request.settings, logprobs=True))
        arrived: dict[int, Completion] = {}
        decided: list[int] = []

        def on_sample(index: int, response: ModelResponse) -> bool:
            arrived[index] = response.completions[0]
            if not early or decided:
                return False
            order = sorted(arrived)
            chosen = self.selector.decide(self._candidates(request, [arrived[i] for i in order]), self.n - len(order))
            if chosen is not None:
                decided.append(order[chosen])
            return chosen is not None  # decided: stop the samples still running

        drawn = await self.draw([request] * self.n, ledger, on_sample=on_sample, streamed=early)
        if not drawn:
            raise self.budget_error()
        order = sorted(arrived)
        candidates = self._candidates(request, [arrived[index] for index in order])
        if decided:
            return Outcome(
                completion=arrived[decided[0]], answer=candidates.answers[order.index(decided[0])], stopped="rule"
            )
        chosen = await self.selector.select(candidates, ledger, self.wrapped)
        stopped = "budget" if len(drawn) < self.n else "done"
        return Outcome(completion=candidates.completions[chosen], answer=candidates.answers[chosen], stopped=stopped)

    def _candidates(self, request: ModelRequest, completions: list[Completion]) -> Candidates:
        answers = tuple(self.answers.extract(completion.text) for completion in completions)
        return Candidates(request=request, completions=tuple(completions), answers=answers, rule=self.answers)


def import_verifier(path: str) -> Verifier:
    """Import a verifier function named as `package.module:function`.

    Raises:
        ValueError: the path is malformed or does not name a callable.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a verifier is named as 'package.module:function', got {path!r}")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import verifier {path!r}: {error}") from error
    if not callable(found):
        raise ValueError(f"verifier {path!r} is not callable")
    verifier: Verifier = found
    return verifier


def _problem_text(request: ModelRequest) -> str:
    users = [message.content for message in request.messages if message.role == "user"]
    return users[-1] if users else request.messages[-1].content if request.messages else ""


def _tail(text: str, chars: int) -> str:
    return text if len(text) <= chars else "..." + text[-chars:]
