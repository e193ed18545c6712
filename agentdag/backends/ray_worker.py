"""What runs on Ray's workers for the Ray backend: node calls, and the actor that hosts async tools.

Sync function tools run as Ray remote functions (`run_function_node`), each call in a worker's main
thread, so that `ray.cancel` can interrupt it. Async tools (async function tools and MCP tools) run on
`ToolHost` actors, since Ray refuses `async def` remote functions. An actor opens its own MCP session
per server (sessions hold live connections, which do not pickle) and closes them when told to.

Both return two values: an `Outcome` the driver reads at once, and the output itself when it is larger
than the inline limit, which then stays in Ray's object store until a dependent or `fetch` needs it.

This module imports ray; only `agentdag.backends.ray` (once ray is known to be installed) and Ray's
workers import it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import ray

from agentdag.errors import ToolError
from agentdag.references import resolve_references
from agentdag.toolsets.base import JsonValue, RemoteSpec, Tool
from agentdag.toolsets.function import FunctionSpec, FunctionTool, to_json_value
from agentdag.toolsets.mcp import McpToolset
from agentdag.toolsets.mcp_config import McpServerConfig

__all__ = [
    "NodeJob",
    "Outcome",
    "ToolHost",
    "run_function",
    "run_function_node",
    "settle_output",
]

PREVIEW_CHARS = 200
"""How much of a kept output's JSON text its placeholder shows."""

_CACHED_TOOLS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeJob:
    """One attempt of one node as shipped to a worker; outputs kept in the object store travel beside it.

    Attributes:
        tool: the tool's name, for messages.
        arguments: the arguments, when the driver could resolve them; None when some input is kept.
        planned: the node's arguments with their references (used when `arguments` is None).
        inputs: the outputs the driver holds, of the nodes the arguments refer to.
        kept: ids of the nodes whose kept outputs follow the job as top-level remote arguments, in order,
            so that Ray fetches them to the worker.
        inline_bytes: outputs larger than this (as JSON) stay in the object store.
    """

    tool: str
    arguments: dict[str, JsonValue] | None
    planned: dict[str, JsonValue]
    inputs: dict[int, JsonValue]
    kept: tuple[int, ...]
    inline_bytes: int

    def resolve(self, kept_values: Sequence[JsonValue]) -> dict[str, JsonValue]:
        """The arguments with every reference resolved, kept outputs included.

        Raises:
            InvalidReferenceError: a reference names a missing node or field.
        """
        if self.arguments is not None:
            return self.arguments
        inputs = {**self.inputs, **dict(zip(self.kept, kept_values, strict=True))}
        resolved: dict[str, JsonValue] = resolve_references(self.planned, inputs)
        return resolved


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """A node's output as the driver first sees it: the value, or its size and the start of its JSON text.

    Attributes:
        value: the output, when it is small enough to travel inline (else None).
        kept: whether the output stays in the object store (it is then the call's second return value).
        size: bytes of the output as JSON.
        preview: the first characters of that JSON, for kept outputs.
    """

    value: JsonValue
    kept: bool
    size: int
    preview: str = ""


def settle_output(output: JsonValue, inline_bytes: int) -> tuple[Outcome, JsonValue]:
    """Split an output into what the driver sees at once and what stays in the object store."""
    text = json.dumps(output, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode())
    if size <= inline_bytes:
        return Outcome(value=output, kept=False, size=size), None
    return Outcome(value=None, kept=True, size=size, preview=text[:PREVIEW_CHARS]), output


_tools: OrderedDict[str, FunctionTool] = OrderedDict()


def _unloadable(tool: str, error: Exception) -> ToolError:
    return ToolError(
        f"tool {tool!r} cannot be loaded on this Ray worker ({error}); the workers must be able to import "
        f"its module: install it on the cluster or ship it with a Ray runtime_env"
    )


def _function_tool(box: Sequence[ray.ObjectRef[FunctionSpec]], name: str) -> FunctionTool:
    """The tool of a spec, rebuilt once per worker process (the spec's object id names it)."""
    key = box[0].hex()
    tool = _tools.get(key)
    if tool is None:
        try:
            spec = ray.get(box[0])
        except ray.exceptions.RaySystemError as error:  # unpickling failed, e.g. the module is missing
            raise _unloadable(name, error) from None
        tool = _tools[key] = spec.build(None)
        if len(_tools) > _CACHED_TOOLS:
            _tools.popitem(last=False)
    else:
        _tools.move_to_end(key)
    return tool


def run_function_node(
    box: Sequence[ray.ObjectRef[FunctionSpec]], job: NodeJob, *kept: JsonValue
) -> tuple[Outcome, JsonValue]:
    """Run one attempt of a node of a sync function tool, in this worker's main thread.

    Args:
        box: a one-item list holding the spec's object ref (inside a list, Ray passes the ref itself,
            so the spec is fetched once per worker instead of with every call).
        job: the node's arguments or what resolves them.
        kept: the kept outputs the job names, fetched to this worker by Ray.
    """
    tool = _function_tool(box, job.tool)
    keywords = tool.bind(job.resolve(kept))
    return settle_output(to_json_value(tool.function(**keywords), tool=tool.name), job.inline_bytes)


run_function = ray.remote(num_returns=2, max_retries=0, retry_exceptions=False)(run_function_node)
"""`run_function_node` as a Ray remote function; the executor, not Ray, retries failed nodes."""


@dataclass(slots=True, eq=False)
class _Session:
    """One MCP session of an actor: `ready` is set once it is open or failed to open."""

    ready: anyio.Event
    toolset: McpToolset | None = None
    failure: str | None = None


class ToolHost:
    """An async actor that runs async function tools and holds MCP sessions, one per server.

    The driver starts `serve` once per server and actor; it holds that server's session open until
    `close`, so the session is entered and left in one task, as anyio's task groups require.
    """

    def __init__(self) -> None:
        self._specs: dict[str, RemoteSpec] = {}
        self._tools: dict[str, Tool] = {}
        self._sessions: dict[str, _Session] = {}
        self._closing: anyio.Event | None = None

    def _closed(self) -> anyio.Event:
        # Created on first use: anyio events belong to the actor's event loop, which __init__ runs outside.
        if self._closing is None:
            self._closing = anyio.Event()
        return self._closing

    def _session(self, key: str) -> _Session:
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(ready=anyio.Event())
        return session

    async def serve(self, key: str, server: McpServerConfig) -> None:
        """Open a session to `server` and hold it until `close` is called."""
        session = self._session(key)
        closed = self._closed()
        try:
            if not closed.is_set():
                async with McpToolset(server) as toolset:
                    session.toolset = toolset
                    session.ready.set()
                    await closed.wait()
        except Exception as error:  # the server did not start; calls report why
            session.failure = str(error) or type(error).__name__
        finally:
            session.toolset = None
            session.ready.set()

    @ray.method(num_returns=2)
    async def call(
        self, box: Sequence[ray.ObjectRef[Any]], job: NodeJob, *kept: JsonValue
    ) -> tuple[Outcome, JsonValue]:
        """Run one attempt of a node of an async function tool or an MCP tool (see `run_function_node`)."""
        arguments = job.resolve(kept)
        tool = await self._tool(box, job.tool)
        return settle_output(await tool.call(arguments), job.inline_bytes)

    async def close(self) -> None:
        """Let every `serve` close its session."""
        self._closed().set()

    async def _tool(self, box: Sequence[ray.ObjectRef[Any]], name: str) -> Tool:
        """The tool of a shipped spec: built once, or found in this actor's session to its MCP server."""
        key = box[0].hex()
        spec = self._specs.get(key)
        if spec is None:
            try:
                spec = self._specs[key] = await box[0]
            except ray.exceptions.RaySystemError as error:
                raise _unloadable(name, error) from None
        session_of = spec.session
        if session_of is None:
            tool = self._tools.get(key)
            if tool is None:
                tool = self._tools[key] = spec.build(None)
            return tool
        session = self._session(session_of[0])
        await session.ready.wait()
        if session.toolset is None:
            raise ToolError(
                f"MCP server {session_of[1].name!r} is not available on this Ray worker: {session.failure or 'closed'}"
            )
        return spec.build(session.toolset)
