"""The backend protocol: what runs one attempt of one ready node.

Scheduling, limits, deadlines, retries, cancellation and replanning stay in the executor. A backend
only runs the node it is handed, in the current process (`LocalBackend`) or somewhere else (the Ray
backend in `agentdag.backends.ray`). The executor cancels an attempt by cancelling the task that awaits
`Backend.call`; a backend that runs work elsewhere must stop that work when it sees the cancellation.

A backend is an async context manager: open it before the executor runs and close it after (the local
backend needs neither, so it may also be used unopened).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from agentdag.plan import Node
from agentdag.references import resolve_references
from agentdag.toolsets.base import JsonValue, Tool

__all__ = ["Backend", "LocalBackend", "NodeCall"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCall:
    """One attempt of one node, as the executor hands it to a backend.

    Attributes:
        node: the node, with its arguments as planned (references unresolved).
        tool: the tool it calls.
        inputs: the outputs of the nodes it depends on, by id.
        arguments: the arguments as the backend prepared them (`Backend.prepare`): resolved, or None when
            only the backend can resolve them where the call runs.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
    """

    node: Node
    tool: Tool
    inputs: Mapping[int, JsonValue]
    arguments: dict[str, JsonValue] | None
    attempt: int = 1


class Backend(ABC):
    """Runs ready nodes. Subclasses implement `call`.

    A backend that keeps outputs where they were made (a cluster's object store) hands the executor a
    small placeholder instead; `prepare`, `durable` and `fetch` are the only places that know it.

    Attributes:
        name: a short name for reports (`local`, `ray`).
    """

    name: str = "backend"

    async def __aenter__(self) -> Self:
        """Acquire what the backend needs (a cluster connection, workers); nothing by default."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:  # noqa: B027 - a hook; most backends hold nothing
        """Release what `__aenter__` acquired; nothing by default."""

    @abstractmethod
    async def call(self, call: NodeCall) -> JsonValue:
        """Run one attempt of the node and return its output.

        Raises:
            ToolArgumentsError: the arguments do not fit the tool's schema (the node fails, no retry).
            InvalidReferenceError: a reference could not be resolved (the node fails, no retry).
            Exception: any other failure of the tool; the executor records it and may retry.
        """

    def prepare(self, node: Node, inputs: Mapping[int, JsonValue]) -> dict[str, JsonValue] | None:
        """The node's arguments with references resolved against `inputs` (its dependencies' outputs).

        A backend that keeps some inputs elsewhere returns None, and resolves them where the call runs.

        Raises:
            InvalidReferenceError: a reference names a missing node or field (the node fails, no retry).
        """
        resolved: dict[str, JsonValue] = resolve_references(node.arguments, inputs)
        return resolved

    def durable(self, output: JsonValue) -> bool:
        """Whether `output` is the value itself, which outlives the backend (saved state may keep it)."""
        del output
        return True

    async def fetch(self, output: JsonValue) -> JsonValue:
        """The full value of a node's output: `output` itself unless the backend keeps it elsewhere."""
        return output


class LocalBackend(Backend):
    """Runs each node's tool in the executor's own event loop (the default)."""

    name = "local"

    async def call(self, call: NodeCall) -> JsonValue:
        """Call the tool with the resolved arguments."""
        assert call.arguments is not None, "the local backend keeps no outputs, so arguments always resolve"
        return await call.tool.call(call.arguments)
