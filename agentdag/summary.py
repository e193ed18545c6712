"""What a finished run amounts to: node timings, the critical path, parallelism, tokens and failures.

Built from the result JSON (`agentdag.trace.result_to_json`), so a live run and a trace read back later
are summarised, drawn and rendered the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["NodeSummary", "RunSummary", "critical_path", "format_seconds", "summarize"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSummary:
    """One node of a finished run.

    Attributes:
        started_at, finished_at: seconds since the execution opened (None if it never started/finished).
        tokens: model tokens spent inside the node (the `llm` tool), when known.
        error: why the node has no output, in one line.
        cause: for a skipped node, the failed node upstream.
    """

    id: int
    tool: str
    status: str
    started_at: float | None = None
    finished_at: float | None = None
    dependencies: tuple[int, ...] = ()
    attempts: int = 0
    tokens: int | None = None
    output: Any = None
    error: str | None = None
    cause: int | None = None

    @property
    def duration_s(self) -> float:
        """Time from start to finish (0 for a node that did not run)."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return max(0.0, self.finished_at - self.started_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """A finished run, for people.

    Attributes:
        usage: by role ("planner", "joiner", "tools"): calls, prompt_tokens, completion_tokens.
    """

    status: str
    answer: Any
    error: str | None
    wall_s: float
    nodes: tuple[NodeSummary, ...]
    usage: Mapping[str, Mapping[str, Any]]
    notes: tuple[str, ...] = ()
    replans: int = 0

    @property
    def busy_s(self) -> float:
        """The sum of every node's duration: the wall time the nodes would take one after another."""
        return sum(node.duration_s for node in self.nodes)

    @property
    def parallelism(self) -> float:
        """Node time per wall second (sum of node durations / wall time)."""
        return self.busy_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def critical_path(self) -> tuple[tuple[int, ...], float]:
        """The longest chain of node durations through the dependencies: its node ids and its length."""
        return critical_path(self.nodes)

    @property
    def failures(self) -> list[NodeSummary]:
        """Nodes that failed, were skipped or were cancelled."""
        return [node for node in self.nodes if node.status in ("failed", "skipped", "cancelled")]

    def total_tokens(self, role: str) -> int:
        """Prompt plus completion tokens of one role (0 if the role made no calls)."""
        usage = self.usage.get(role, {})
        return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


def critical_path(nodes: Sequence[NodeSummary]) -> tuple[tuple[int, ...], float]:
    """The longest chain of node durations through the dependencies: its node ids and its length."""
    by_id = {node.id: node for node in nodes}

    @cache
    def longest(node_id: int) -> tuple[float, tuple[int, ...]]:
        node = by_id[node_id]
        best: tuple[float, tuple[int, ...]] = (0.0, ())
        for dependency in node.dependencies:
            # A plan is acyclic, and dependencies always name earlier nodes; guard anyway for traces.
            if dependency in by_id and dependency != node_id:
                best = max(best, longest(dependency))
        return best[0] + node.duration_s, (*best[1], node_id)

    if not by_id:
        return (), 0.0
    length, path = max(longest(node_id) for node_id in by_id)
    return path, length


def summarize(result: Mapping[str, Any]) -> RunSummary:
    """Summarise a result JSON object (`agentdag.trace.result_to_json`).

    Raises:
        ValueError: the object lacks a field or a field has the wrong type.
    """
    try:
        nodes = tuple(
            NodeSummary(
                id=int(node["id"]),
                tool=str(node["tool"]),
                status=str(node["status"]),
                started_at=_optional_float(node.get("started_at")),
                finished_at=_optional_float(node.get("finished_at")),
                dependencies=tuple(int(item) for item in node.get("dependencies") or ()),
                attempts=int(node.get("attempts") or 0),
                tokens=None if node.get("tokens") is None else int(node["tokens"]),
                output=node.get("output"),
                error=None if not node.get("error") else str(node["error"]["message"]),
                cause=None if not node.get("error") else node["error"].get("cause"),
            )
            for node in result["nodes"]
        )
        return RunSummary(
            status=str(result["status"]),
            answer=result.get("answer"),
            error=result.get("error"),
            wall_s=float(result["wall_s"]),
            nodes=nodes,
            usage={str(role): dict(usage) for role, usage in (result.get("usage") or {}).items()},
            notes=tuple(str(note) for note in result.get("notes") or ()),
            replans=len(result.get("replans") or ()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a run result ({type(error).__name__}: {error})") from None


def format_seconds(seconds: float) -> str:
    """A duration for people: milliseconds below a tenth of a second, else seconds."""
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds:.2f} s"


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
