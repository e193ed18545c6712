"""The result of an agent run, shared by the DAG agent and the ReAct baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from agentdag.messages import Usage
from agentdag.plan import Node, PlanProblem
from agentdag.records import NodeRecord
from agentdag.toolsets.base import JsonValue

__all__ = ["PlanDraft", "Replan", "RunResult", "RunStatus"]

RunStatus = Literal["done", "failed"]


@dataclass(frozen=True, slots=True)
class Replan:
    """One replanning round: why the joiner asked for it and how many nodes the new plan added."""

    round: int
    reason: str
    nodes_added: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What a run produced.

    Attributes:
        status: "done" when an answer was produced, "failed" otherwise (see `error`).
        answer: the final answer.
        records: every node's record: tool, resolved arguments, output, timings, status.
        usage: token usage by role ("planner", "joiner", "tools").
        wall_s: wall time of the run.
        error: why the run failed, in one line.
        replans: the replanning rounds, in order.
        notes: what else happened, in words (repairs, fallbacks, budgets, reused results).
        first_dispatch_s: time from the start of the run to the first tool call's dispatch.
    """

    status: RunStatus
    answer: JsonValue
    records: Mapping[int, NodeRecord]
    usage: Mapping[str, Usage] = field(default_factory=dict)
    wall_s: float = 0.0
    error: str | None = None
    replans: tuple[Replan, ...] = ()
    notes: tuple[str, ...] = ()
    first_dispatch_s: float | None = None

    @property
    def failures(self) -> list[NodeRecord]:
        """Nodes that failed, were skipped, or were cancelled."""
        return [record for record in self.records.values() if record.status in ("failed", "skipped", "cancelled")]

    @property
    def model_calls(self) -> int:
        """Model calls over every role."""
        return sum(usage.calls for usage in self.usage.values())

    @property
    def total_usage(self) -> Usage:
        """Usage summed over every role."""
        total = Usage()
        for usage in self.usage.values():
            total = total + usage
        return total


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanDraft:
    """What the planner drafted for a task, without running anything (`Agent.draft`, `agentdag plan`).

    Attributes:
        nodes: the plan's nodes, as `run` would have started them.
        problems: what was still wrong after the last repair (empty when the plan is valid); `run` would
            run the valid nodes (or answer directly, with `fallback: direct`).
        notes: what else happened, in words (repairs, repeated calls, a plan cut off).
    """

    nodes: tuple[Node, ...]
    problems: tuple[PlanProblem, ...] = ()
    notes: tuple[str, ...] = ()
