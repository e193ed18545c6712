"""The SDK entry point: an `Agent` runs tasks over tools and a model, and returns a `RunResult`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from agentdag.errors import InvalidReferenceError
from agentdag.events import EventSink
from agentdag.executor import Executor, NodeRecord
from agentdag.messages import Usage
from agentdag.plan import Node
from agentdag.references import resolve_references
from agentdag.toolsets.base import JsonValue, Tool
from agentdag.toolsets.model import ModelTool
from agentdag.toolsets.registry import ToolRegistry

__all__ = ["Agent", "RunResult", "RunStatus"]

RunStatus = Literal["done", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What a run produced.

    Attributes:
        status: "done" when an answer was produced, "failed" otherwise (see `error`).
        answer: the final answer.
        records: every node's record: tool, resolved arguments, output, timings, status.
        usage: token usage by role ("planner", "joiner", "tools").
        error: why the run failed, in one line.
    """

    status: RunStatus
    answer: JsonValue
    records: Mapping[int, NodeRecord]
    usage: Mapping[str, Usage] = field(default_factory=dict)
    wall_s: float = 0.0
    error: str | None = None

    @property
    def failures(self) -> list[NodeRecord]:
        """Nodes that failed, were skipped, or were cancelled."""
        return [record for record in self.records.values() if record.status in ("failed", "skipped", "cancelled")]


class Agent:
    """Runs work as a parallel DAG of tool calls.

    Args:
        tools: the tools plans may call.
        max_concurrency: at most this many tool calls at once.
        tool_concurrency: per-tool caps by name.
        timeout_s: deadline of one tool call attempt for tools that set none.
        on_event: callbacks that receive every node event.
    """

    def __init__(
        self,
        *,
        tools: Iterable[Tool],
        max_concurrency: int | None = None,
        tool_concurrency: Mapping[str, int] | None = None,
        timeout_s: float | None = 300.0,
        on_event: Sequence[EventSink] = (),
    ) -> None:
        self.tools = ToolRegistry(tools)
        self.executor = Executor(
            self.tools,
            max_concurrency=max_concurrency,
            tool_concurrency=tool_concurrency,
            timeout_s=timeout_s,
            on_event=on_event,
        )

    async def run_plan(self, plan: Sequence[Node], *, answer: Any = None) -> RunResult:
        """Run a fixed plan and build the answer from node outputs.

        Args:
            plan: the nodes; validated first (an invalid plan raises `PlanError` and nothing runs).
            answer: a template over node outputs (references such as `"${3}"`); by default the output
                of the last node.
        """
        result = await self.executor.run(plan)
        template = answer if answer is not None else (f"${{{plan[-1].id}}}" if plan else None)
        status: RunStatus = "done"
        error: str | None = None
        value: JsonValue = None
        try:
            value = resolve_references(template, result.outputs)
        except InvalidReferenceError as problem:
            status, error = "failed", f"no answer: {problem}"
            failed = [record for record in result.records.values() if record.status == "failed"]
            if failed and failed[0].error is not None:
                error += f" (node {failed[0].id} failed: {failed[0].error.message})"
        return RunResult(
            status=status,
            answer=value,
            records=result.records,
            usage={"tools": self._tool_usage()},
            wall_s=result.wall_s,
            error=error,
        )

    def run_plan_sync(self, plan: Sequence[Node], *, answer: Any = None) -> RunResult:
        """`run_plan` for code that is not async (starts and closes its own event loop)."""
        return anyio.run(lambda: self.run_plan(plan, answer=answer))

    def _tool_usage(self) -> Usage:
        total = Usage()
        for item in self.tools.values():
            if isinstance(item, ModelTool):
                total = total + item.usage
        return total
