"""A same-answer judge of known quality for the simulated model, and the AUROC that states a judge's quality.

`SimulatedJudge` tests the pruning algorithm given a judge as good as DeepPrune's trained one (AUROC 0.87 by
default; Tu et al. 2025, arXiv 2510.08483 v1; v2 reports 0.7072 on reasoning models the judge never saw),
independently of how well the simulator's texts mimic real traces. Its score for two prefixes follows the
equal-variance binormal model: N(d', 1) when the two traces end with the same answer, N(0, 1) when they do not,
with d' = √2·Φ⁻¹(AUROC), the separation whose AUROC is Φ(d'/√2). It learns the traces' final answers from the
model's trace log, and what it knows of them reaches its decisions only through that score.

Its threshold defaults to d'/2, the equal-prior Bayes cut: where a classifier trained on class-balanced pairs
(DeepPrune oversamples the minority class) says "same" with probability 0.5. It is not tuned on any result.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from agentdag.messages import Usage
from agentdag.scaling.budget import Ledger
from agentdag.scaling.prune import SAME_ANSWER_INSTRUCTION, TraceJudge
from agentdag.tokens import estimate_tokens

from .simulated import SimulatedModel

__all__ = ["DEEPPRUNE_JUDGE_AUROC", "Comparison", "SimulatedJudge", "auroc", "binormal_separation"]

DEEPPRUNE_JUDGE_AUROC = 0.87
"""The AUROC of DeepPrune's trained judge on partial reasoning traces (arXiv 2510.08483 v1)."""


def binormal_separation(target: float) -> float:
    """d' = √2·Φ⁻¹(target): the mean separation of two unit normals whose AUROC is `target`."""
    if not 0.5 <= target < 1:
        raise ValueError(f"an AUROC is in [0.5, 1), got {target}")
    return math.sqrt(2) * NormalDist().inv_cdf(target)


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """The probability that a random positive outscores a random negative (ties count half).

    Computed from ranks (the Mann-Whitney U statistic), in O(n log n); None when either class is empty.
    """
    if not positives or not negatives:
        return None
    scored = sorted([(value, True) for value in positives] + [(value, False) for value in negatives])
    rank_sum = 0.0
    start = 0
    while start < len(scored):
        end = start
        while end + 1 < len(scored) and scored[end + 1][0] == scored[start][0]:
            end += 1
        middle = (start + end) / 2 + 1  # tied values share their mean rank
        rank_sum += middle * sum(1 for index in range(start, end + 1) if scored[index][1])
        start = end + 1
    count = len(positives)
    return (rank_sum - count * (count + 1) / 2) / (count * len(negatives))


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """One judged pair: whether the traces really end with the same answer, the score, and the decision."""

    same: bool
    score: float
    judged_same: bool


class SimulatedJudge(TraceJudge):
    """A `TraceJudge` of stated AUROC over the traces of a `SimulatedModel` (see the module docstring).

    Each comparison is charged to the ledger as what a `ModelJudge` call with the same prompt would cost (its
    prompt tokens and a one-token reply), so pruning with it is not free.

    Args:
        model: the simulated model whose traces are judged.
        target_auroc: the judge's quality.
        threshold: the score at which it says "same" (default d'/2).
        seed: seeds the scores (each pair's score is a function of the pair and the seed).

    Attributes:
        comparisons: every comparison made, in order.
        tokens: the tokens charged for them.
    """

    def __init__(
        self,
        model: SimulatedModel,
        *,
        target_auroc: float = DEEPPRUNE_JUDGE_AUROC,
        threshold: float | None = None,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.target_auroc = target_auroc
        self.separation = binormal_separation(target_auroc)
        self.threshold = self.separation / 2 if threshold is None else threshold
        self.seed = seed
        self.comparisons: list[Comparison] = []
        self.tokens = 0

    def score(self, first: str, second: str) -> tuple[bool, float]:
        """Whether the traces starting with these prefixes end with the same answer, and the judge's score.

        Raises:
            LookupError: a prefix is not the start of a trace the model generated.
        """
        answers = []
        for prefix in (first, second):
            trace = self.model.find_trace(prefix)
            if trace is None:
                raise LookupError(f"the simulated judge only judges the simulated model's traces, not {prefix[:40]!r}")
            answers.append(trace.answer)
        same = answers[0] is not None and answers[0] == answers[1]
        low, high = sorted((first, second))  # the same pair gets the same score in either order
        noise = random.Random(f"judge|{self.seed}|{low}|{high}").gauss(0.0, 1.0)
        return same, noise + (self.separation if same else 0.0)

    async def same_answer(self, first: str, second: str, ledger: Ledger) -> bool:
        """Score the pair, charge the comparison, and compare the score with the threshold."""
        same, score = self.score(first, second)
        prompt = f"{SAME_ANSWER_INSTRUCTION}\n\nSolution A:\n{first}\n\nSolution B:\n{second}"
        usage = Usage(calls=1, prompt_tokens=estimate_tokens(prompt), completion_tokens=1)
        ledger.charge(usage)
        self.tokens += usage.total_tokens
        judged = score >= self.threshold
        self.comparisons.append(Comparison(same=same, score=score, judged_same=judged))
        return judged
