"""The documented error types of agentdag.

Every error a user can cause or meet derives from `AgentdagError`, so callers can catch one type and the
CLI can print one clear line instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "AgentdagError",
    "InvalidReferenceError",
    "ModelError",
    "PlanError",
    "TaskFileError",
    "ToolArgumentsError",
    "ToolError",
]


class AgentdagError(Exception):
    """Base class of every error agentdag raises on purpose."""


class TaskFileError(AgentdagError):
    """A task file is missing, unreadable, not YAML, or does not match the schema."""


class PlanError(AgentdagError):
    """A plan failed validation; `problems` lists every problem found, each naming its node."""

    def __init__(self, problems: list[object]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid plan ({len(problems)} problem(s)):\n{lines}")


class InvalidReferenceError(AgentdagError):
    """A reference to another node's output is malformed, or its node or field path does not exist."""


class ToolError(AgentdagError):
    """A tool call failed; raised by tools to report a failure with a clean message."""


class ToolArgumentsError(ToolError):
    """The arguments of a tool call do not match the tool's schema."""


class ModelError(AgentdagError):
    """A model failed: unreachable, timed out, malformed or truncated output, context overflow.

    Attributes:
        source: what failed, as the message starts with it: a model server's label (e.g. "openai-compatible
            server at http://127.0.0.1:8000/v1") or a scaling strategy's name (e.g. "best_of_n strategy").
        retryable: whether trying the same request again may succeed (timeouts, 429, 5xx, broken streams).
    """

    def __init__(self, message: str, *, source: str, retryable: bool = False) -> None:
        self.source = source
        self.retryable = retryable
        super().__init__(f"{source}: {message}")
