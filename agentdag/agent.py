"""The SDK entry point: an `Agent` runs tasks over tools and a model, and returns a `RunResult`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio

from agentdag.backends.base import Backend
from agentdag.errors import AgentdagError, InvalidReferenceError
from agentdag.events import RunEventSink
from agentdag.executor import Executor
from agentdag.models.base import Model
from agentdag.plan import Node, PlanProblem
from agentdag.planning import Compiler, PlannerConfig
from agentdag.references import resolve_references
from agentdag.result import RunResult, RunStatus
from agentdag.toolsets.base import JsonValue, Tool
from agentdag.toolsets.model import model_tool_usage
from agentdag.toolsets.registry import ToolRegistry

__all__ = ["Agent"]


class Agent:
    """Runs work as a parallel DAG of tool calls.

    Args:
        tools: the tools plans may call.
        model: the model for every role that has no model of its own.
        planner_model: writes plans (default: `model`).
        joiner_model: decides to finish or replan (default: `model`).
        planner: planner, joiner and replanning settings.
        max_concurrency: at most this many tool calls at once.
        tool_concurrency: per-tool caps by name.
        timeout_s: deadline of one tool call attempt for tools that set none.
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
        max_concurrency: int | None = None,
        tool_concurrency: Mapping[str, int] | None = None,
        timeout_s: float | None = 300.0,
        on_event: Sequence[RunEventSink] = (),
        backend: Backend | None = None,
    ) -> None:
        self.tools = ToolRegistry(tools)
        self.planner_model = planner_model or model
        self.joiner_model = joiner_model or model
        self.planner = planner or PlannerConfig()
        self.on_event = list(on_event)
        self.executor = Executor(
            self.tools,
            max_concurrency=max_concurrency,
            tool_concurrency=tool_concurrency,
            timeout_s=timeout_s,
            on_event=self.on_event,
            backend=backend,
        )

    async def run(self, task: str) -> RunResult:
        """Plan the task, run the plan in parallel, join, and replan as needed.

        Model failures, invalid plans and tool failures do not raise: the result says what happened.

        Raises:
            AgentdagError: the agent has no model for the planner or the joiner.
        """
        return await self._compiler().run(task)

    async def draft(self, task: str) -> tuple[list[Node], list[PlanProblem]]:
        """Ask the planner for a plan and validate it without running anything (`agentdag plan`)."""
        return await self._compiler().draft(task)

    def run_sync(self, task: str) -> RunResult:
        """`run` for code that is not async (starts and closes its own event loop)."""
        return anyio.run(self.run, task)

    async def run_plan(self, plan: Sequence[Node], *, answer: Any = None) -> RunResult:
        """Run a fixed plan, without a planner, and build the answer from node outputs.

        Args:
            plan: the nodes; validated first (an invalid plan raises `PlanError` and nothing runs).
            answer: a template over node outputs (references such as `"${3}"`); by default the output
                of the last node.
        """
        before = model_tool_usage(self.tools.values())
        result = await self.executor.run(plan)
        template = answer if answer is not None else (f"${{{plan[-1].id}}}" if plan else None)
        status: RunStatus = "done"
        error: str | None = None
        value: JsonValue = None
        try:
            value = resolve_references(template, result.outputs)
        except InvalidReferenceError as problem:
            status, error = "failed", f"no answer: {problem}"
            failed = result.with_status("failed")
            if failed and failed[0].error is not None:
                error += f" (node {failed[0].id} failed: {failed[0].error.message})"
        return RunResult(
            status=status,
            answer=value,
            records=result.records,
            usage={"tools": model_tool_usage(self.tools.values()) - before},
            wall_s=result.wall_s,
            error=error,
        )

    def _compiler(self) -> Compiler:
        if self.planner_model is None or self.joiner_model is None:
            raise AgentdagError("Agent.run needs a model (pass model=, or planner_model= and joiner_model=)")
        return Compiler(
            executor=self.executor,
            planner_model=self.planner_model,
            joiner_model=self.joiner_model,
            config=self.planner,
            on_event=self.on_event,
        )

    def run_plan_sync(self, plan: Sequence[Node], *, answer: Any = None) -> RunResult:
        """`run_plan` for code that is not async (starts and closes its own event loop)."""
        return anyio.run(lambda: self.run_plan(plan, answer=answer))
