"""The SDK entry point: an `Agent` runs tasks over tools and a model, and returns a `RunResult`."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import anyio

from agentdag.backends.base import Backend
from agentdag.config import Limits, PlannerConfig
from agentdag.errors import AgentdagError, InvalidReferenceError, PlanError
from agentdag.events import RunEventSink
from agentdag.executor import Executor
from agentdag.messages import Usage
from agentdag.models.base import Model
from agentdag.plan import Node, validate_plan
from agentdag.planning import Planner
from agentdag.records import ExecutionResult
from agentdag.references import find_references, resolve_references
from agentdag.result import PlanDraft, RunResult, RunStatus
from agentdag.saving import NodeSaver
from agentdag.store import RunStore
from agentdag.toolsets.base import JsonValue, Tool
from agentdag.toolsets.registry import ToolRegistry
from agentdag.usage import RunMeter, metering

__all__ = ["Agent"]


class Agent:
    """Runs work as a parallel DAG of tool calls.

    Args:
        tools: the tools plans may call.
        model: the model for every role that has no model of its own.
        planner_model: writes plans (default: `model`).
        joiner_model: decides to finish or replan (default: `model`).
        planner: planner, joiner and replanning settings.
        limits: concurrency caps and the deadline of one tool call attempt.
        on_event: callbacks that receive every node event and planner/joiner event.
        backend: where ready nodes run (default: this event loop); see `agentdag.backends`.
    """

    def __init__(
        self,
        *,
        tools: Iterable[Tool],
        model: Model | None = None,
        planner_model: Model | None = None,
        joiner_model: Model | None = None,
        planner: PlannerConfig | None = None,
        limits: Limits | None = None,
        on_event: Sequence[RunEventSink] = (),
        backend: Backend | None = None,
    ) -> None:
        self.tools = ToolRegistry(tools)
        self.planner_model = planner_model or model
        self.joiner_model = joiner_model or model
        self.planner = planner or PlannerConfig()
        self.on_event = list(on_event)
        self.executor = Executor(self.tools, limits=limits, on_event=self.on_event, backend=backend)

    async def run(self, task: str, *, store: RunStore | None = None, meter: RunMeter | None = None) -> RunResult:
        """Plan the task, run the plan in parallel, join, and replan as needed.

        Model failures, invalid plans and tool failures do not raise: the result says what happened.

        Args:
            task: what to do, in words.
            store: saves the run's state as it goes. If it holds an unfinished run of this task, the run
                resumes: finished nodes are restored, not run again (see `agentdag.store`).
            meter: the run's usage meter (default: a new one). Every model call of the run reports to it:
                pass one to watch tokens as they are spent, or to keep them if the run is cut off.

        Raises:
            AgentdagError: the agent has no model for the planner or the joiner.
            RunStoreError: the store holds another task's run, or a run that is already done.
        """
        return await self._planner(store).run(task, meter=meter)

    async def draft(self, task: str, *, meter: RunMeter | None = None) -> PlanDraft:
        """Ask the planner for a plan, repaired and validated as `run` would, without running anything.

        The same model replies give the plan `run` would start (`agentdag plan` prints it).

        Args:
            task: what to do, in words.
            meter: the draft's usage meter (default: a new one): pass one to read the planner's tokens.
        """
        return await self._planner().draft(task, meter=meter)

    def run_sync(self, task: str, *, store: RunStore | None = None, meter: RunMeter | None = None) -> RunResult:
        """`run` for code that is not async (starts and closes its own event loop)."""
        return anyio.run(functools.partial(self.run, task, store=store, meter=meter))

    async def run_plan(
        self,
        plan: Sequence[Node],
        *,
        answer: Any = None,
        store: RunStore | None = None,
        meter: RunMeter | None = None,
    ) -> RunResult:
        """Run a fixed plan, without a planner, and build the answer from node outputs.

        Args:
            plan: the nodes; validated first (an invalid plan raises `PlanError` and nothing runs).
            answer: a template over node outputs (references such as `"${3}"`); by default the output
                of the last node.
            store: saves node states as they change; nodes it holds as finished are restored, not run.
            meter: the run's usage meter (default: a new one); the `llm` tool's calls report to it.

        Raises:
            PlanError: the plan is invalid.
            RunStoreError: the store holds a run that is already done.
        """
        meter = meter if meter is not None else RunMeter()
        with metering(meter):
            if store is None:
                result = await self.executor.run(plan)
            else:
                result = await self._execute_plan(plan, store, meter)
        template = answer if answer is not None else (f"${{{plan[-1].id}}}" if plan else None)
        status: RunStatus = "done"
        error: str | None = None
        value: JsonValue = None
        try:
            value = resolve_references(template, await self._fetch_referenced(template, result.outputs))
        except InvalidReferenceError as problem:
            status, error = "failed", f"no answer: {problem}"
            failed = result.with_status("failed")
            if failed and failed[0].error is not None:
                error += f" (node {failed[0].id} failed: {failed[0].error.message})"
        run_result = RunResult(
            status=status,
            answer=value,
            records=result.records,
            usage={"tools": meter.usage["tools"]},
            wall_s=result.wall_s,
            error=error,
        )
        if store is not None:
            store.save_result(run_result)
        return run_result

    async def _fetch_referenced(self, template: Any, outputs: dict[int, JsonValue]) -> dict[int, JsonValue]:
        """`outputs`, with those `template` refers to fetched in full (a backend may keep them elsewhere)."""
        backend = self.executor.backend
        wanted = {reference.node_id for reference in find_references(template)}
        return {
            node_id: await backend.fetch(output) if node_id in wanted else output for node_id, output in outputs.items()
        }

    async def _execute_plan(self, plan: Sequence[Node], store: RunStore, meter: RunMeter) -> ExecutionResult:
        """Run the plan with its state saved, restoring what the store holds (the usage saved before too)."""
        saved = store.load_unfinished()
        problems = validate_plan(plan, self.tools)
        if problems:
            raise PlanError(list(problems))
        meter.add("tools", saved.usage.get("tools", Usage()))
        meter.subscribe(lambda role, _: store.save_usage({role: meter.usage[role]}))
        async with self.executor.open() as execution:
            NodeSaver(store, execution, durable=self.executor.backend.durable).restore(saved, plan)
        return execution.result()

    def _planner(self, store: RunStore | None = None) -> Planner:
        if self.planner_model is None or self.joiner_model is None:
            raise AgentdagError("Agent.run needs a model (pass model=, or planner_model= and joiner_model=)")
        return Planner(
            executor=self.executor,
            planner_model=self.planner_model,
            joiner_model=self.joiner_model,
            config=self.planner,
            on_event=self.on_event,
            store=store,
        )

    def run_plan_sync(
        self, plan: Sequence[Node], *, answer: Any = None, store: RunStore | None = None, meter: RunMeter | None = None
    ) -> RunResult:
        """`run_plan` for code that is not async (starts and closes its own event loop)."""
        return anyio.run(functools.partial(self.run_plan, plan, answer=answer, store=store, meter=meter))
