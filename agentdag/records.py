"""What users read about nodes: `NodeRecord`, a snapshot of one node, and `ExecutionResult`, all of them.

A record holds what happened to a node and nothing of how the executor scheduled it: the node and its tool,
the resolved arguments, the output or the error, the times, the attempts and the status. It never changes
once made; the executor makes a new one whenever the node's state changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agentdag.events import NodeError
from agentdag.plan import Node
from agentdag.toolsets.base import JsonValue

__all__ = ["FINAL_STATUSES", "ExecutionResult", "NodeRecord", "NodeStatus"]

NodeStatus = Literal["queued", "running", "done", "failed", "skipped", "cancelled"]
FINAL_STATUSES: frozenset[NodeStatus] = frozenset({"done", "failed", "skipped", "cancelled"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """One node as it stands: what it called, with what, and how it ended.

    Attributes:
        node: the node as planned.
        status: queued, running, done, failed, skipped or cancelled.
        dependencies: the nodes it waited for (its `depends_on` and the nodes its arguments reference).
        arguments: the arguments after resolving references (None until the node starts, and for a node
            whose inputs stayed on a cluster, see `agentdag.backends.ray`).
        output: the tool's output, once the node is done.
        error: why the node did not produce an output.
        queued_at, started_at, finished_at: seconds since the execution opened.
        attempts: how many times the tool was called.
        interrupted: it was cancelled because the whole execution stopped, not on its own.
    """

    node: Node
    status: NodeStatus = "queued"
    dependencies: frozenset[int] = frozenset()
    arguments: dict[str, JsonValue] | None = None
    output: JsonValue = None
    error: NodeError | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    interrupted: bool = False

    @property
    def id(self) -> int:
        """The node's id."""
        return self.node.id

    @property
    def tool(self) -> str:
        """The name of the tool the node calls."""
        return self.node.tool

    @property
    def duration_s(self) -> float | None:
        """Time from start to finish, once the node has finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The records of every node of an execution, in the order the nodes arrived."""

    records: Mapping[int, NodeRecord]
    wall_s: float

    @property
    def succeeded(self) -> bool:
        """Whether every node finished with an output."""
        return all(record.status == "done" for record in self.records.values())

    @property
    def outputs(self) -> dict[int, JsonValue]:
        """Outputs of the nodes that finished."""
        return {node_id: record.output for node_id, record in self.records.items() if record.status == "done"}

    def with_status(self, *statuses: NodeStatus) -> list[NodeRecord]:
        """Records whose status is one of `statuses`."""
        return [record for record in self.records.values() if record.status in statuses]
