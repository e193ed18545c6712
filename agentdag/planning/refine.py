"""Mid-run refinement (`refine: true`): as nodes finish, the planner may cancel pending nodes or add new ones.

Each refinement is one planner call over the results so far and the nodes still pending; its new nodes go
through the same dispatcher as any plan, so repeated calls follow the same rule.
"""

from __future__ import annotations

import anyio

from agentdag.events import NodeEvent
from agentdag.executor import Execution
from agentdag.parsers import node_from_mapping
from agentdag.plan import PlanProblem
from agentdag.planning.context import PlanningRun
from agentdag.planning.dispatch import Dispatcher
from agentdag.planning.prompts import refine_request
from agentdag.planning.repair import note_reply
from agentdag.planning.stream import ask
from agentdag.schemas import parse_refinement

__all__ = ["Refiner"]


class Refiner:
    """Waits for the graph to finish, refining it whenever a node ends while others are pending.

    Subscribe `watch` to the execution's events before its nodes run.
    """

    def __init__(self, run: PlanningRun) -> None:
        self.run = run
        self.count = 0
        self._node_ended = anyio.Event()

    def watch(self, event: NodeEvent) -> None:
        """An event sink: wakes the refiner whenever a node ends."""
        if event.kind in ("done", "failed", "skipped", "cancelled"):
            self._node_ended.set()

    async def execute(self, dispatcher: Dispatcher, execution: Execution, round_index: int) -> None:
        """Wait for the graph; with `refine`, let the planner adjust it as nodes finish."""
        if not self.run.config.refine:
            await execution.wait()
            return
        while _pending(execution):
            await self._node_ended.wait()
            self._node_ended = anyio.Event()
            if _pending(execution) and self.count < self.run.config.max_refinements:
                await self._refine(dispatcher, execution, round_index)
            elif _pending(execution):
                await execution.wait()

    async def _refine(self, dispatcher: Dispatcher, execution: Execution, round_index: int) -> None:
        run = self.run
        self.count += 1
        first_id = dispatcher.next_id()
        request = refine_request(run.template, run.config, run.tools, run.task, execution.records, first_id=first_id)
        response = await ask(run, "planner", request, known=frozenset(execution.records))
        change = parse_refinement(response.text)
        if change is None:
            run.journal.note(f"refinement {self.count}: the reply was not a change; ignored it")
            return
        cancelled = [
            node_id
            for node_id in change.cancel
            if node_id in execution.records and execution.cancel(node_id, "cancelled by refinement")
        ]
        reply = dispatcher.reply(round_index=round_index, first_id=first_id, max_nodes=run.config.max_nodes)
        invalid = 0
        for raw in change.add:
            node = node_from_mapping(raw, first_id)
            if isinstance(node, PlanProblem):
                invalid += 1
            else:
                reply.offer(node)
        reply.close()
        note_reply(run, reply)
        invalid += len(reply.problems)
        if cancelled or reply.added or invalid or reply.dropped or reply.stopped:
            run.journal.note(
                f"refinement {self.count}: added {reply.added or 'nothing'}, cancelled {cancelled or 'nothing'}"
                + (f", dropped {invalid} invalid node(s)" if invalid else "")
                + (f", dropped {reply.dropped} repeat(s)" if reply.dropped else "")
                + (f" ({reply.stopped})" if reply.stopped else "")
            )
            run.emit("planned", round_index, f"refinement added {len(reply.added)}, cancelled {len(cancelled)}")


def _pending(execution: Execution) -> bool:
    return any(record.status in ("queued", "running") for record in execution.records.values())
