"""The executor's own state of each node: what only the scheduler sees, and the records it shows.

`Slot` holds a node's state together with its scheduling (how many dependencies it still waits for, who
waits for it, its cancel scope). Users never see a slot: `Records` shows each as a `NodeRecord` snapshot,
made again only after the slot changes. Only `agentdag.executor` imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import anyio

from agentdag.events import NodeError
from agentdag.plan import Node
from agentdag.records import NodeRecord, NodeStatus
from agentdag.toolsets.base import JsonValue

__all__ = ["Records", "Slot"]


@dataclass(slots=True, eq=False)
class Slot:
    """One node inside an execution: its state, and the scheduling that only the executor sees.

    Whoever changes a field also clears `snapshot`, so that the next `record()` shows the change.
    """

    node: Node
    dependencies: frozenset[int]
    status: NodeStatus = "queued"
    arguments: dict[str, JsonValue] | None = None
    output: JsonValue = None
    error: NodeError | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    interrupted: bool = False
    waiting: int = 0
    dependents: list[Slot] = field(default_factory=list)
    scope: anyio.CancelScope | None = None
    cancel_reason: str | None = None
    snapshot: NodeRecord | None = None

    def record(self) -> NodeRecord:
        """The node's record as it stands (made again only after a change)."""
        if self.snapshot is None:
            self.snapshot = NodeRecord(
                node=self.node,
                status=self.status,
                dependencies=self.dependencies,
                arguments=self.arguments,
                output=self.output,
                error=self.error,
                queued_at=self.queued_at,
                started_at=self.started_at,
                finished_at=self.finished_at,
                attempts=self.attempts,
                interrupted=self.interrupted,
            )
        return self.snapshot


class Records(Mapping[int, NodeRecord]):
    """The execution's records by id, as snapshots of its slots."""

    def __init__(self, slots: dict[int, Slot]) -> None:
        self._slots = slots

    def __getitem__(self, node_id: int) -> NodeRecord:
        return self._slots[node_id].record()

    def __iter__(self) -> Iterator[int]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._slots
