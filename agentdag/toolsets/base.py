"""The tool protocol: a name, a JSON schema for the arguments, a policy, and one async `call`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["JsonValue", "RemoteSpec", "Tool", "ToolPolicy"]

JsonValue = Any
"""A value that JSON can carry: None, bool, int, float, str, list and dict of these."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolPolicy:
    """How the executor treats calls to one tool.

    Attributes:
        timeout_s: deadline of one attempt; `None` uses the executor's default.
        retries: extra attempts after a failure (0 = no retry). Only for tools safe to call again.
        backoff_s: delay before the first retry; it doubles on each further retry.
        max_concurrency: at most this many calls of the tool at once; `None` means no per-tool cap.
        read_only: the tool has no side effects: its results may be cached (see `CachedTool`), and a call
            repeated with nothing changed in between may reuse the first call's output.
        idempotent: calling it again with the same arguments changes nothing more than the first call did
            (a read-only tool is idempotent too), so a repeat straight after it may reuse its output.
    """

    timeout_s: float | None = None
    retries: int = 0
    backoff_s: float = 0.2
    max_concurrency: int | None = None
    read_only: bool = False
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.read_only and not self.idempotent:
            object.__setattr__(self, "idempotent", True)  # no side effects: repeating one changes nothing


class RemoteSpec(Protocol):
    """How a tool runs in another process (a Ray worker): what travels there and how it runs there.

    Attributes:
        name: the tool's name.
        blocking: it holds a thread while it runs (a sync function): each call gets a worker process of its
            own, where a cancellation can interrupt it. Otherwise calls share an async host.
        session: the MCP server the host must hold a session to, as (a key naming it, its settings), or None.
    """

    @property
    def name(self) -> str:
        """The tool's name."""
        ...

    @property
    def blocking(self) -> bool:
        """Whether a call holds a thread while it runs."""
        ...

    @property
    def session(self) -> tuple[str, Any] | None:
        """The MCP server the host must hold a session to, if any."""
        ...

    def build(self, toolset: Any) -> Tool:
        """The tool again, in the other process (`toolset`: the host's session to `session`, or None)."""
        ...


class Tool(ABC):
    """A callable the planner may use in a plan node.

    Attributes:
        name: unique name the plan refers to.
        description: what the tool does, shown to the planner.
        input_schema: JSON schema (an object schema) of the arguments.
        policy: timeout, retries and concurrency cap.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    policy: ToolPolicy

    @abstractmethod
    async def call(self, arguments: dict[str, JsonValue]) -> JsonValue:
        """Validate `arguments`, run the tool and return a JSON-able result.

        Raises:
            ToolArgumentsError: the arguments do not match `input_schema`.
            Exception: any failure of the tool itself; the executor records it on the node.
        """

    def remote(self) -> RemoteSpec | None:
        """How the tool runs in another process, or None if it runs only here (the default)."""
        return None
