"""Parallel-Distill-Refine (PDR), and Sequential Refinement (SR) as its schedule of ones.

Round r draws M_r drafts in parallel, each conditioned on a bounded text workspace distilled from the previous
round's drafts; the last round draws one draft, the reply. Distill operators: "summary" (one model call states
agreements, contradictions, derived facts and open sub-goals), "shared_top_k" (the k drafts whose answers most
drafts share, the same for every next draft), "per_sample_top_k" (each next draft gets its own k, rotating
through the ranking) and "random_k". Every workspace holds at most `workspace_tokens` tokens (as
`estimate_tokens` counts them).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from agentdag.messages import Completion, Message, ModelRequest, ModelSettings
from agentdag.models.base import Model
from agentdag.scaling.answers import AnswerRule, cluster_answers
from agentdag.scaling.base import Outcome, ScalingModel, replace_last_user
from agentdag.scaling.budget import Budget, Ledger
from agentdag.tokens import estimate_tokens

__all__ = [
    "REFINE_INSTRUCTION",
    "SUMMARY_INSTRUCTION",
    "DistillOperator",
    "ParallelDistillRefine",
    "bound_tokens",
    "rank_drafts",
]

DistillOperator = Literal["summary", "shared_top_k", "per_sample_top_k", "random_k"]

SUMMARY_INSTRUCTION = (
    "Below are a problem and several candidate solutions. Write a short summary for a solver who will try "
    "again: where the candidates agree, where they contradict each other, facts they derived, what remains "
    "open, and each candidate's final answer."
)
REFINE_INSTRUCTION = (
    "Notes from earlier attempts at this problem follow. Use their useful ideas; if they disagree, choose the "
    "correct path; if they all seem wrong, try a different approach. Then solve the problem and state the "
    "final answer."
)


def bound_tokens(text: str, limit: int) -> str:
    """`text` cut to at most `limit` tokens (as `estimate_tokens` counts), keeping its end, where answers are."""
    if estimate_tokens(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return "…" + text[-(4 * limit - 1) :] if limit > 1 else text[-4:]


def rank_drafts(drafts: Sequence[Completion], rule: AnswerRule) -> list[int]:
    """Draft indices, those whose answers most drafts share first; drafts without an answer last."""
    answers = [rule.extract(draft.text) for draft in drafts]
    clusters = cluster_answers(answers, rule.equivalent)
    size = {index: len(cluster) if answers[cluster[0]] is not None else 0 for cluster in clusters for index in cluster}
    return sorted(range(len(drafts)), key=lambda index: -size[index])


class ParallelDistillRefine(ScalingModel):
    """PDR: rounds of parallel drafts, each round distilled into a bounded workspace for the next.

    Args:
        wrapped: the model sampled.
        rounds: drafts per round, e.g. (8, 4, 1); the last must be 1. (1, 1, 1) is Sequential Refinement.
        distill: how drafts become the next round's workspace.
        top_k: drafts kept by the top-k and random-k operators.
        workspace_tokens: the bound κ on every workspace.
        seed: seeds the random-k operator.
        answers: answer extraction and equivalence (to rank drafts).
        budget: the most one request may spend.
        temperature: the drafts' temperature.
    """

    strategy = "pdr"

    def __init__(
        self,
        wrapped: Model,
        *,
        rounds: Sequence[int] = (8, 4, 1),
        distill: DistillOperator = "summary",
        top_k: int = 2,
        workspace_tokens: int = 512,
        seed: int = 0,
        answers: AnswerRule | None = None,
        budget: Budget | None = None,
        temperature: float | None = 0.7,
    ) -> None:
        super().__init__(wrapped, answers=answers, budget=budget, temperature=temperature)
        if not rounds or any(count < 1 for count in rounds) or rounds[-1] != 1:
            raise ValueError(f"rounds must be positive draft counts ending in 1, got {tuple(rounds)}")
        if top_k < 1 or workspace_tokens < 16:
            raise ValueError("top_k must be at least 1 and workspace_tokens at least 16")
        self.rounds = tuple(rounds)
        self.distill: DistillOperator = distill
        self.top_k = top_k
        self.workspace_tokens = workspace_tokens
        self.seed = seed

    async def solve(self, request: ModelRequest, ledger: Ledger) -> Outcome:
        """Run the schedule; stop early (voting over the last drafts) if the budget runs out."""
        workspaces = [""]
        drafts: list[Completion] = []
        done = 0
        for index, count in enumerate(self.rounds):
            requests = [self.condition(request, workspaces[i % len(workspaces)]) for i in range(count)]
            drawn = await self.draw(requests, ledger)
            if not drawn:
                break
            drafts = [response.completions[0] for response in drawn]
            done += 1
            if index + 1 < len(self.rounds):
                workspaces = await self.build_workspaces(request, drafts, self.rounds[index + 1], ledger, index)
        if not drafts:
            raise self.budget_error()
        stopped = "done" if done == len(self.rounds) else "budget"
        completion, answer = self.choose_by_vote(drafts)
        return Outcome(completion=completion, answer=answer, stopped=stopped, rounds=done)

    def condition(self, request: ModelRequest, workspace: str) -> ModelRequest:
        """The draft request for a workspace (the plain request for an empty one)."""
        if not workspace:
            return request
        return replace_last_user(request, f"{REFINE_INSTRUCTION}\n\n<notes>\n{workspace}\n</notes>")

    async def build_workspaces(
        self, request: ModelRequest, drafts: Sequence[Completion], count: int, ledger: Ledger, round_index: int
    ) -> list[str]:
        """The next round's workspaces: one shared, or `count` for the per-sample operator; each ≤ κ tokens."""
        if self.distill == "summary":
            summary = await self._summarize(request, drafts, ledger)
            if summary is not None:
                return [bound_tokens(summary, self.workspace_tokens)]
            # the budget cannot afford a summary call: fall back to the drafts themselves
        ranked = rank_drafts(drafts, self.answers)
        k = min(self.top_k, len(drafts))
        if self.distill == "per_sample_top_k":
            return [
                self._excerpts(drafts, [ranked[(offset + j) % len(ranked)] for j in range(k)])
                for offset in range(count)
            ]
        if self.distill == "random_k":
            chosen = random.Random(self.seed * 7919 + round_index).sample(range(len(drafts)), k)
            return [self._excerpts(drafts, sorted(chosen))]
        return [self._excerpts(drafts, ranked[:k])]

    def _excerpts(self, drafts: Sequence[Completion], indices: Sequence[int]) -> str:
        share = max(4, self.workspace_tokens // len(indices) - 4)
        parts = [f"Attempt {number}:\n{bound_tokens(drafts[i].text, share)}" for number, i in enumerate(indices, 1)]
        return bound_tokens("\n\n".join(parts), self.workspace_tokens)

    async def _summarize(self, request: ModelRequest, drafts: Sequence[Completion], ledger: Ledger) -> str | None:
        per_draft = max(16, (4 * self.workspace_tokens) // len(drafts))
        listing = "\n\n".join(
            f"Candidate {number}:\n{bound_tokens(draft.text, per_draft)}" for number, draft in enumerate(drafts, 1)
        )
        problem = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        prompt = f"{SUMMARY_INSTRUCTION}\n\nProblem:\n{problem}\n\n{listing}"
        summary_request = ModelRequest(
            messages=(Message(role="user", content=prompt),),
            settings=ModelSettings(temperature=0.0, max_tokens=self.workspace_tokens),
        )
        response = await ledger.call(self.wrapped, summary_request)
        if response is None:
            return None
        ledger.add_stage(response.usage.total_tokens)
        return response.text
