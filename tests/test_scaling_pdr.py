from __future__ import annotations

import re

import pytest

from agentdag.messages import Completion, Message, ModelRequest
from agentdag.models import FunctionModel
from agentdag.scaling import Budget, Ledger, ParallelDistillRefine, ScaledResponse, bound_tokens, create_answer_rule
from agentdag.scaling.pdr import REFINE_INSTRUCTION, SUMMARY_INSTRUCTION, DistillOperator, rank_drafts
from agentdag.tokens import estimate_tokens

QUESTION = ModelRequest(messages=(Message(role="user", content="What is 6 * 7?"),))
LONG = "reasoning " * 300


def drafting_model() -> FunctionModel:
    """Long drafts; a summary call returns an over-long summary (the bound must still hold)."""
    counter = iter(range(10_000))

    def reply(request: ModelRequest) -> str:
        content = request.messages[-1].content
        if SUMMARY_INSTRUCTION in content:
            return "Summary: most candidates say 42. " + "detail " * 2000
        number = next(counter)
        return f"{LONG} The answer is {42 if number % 3 else 41}."

    return FunctionModel(reply)


def workspace_of(request: ModelRequest) -> str | None:
    match = re.search(r"<notes>\n(.*)\n</notes>", request.messages[-1].content, re.DOTALL)
    return match.group(1) if match else None


@pytest.mark.asyncio
@pytest.mark.parametrize("distill", ["summary", "shared_top_k", "per_sample_top_k", "random_k"])
async def test_pdr_runs_its_schedule_and_keeps_the_workspace_bounded(distill: DistillOperator) -> None:
    model = drafting_model()
    strategy = ParallelDistillRefine(model, rounds=(4, 2, 1), distill=distill, top_k=2, workspace_tokens=100)
    response = await strategy.request(QUESTION)
    assert isinstance(response, ScaledResponse)
    drafts = [r for r in model.requests if SUMMARY_INSTRUCTION not in r.messages[-1].content]
    summaries = len(model.requests) - len(drafts)
    assert len(drafts) == 7
    assert summaries == (2 if distill == "summary" else 0)
    assert response.report.rounds == 3 and response.report.samples == 7
    assert [workspace_of(r) is None for r in drafts] == [True] * 4 + [False] * 3
    for request in drafts[4:]:
        workspace = workspace_of(request)
        assert workspace is not None and 0 < estimate_tokens(workspace) <= 100
        assert REFINE_INSTRUCTION in request.messages[-1].content
    # B_seq: one draft per round (plus summaries) on the critical path; B_total counts every call.
    assert response.report.tokens_seq < response.report.tokens_total


@pytest.mark.asyncio
async def test_per_sample_top_k_gives_each_next_draft_its_own_workspace() -> None:
    drafts = [Completion(text=f"work {index} The answer is {answer}.") for index, answer in enumerate([1, 2, 2, 3])]
    strategy = ParallelDistillRefine(FunctionModel(lambda r: ""), distill="per_sample_top_k", top_k=2)
    workspaces = await strategy.build_workspaces(QUESTION, drafts, 3, Ledger(), 0)
    assert len(workspaces) == 3 and len(set(workspaces)) == 3
    shared = ParallelDistillRefine(FunctionModel(lambda r: ""), distill="shared_top_k", top_k=2)
    (workspace,) = await shared.build_workspaces(QUESTION, drafts, 3, Ledger(), 0)
    assert "work 1" in workspace and "work 2" in workspace  # the two drafts of the majority answer


def test_rank_drafts_puts_the_majority_first_and_unanswered_last() -> None:
    drafts = [Completion(text=t) for t in ("no answer here", "The answer is 5", "The answer is 7", "The answer is 7")]
    assert rank_drafts(drafts, create_answer_rule("number"))[:2] == [2, 3]
    assert rank_drafts(drafts, create_answer_rule("number"))[-1] == 0


def test_bound_tokens_keeps_the_end() -> None:
    text = "start " + "x" * 1000 + " The answer is 9."
    bounded = bound_tokens(text, 20)
    assert estimate_tokens(bounded) <= 20
    assert bounded.endswith("The answer is 9.")
    assert bound_tokens("short", 20) == "short"


@pytest.mark.asyncio
async def test_sequential_refinement_is_the_schedule_of_ones() -> None:
    model = drafting_model()
    response = await ParallelDistillRefine(model, rounds=(1, 1, 1), distill="shared_top_k").request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert len(model.requests) == 3
    assert response.report.tokens_seq == response.report.tokens_total  # nothing runs in parallel


@pytest.mark.asyncio
async def test_pdr_stops_within_budget_and_votes_over_what_it_has() -> None:
    model = drafting_model()
    strategy = ParallelDistillRefine(model, rounds=(4, 2, 1), distill="shared_top_k", budget=Budget(max_calls=5))
    response = await strategy.request(QUESTION)
    assert isinstance(response, ScaledResponse)
    assert response.report.calls == 5
    assert response.report.stopped == "budget"
    assert response.report.rounds == 2


def test_pdr_rejects_a_schedule_not_ending_in_one() -> None:
    with pytest.raises(ValueError, match="ending in 1"):
        ParallelDistillRefine(FunctionModel(lambda r: ""), rounds=(4, 2))
