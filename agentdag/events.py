"""Events the engine emits while it runs, for live views, traces and tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Event",
    "EventSink",
    "NodeError",
    "NodeErrorKind",
    "NodeEvent",
    "NodeEventKind",
    "RunEvent",
    "RunEventKind",
    "RunEventSink",
]

NodeErrorKind = Literal[
    "tool_error",
    "invalid_arguments",
    "invalid_reference",
    "timeout",
    "cancelled",
    "dependency_failed",
]


@dataclass(frozen=True, slots=True)
class NodeError:
    """Why a node did not produce an output.

    Attributes:
        kind: the class of failure; "dependency_failed" marks a skipped node.
        message: one line for people and for the planner.
        cause: for a skipped node, the id of the failed node upstream.
    """

    kind: NodeErrorKind
    message: str
    cause: int | None = None


NodeEventKind = Literal["queued", "running", "retrying", "done", "failed", "skipped", "cancelled"]
"""A node's new status (queued, running, done, failed, skipped, cancelled), or "retrying" before a retry."""


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A change in one node's state.

    Attributes:
        time: seconds since the execution opened.
        attempt: the attempt number (1 for the first call).
        duration_s: for finished and failed events, time since the node started.
    """

    kind: NodeEventKind
    node_id: int
    tool: str
    time: float
    attempt: int = 0
    duration_s: float | None = None
    error: NodeError | None = None


EventSink = Callable[[NodeEvent], None]
"""A callback that receives every event; it must return quickly and must not raise."""


RunEventKind = Literal[
    "planning",
    "planned",
    "plan_invalid",
    "fallback",
    "joining",
    "replanning",
    "finished",
    "stopped",
]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """A step of the planner/joiner loop.

    Attributes:
        kind: "planning" (a planner call starts), "planned" (its plan is in), "plan_invalid" (problems
            were sent back for repair), "fallback", "joining", "replanning", "finished", "stopped" (a
            budget or limit ended the run).
        time: seconds since the run started.
        round: 0 for the first plan, then one more per replan.
        detail: one line for people.
    """

    kind: RunEventKind
    time: float
    round: int = 0
    detail: str = ""


Event = NodeEvent | RunEvent
RunEventSink = Callable[[Event], None]
"""A callback for both node events and planner/joiner events."""
