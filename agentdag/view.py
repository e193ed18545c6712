"""What a person sees: the live view of a run and the summary at its end (rich, at the edge only).

`RunView` is an event sink that only updates its state; `rich.live.Live` renders it on its own refresh.
`render_summary` draws a finished run, from a live result or from a trace read back.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agentdag.events import Event, NodeEvent
from agentdag.messages import Usage
from agentdag.summary import RunSummary, format_seconds
from agentdag.usage import Role

__all__ = ["RunView", "render_answer", "render_summary", "shorten"]

STATUS_STYLE = {
    "queued": "dim",
    "running": "bold yellow",
    "retrying": "yellow",
    "done": "green",
    "failed": "bold red",
    "skipped": "magenta",
    "cancelled": "dim red",
}
_LOG_LINES = 8


@dataclass(slots=True)
class _Row:
    tool: str
    status: str = "queued"
    started: float | None = None  # time.perf_counter() of the start, for the running clock
    duration_s: float | None = None
    attempt: int = 0
    tokens: int = 0
    error: str = ""


class RunView:
    """The state of a run as events arrive, rendered by `rich.live.Live` (via `__rich__`).

    Call it with each event, and subscribe `count_usage` to the run's `RunMeter` for the tokens of every
    model call as it is spent (planner, joiner and the `llm` tool, per node). Every method only
    updates state, under a lock, because the live display renders from its own thread.

    Args:
        title: a line above the table (the task).
        redact: applied to every text shown (the title, errors, details), to keep API keys off the screen.
    """

    def __init__(self, title: str = "", *, redact: Callable[[str], str] = str) -> None:
        self._redact = redact
        self.title = redact(title)
        self.started = time.perf_counter()
        self.rows: dict[int, _Row] = {}
        self.log: deque[str] = deque(maxlen=_LOG_LINES)
        self.phase = "running"
        self.round = 0
        self.tokens = {"planner": 0, "joiner": 0, "tools": 0}
        self.steps: list[tuple[str, float]] = []  # planner/joiner events: (kind, seconds since the run started)
        self._node_of_task: dict[int, int] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Record one event (node status, or the planner/joiner step)."""
        with self._lock:
            if isinstance(event, NodeEvent):
                self._on_node(event)
            else:
                self.phase, self.round = event.kind, event.round
                self.steps.append((event.kind, event.time))
                detail = f": {self._redact(event.detail)}" if event.detail else ""
                self.log.append(f"{event.time:7.2f} s  round {event.round}  {event.kind}{detail}")

    def _on_node(self, event: NodeEvent) -> None:
        row = self.rows.setdefault(event.node_id, _Row(event.tool))
        row.status = event.kind  # the events are named after the statuses they lead to ("retrying" too)
        row.attempt = max(row.attempt, event.attempt)
        if event.kind == "running":
            row.started = time.perf_counter()
            # The node's tool runs in the task that emits "running": model usage from that task is the node's.
            self._node_of_task[_current_task_id()] = event.node_id
        if event.duration_s is not None:
            row.duration_s = event.duration_s
        if event.error is not None:
            row.error = self._redact(event.error.message)

    def count_usage(self, role: Role, usage: Usage) -> None:
        """Add the tokens of one model call (a `RunMeter` listener); a tool's go to the node that made the call."""
        with self._lock:
            self.tokens[role] += usage.total_tokens
            if role != "tools":
                return
            node_id = self._node_of_task.get(_current_task_id())
            if node_id is not None and node_id in self.rows:
                self.rows[node_id].tokens += usage.total_tokens

    @property
    def node_tokens(self) -> dict[int, int]:
        """Tokens spent inside each node that used a model, by node id."""
        with self._lock:
            return {node_id: row.tokens for node_id, row in self.rows.items() if row.tokens}

    def __rich__(self) -> RenderableType:
        with self._lock:
            now = time.perf_counter()
            table = Table(box=None, pad_edge=False, header_style="bold")
            for column, justify in (("id", "right"), ("tool", "left"), ("status", "left"), ("time", "right")):
                table.add_column(column, justify=justify)  # type: ignore[arg-type]
            table.add_column("tokens", justify="right")
            table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=60)
            for node_id, row in self.rows.items():
                if row.duration_s is not None:
                    clock = f"{row.duration_s:.2f} s"
                elif row.started is not None and row.status in ("running", "retrying"):
                    clock = f"{now - row.started:.1f} s…"
                else:
                    clock = "-"
                status = row.status if row.attempt <= 1 else f"{row.status} (try {row.attempt})"
                table.add_row(
                    str(node_id),
                    row.tool,
                    Text(status, style=STATUS_STYLE.get(row.status, "")),
                    clock,
                    str(row.tokens) if row.tokens else "-",
                    Text(row.error, style="red"),
                )
            counts = dict.fromkeys(("running", "done", "failed"), 0)
            for row in self.rows.values():
                if row.status in counts:
                    counts[row.status] += 1
            tokens = " · ".join(f"{role} {count}" for role, count in self.tokens.items())
            header = Text.assemble(
                (f"{self.phase} ", "bold cyan"),
                f"round {self.round} · {now - self.started:.1f} s · {_count(len(self.rows), 'node')} "
                f"({counts['running']} running, {counts['done']} done, {counts['failed']} failed) · tokens {tokens}",
            )
            parts: list[RenderableType] = []
            if self.title:
                parts.append(Text(self.title, style="bold"))
            parts.append(header)
            if self.rows:
                parts.append(table)
            if self.log:
                parts.append(Text("\n".join(self.log), style="cyan"))
            return Group(*parts)


def _current_task_id() -> int:
    try:
        return anyio.get_current_task().id
    except RuntimeError:  # called outside an event loop (tests feeding events by hand)
        return 0


def render_answer(answer: Any) -> str:
    """The answer as text: strings as they are, anything else as JSON."""
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def render_summary(summary: RunSummary, *, trace_path: str | None = None, width: int = 120) -> RenderableType:
    """The end-of-run summary of a run.

    Every node (status, start, duration, tokens, dependencies, output or error), then the answer, wall
    time against the critical path, parallelism, tokens by role, failures with their causes and notes.
    Outputs are cut to fit a line of `width` characters.
    """
    path, path_s = summary.critical_path
    on_path = set(path)
    table = Table(
        title=_count(len(summary.nodes), "node"),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    tool_width = max((len(node.tool) for node in summary.nodes), default=4)
    for column in ("id", "tool", "status", "start (s)", "time (s)", "tokens", "after"):
        justify = "right" if column in ("id", "start (s)", "time (s)", "tokens") else "left"
        least = tool_width if column == "tool" else len(column)
        table.add_column(column, justify=justify, no_wrap=True, min_width=least)  # type: ignore[arg-type]
    table.add_column("output or error", no_wrap=True, overflow="ellipsis")
    detail_width = max(16, width - 62 - tool_width)  # what the other columns leave of the line
    for node in summary.nodes:
        detail = node.error if node.error is not None else render_answer(node.output)
        started = "-" if node.started_at is None else f"{node.started_at:.3f}"
        duration = "-" if node.finished_at is None or node.started_at is None else f"{node.duration_s:.3f}"
        table.add_row(
            Text(str(node.id), style="bold" if node.id in on_path else ""),
            node.tool,
            Text(node.status, style=STATUS_STYLE.get(node.status, "")),
            started,
            duration,
            "-" if node.tokens is None else str(node.tokens),
            ", ".join(str(item) for item in node.dependencies) or "-",
            Text(shorten(detail, detail_width), style="red" if node.error else ""),
        )
    lines = Text()
    if summary.status == "done":
        lines.append("answer: ", style="bold green")
        lines.append(render_answer(summary.answer) + "\n")
    else:
        lines.append("failed: ", style="bold red")
        lines.append((summary.error or "no answer") + "\n")
    chain = " → ".join(str(item) for item in path) or "-"
    lines.append("time: ", style="bold")
    lines.append(
        f"wall {format_seconds(summary.wall_s)} · critical path {format_seconds(path_s)} (nodes {chain}) · "
        f"node time {format_seconds(summary.busy_s)} · parallelism {summary.parallelism:.2f}x\n"
    )
    lines.append("tokens: ", style="bold")
    roles = [
        f"{role} {summary.total_tokens(role)} ({_count(int(usage['calls']), 'call')})"
        for role, usage in summary.usage.items()
        if usage.get("calls")
    ]
    lines.append((" · ".join(roles) or "no model calls") + "\n")
    if summary.replans:
        lines.append("replans: ", style="bold")
        lines.append(f"{summary.replans}\n")
    for node in summary.failures:
        lines.append("failure: ", style="bold red")
        cause = f" (caused by node {node.cause})" if node.cause is not None else ""
        lines.append(f"node {node.id} {node.tool} {node.status}: {node.error or node.status}{cause}\n")
    for note in summary.notes:
        lines.append("note: ", style="bold yellow")
        lines.append(note + "\n")
    if trace_path is not None:
        lines.append("trace: ", style="bold")
        lines.append(trace_path + "\n")
    lines.rstrip()
    return Group(table, lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
