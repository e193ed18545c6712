"""Run traces: a JSONL file with a header line, one line per event, and a result line; secrets redacted.

Every `agentdag run` writes one (unless `--no-trace`), and `agentdag trace show FILE` renders it again::

    {"type": "header", "version": 1, "task": "...", "task_file": "...", "tools": [...], "started_at": "..."}
    {"type": "run", "kind": "planning", "time": 0.01, "round": 0, "detail": "attempt 1"}
    {"type": "node", "kind": "running", "time": 0.42, "node_id": 1, "tool": "calculate", "attempt": 1, ...}
    {"type": "result", "status": "done", "answer": ..., "usage": {...}, "nodes": [...], ...}

Node event times count from the opening of the execution, run event times from the start of the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from agentdag.errors import AgentdagError
from agentdag.events import Event, NodeEvent
from agentdag.messages import Usage
from agentdag.result import RunResult

__all__ = [
    "REDACTED",
    "TRACE_VERSION",
    "Redactor",
    "Trace",
    "TraceEnding",
    "TraceFileError",
    "TraceWriter",
    "event_to_json",
    "read_trace",
    "result_to_json",
]

TRACE_VERSION = 1
REDACTED = "[redacted]"
SECRET_VARIABLES = ("AGENTDAG_API_KEY", "OPENAI_API_KEY")
_MIN_SECRET_CHARS = 4  # shorter values would redact ordinary words


class TraceFileError(AgentdagError):
    """A trace file is missing, unreadable, malformed or truncated."""


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces every occurrence of a secret (an API key) in strings, at any depth of a JSON value.

    Attributes:
        secrets: the values to hide; longest first, so that a key containing another is hidden whole.
    """

    secrets: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, *extra: str | None) -> Redactor:
        """The API keys of the environment (`AGENTDAG_API_KEY`, `OPENAI_API_KEY`) plus `extra` ones."""
        values = [os.environ.get(name) for name in SECRET_VARIABLES] + list(extra)
        found = {value for value in values if value and len(value) >= _MIN_SECRET_CHARS}
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def redact(self, value: Any) -> Any:
        """A copy of `value` (JSON data) with every secret replaced by `REDACTED`."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, Mapping):
            return {self.redact(str(key)): self.redact(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(item) for item in value]
        return value


def event_to_json(event: Event) -> dict[str, Any]:
    """One trace line for a node event or a planner/joiner event."""
    if isinstance(event, NodeEvent):
        line: dict[str, Any] = {
            "type": "node",
            "kind": event.kind,
            "time": round(event.time, 6),
            "node_id": event.node_id,
            "tool": event.tool,
            "attempt": event.attempt,
        }
        if event.duration_s is not None:
            line["duration_s"] = round(event.duration_s, 6)
        if event.error is not None:
            line["error"] = {"kind": event.error.kind, "message": event.error.message, "cause": event.error.cause}
        return line
    return {
        "type": "run",
        "kind": event.kind,
        "time": round(event.time, 6),
        "round": event.round,
        "detail": event.detail,
    }


def usage_to_json(usage: Usage) -> dict[str, Any]:
    """Token usage as JSON."""
    return {
        "calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "latency_s": round(usage.latency_s, 4),
    }


def result_to_json(result: RunResult, *, node_tokens: Mapping[int, int] | None = None) -> dict[str, Any]:
    """A run's result as JSON: the `--json` output of `agentdag run` and the last line of a trace.

    Args:
        result: the run's result.
        node_tokens: model tokens spent inside each node (the `llm` tool), by node id, when known.
    """
    tokens = node_tokens or {}
    return {
        "status": result.status,
        "answer": result.answer,
        "error": result.error,
        "wall_s": round(result.wall_s, 4),
        "first_dispatch_s": None if result.first_dispatch_s is None else round(result.first_dispatch_s, 4),
        "usage": {role: usage_to_json(usage) for role, usage in result.usage.items()},
        "replans": [
            {"round": item.round, "reason": item.reason, "nodes_added": item.nodes_added} for item in result.replans
        ],
        "notes": list(result.notes),
        "nodes": [
            {
                "id": record.id,
                "tool": record.node.tool,
                "status": record.status,
                "arguments": record.arguments,
                "output": record.output,
                "error": None
                if record.error is None
                else {"kind": record.error.kind, "message": record.error.message, "cause": record.error.cause},
                "started_at": record.started_at,
                "finished_at": record.finished_at,
                "attempts": record.attempts,
                "dependencies": sorted(record.dependencies),
                "tokens": tokens.get(record.id),
            }
            for record in result.records.values()
        ],
    }


@dataclass(frozen=True, slots=True)
class TraceEnding:
    """Why a run ended without a result: interrupted (Ctrl-C, SIGTERM), an error agentdag raised, or a crash."""

    reason: Literal["interrupted", "error", "crashed"]
    error: str | None


class TraceWriter:
    """Writes a trace file line by line; call it with each event (it is an event sink).

    Lines are written as they happen. A run that ends without a result writes an `end` line saying why;
    a process that is killed leaves neither, which `read_trace` reports as truncated.
    """

    def __init__(self, file: IO[str], path: Path, *, redactor: Redactor) -> None:
        self.path = path
        self._file = file
        self._redactor = redactor

    @classmethod
    def create(cls, path: Path, *, task: str, task_file: Path, tools: Iterable[str], redactor: Redactor) -> TraceWriter:
        """Create the file (and its folder) and write the header line.

        Raises:
            TraceFileError: the file cannot be created.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("w", encoding="utf-8", buffering=1)  # line by line: a killed run keeps its events
        except OSError as error:
            raise TraceFileError(f"{path}: cannot write the trace: {error.strerror}") from None
        writer = cls(file, path, redactor=redactor)
        writer.write(
            {
                "type": "header",
                "version": TRACE_VERSION,
                "task": task,
                "task_file": str(task_file),
                "tools": sorted(tools),
                "started_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            }
        )
        return writer

    def __call__(self, event: Event) -> None:
        """Write one event's line."""
        self.write(event_to_json(event))

    def write(self, line: Mapping[str, Any]) -> None:
        """Write one redacted JSON line."""
        if self._file.closed:
            return
        self._file.write(json.dumps(self._redactor.redact(line), ensure_ascii=False, default=str) + "\n")

    def finish(self, result: Mapping[str, Any]) -> None:
        """Write the result line and close the file."""
        self.write({"type": "result", **result})
        self.close()

    def end(self, ending: TraceEnding) -> None:
        """Write the line that says why the run ended without a result, and close the file."""
        self.write({"type": "end", "reason": ending.reason, "error": ending.error})
        self.close()

    def close(self) -> None:
        """Close the file (a trace closed without `finish` or `end` reads as truncated)."""
        self._file.close()


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace file read back: its header, its events and its result (as written)."""

    header: dict[str, Any]
    result: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def read_trace(path: Path) -> Trace:
    """Read a trace file written by `TraceWriter`, or a run folder's `trace.jsonl` when `path` is a folder.

    Raises:
        TraceFileError: the file is missing or unreadable, a line is not JSON, the header is missing or
            the result line is (a trace that ends with why the run stopped, or a truncated one), each in one
            line naming the file.
    """
    if path.is_dir():  # a run folder: its trace
        path = path / "trace.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TraceFileError(f"{path}: cannot read the trace: {error}") from None
    lines: list[dict[str, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as error:
            raise TraceFileError(f"{path}:{number}: not a trace line (invalid JSON: {error.msg})") from None
        if not isinstance(line, dict) or not isinstance(line.get("type"), str):
            raise TraceFileError(f"{path}:{number}: not a trace line (no `type`)")
        lines.append(line)
    if not lines or lines[0]["type"] != "header":
        raise TraceFileError(f"{path}: not an agentdag trace (the first line is not a header)")
    if lines[0].get("version") != TRACE_VERSION:
        raise TraceFileError(f"{path}: trace version {lines[0].get('version')!r}; this agentdag reads {TRACE_VERSION}")
    if lines[-1]["type"] == "end":
        raise TraceFileError(f"{path}: {_describe_ending(lines[-1])}")
    if lines[-1]["type"] != "result":
        raise TraceFileError(f"{path}: truncated trace: no result line (the process was killed before the run ended)")
    return Trace(header=lines[0], result=lines[-1], events=lines[1:-1])


def _describe_ending(line: Mapping[str, Any]) -> str:
    reason, error = line.get("reason"), line.get("error")
    if reason == "interrupted":
        return "the run was interrupted before it ended (`agentdag run --resume` on its run folder continues it)"
    if reason == "error":
        return f"the run stopped before it ended: {error}"
    return f"the run crashed before it ended: {error}"
