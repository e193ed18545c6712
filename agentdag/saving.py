"""Saving a run as it goes, to a `RunStore`.

`NodeSaver` saves nodes from the execution's events, and `JournalSaver` saves what the planner's journal
records (usage, notes, replans, planner replies).

Both subscribe to what they save; nothing else writes to the store while the run goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agentdag.events import NodeEvent
from agentdag.executor import Execution
from agentdag.messages import Usage
from agentdag.plan import Node, dependencies_of
from agentdag.result import Replan
from agentdag.store import RunStore, SavedRun
from agentdag.toolsets.base import JsonValue
from agentdag.usage import Role

__all__ = ["JournalSaver", "NodeSaver"]


class NodeSaver:
    """Saves each node of an execution to a store whenever its state changes; it subscribes to the execution.

    Args:
        store: where the nodes go.
        execution: the open execution whose nodes are saved.
        round_of: the planning round that a node added now belongs to (default: always round 0).
        durable: whether an output outlives the backend (`Backend.durable`): a node whose output does not
            is not saved as finished, so that a resumed run runs it again.
    """

    def __init__(
        self,
        store: RunStore,
        execution: Execution,
        *,
        round_of: Callable[[], int] = lambda: 0,
        durable: Callable[[JsonValue], bool] = lambda output: True,
    ) -> None:
        self.store = store
        self.execution = execution
        self._round = round_of
        self._durable = durable
        self._round_of: dict[int, int] = {}
        execution.subscribe(self)

    def __call__(self, event: NodeEvent) -> None:
        """Save the node the event is about."""
        if event.kind in ("running", "retrying"):
            return  # a running node runs again on resume just as a queued one does: not worth a write
        record = self.execution.records[event.node_id]
        if record.status == "cancelled" and record.interrupted:
            return  # cancelled because the run stopped, not on its own: a resumed run runs it again
        if record.status == "done" and not self._durable(record.output):
            return  # its output lives on a cluster and ends with the backend: a resumed run runs it again
        round_index = self._round_of.setdefault(event.node_id, self._round())
        self.store.save_node(record, round_index=round_index)

    def restore(self, saved: SavedRun, nodes: Iterable[Node] | None = None) -> int:
        """Put a saved run's finished nodes back into the execution and add its other nodes to run again.

        Args:
            saved: what the store holds.
            nodes: the nodes to add (a fixed plan, validated by the caller); default: every saved node,
                each validated as it is added. A saved node is restored only if it is the same node;
                otherwise it runs.

        Returns:
            How many nodes were restored rather than run.
        """
        execution = self.execution
        planned = list(nodes) if nodes is not None else [item.node for item in saved.nodes.values()]
        restored: set[int] = set()
        for node in _in_dependency_order(planned):
            item = saved.nodes.get(node.id)
            if item is not None:
                self._round_of[node.id] = item.round
            # Restored only if nothing it depends on runs again: a changed or unfinished upstream node
            # would give it other inputs.
            upstream = dependencies_of(node, saved.nodes)
            if item is None or not item.kept or item.node != node or not upstream <= restored:
                execution.submit(node, check=nodes is None)  # a fixed plan was validated as a whole
                continue
            restored.add(node.id)
            execution.restore(
                node,
                status=item.status,  # type: ignore[arg-type]  # `kept` means done, failed or cancelled
                output=item.output,
                error=item.error,
                arguments=item.arguments,
                attempts=item.attempts,
            )
        return len(restored)


class JournalSaver:
    """Saves a planner's journal entries to a store as they are written (see `RunJournal.subscribe`)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def noted(self, note: str) -> None:
        """Save a note."""
        self.store.save_note(note)

    def planned(self, round_index: int, attempt: int, text: str) -> None:
        """Save a planner reply."""
        self.store.save_plan(round_index, attempt, text)

    def replanned(self, replan: Replan) -> None:
        """Save a replanning round."""
        self.store.save_replan(replan)

    def spent(self, role: Role, usage: Usage) -> None:
        """Save a role's usage at once: a run killed later still counts it on resume."""
        self.store.save_usage({role: usage})


def _in_dependency_order(nodes: list[Node]) -> list[Node]:
    """`nodes` with every node after those it depends on (ids need not grow along the dependencies)."""
    known = {node.id for node in nodes}
    placed: set[int] = set()
    ordered: list[Node] = []
    pending = nodes
    while pending:
        waiting = []
        for node in pending:
            if dependencies_of(node, known) <= placed:
                ordered.append(node)
                placed.add(node.id)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):  # a cycle or a missing node: let `add` report it
            return ordered + waiting
        pending = waiting
    return ordered
