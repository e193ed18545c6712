"""MCP toolsets: the tools of an MCP server (stdio subprocess or streamable HTTP) as agentdag tools.

One session per server is shared by every concurrent call, behind a per-server concurrency cap. A
supervisor task owns the session: when the server dies it starts it again, and calls to tools the server
annotates as read-only or idempotent are retried once on the new session; others fail with the reason,
since running them twice could repeat a side effect. Leaving the toolset shuts the server down.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import anyio
import mcp_types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from agentdag.errors import AgentdagError, ToolError
from agentdag.toolsets.base import JsonValue, Tool, ToolPolicy
from agentdag.toolsets.mcp_config import McpServerConfig

__all__ = ["McpServerConfig", "McpSpec", "McpTool", "McpToolset", "open_mcp_toolsets"]

_CONNECTION_CLOSED = mcp_types.CONNECTION_CLOSED
_REQUEST_TIMEOUT = mcp_types.REQUEST_TIMEOUT
_STDERR_TAIL = 2_000


@dataclass(slots=True, eq=False)
class _Session:
    """One connection to the server.

    `ready` is set once it is up (or failed), `dead` when a call saw it die, and `replaced` once the
    supervisor has published the next session (or given up).
    """

    client: Client | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    dead: anyio.Event = field(default_factory=anyio.Event)
    replaced: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True, slots=True, kw_only=True)
class McpSpec:
    """An MCP tool as it travels to another process: that process holds its own session to the server.

    Attributes:
        name: the tool's name here.
        server: the server's settings; the other process starts or connects to the server itself.
        remote_name: the tool's name on the server.
    """

    name: str
    server: McpServerConfig
    remote_name: str
    blocking: bool = False

    @property
    def session(self) -> tuple[str, McpServerConfig]:
        """The server, and a key naming it among the sessions a host holds."""
        return hashlib.sha256(self.server.model_dump_json().encode()).hexdigest()[:16], self.server

    def build(self, toolset: McpToolset | None) -> McpTool:
        """The tool among the tools of the host's session to the server.

        Raises:
            ToolError: the session is not open, or the server has no such tool.
        """
        if toolset is None:
            raise ToolError(f"MCP server {self.server.name!r} is not available here")
        for item in toolset.tools:
            if item.remote_name == self.remote_name:
                return item
        raise ToolError(f"MCP server {self.server.name!r} here has no tool {self.remote_name!r}")


class McpTool(Tool):
    """One tool of an MCP server; calls go through its toolset's shared session."""

    def __init__(self, toolset: McpToolset, listed: mcp_types.Tool, name: str) -> None:
        self.toolset = toolset
        self.remote_name = listed.name
        self.name = name
        self.description = listed.description or ""
        self.input_schema = dict(listed.input_schema)
        annotations = listed.annotations
        self.policy = ToolPolicy(
            timeout_s=toolset.config.timeout_s,
            read_only=bool(annotations and annotations.read_only_hint),
            idempotent=bool(annotations and annotations.idempotent_hint),
        )

    async def call(self, arguments: dict[str, JsonValue]) -> JsonValue:
        """Call the tool on the server; a server-side error becomes a `ToolError` with its message."""
        return await self.toolset.call(self, arguments)

    def remote(self) -> McpSpec:
        """Another process calls the tool over a session of its own to the same server."""
        return McpSpec(name=self.name, server=self.toolset.config, remote_name=self.remote_name)

    def __repr__(self) -> str:
        return f"McpTool({self.name!r} on {self.toolset.config.name!r})"


class McpToolset:
    """A connection to one MCP server, kept alive by a supervisor; use as an async context manager.

    `server` may also be an in-process `MCPServer` (for tests and embedding); it then needs no process.
    """

    def __init__(self, config: McpServerConfig, *, server: MCPServer | None = None) -> None:
        self.config = config
        self.tools: list[McpTool] = []
        self.restarts = 0
        self._server = server
        self._limit = anyio.CapacityLimiter(config.max_concurrency)
        self._session = _Session()
        self._gave_up = False
        self._failure: BaseException | None = None
        self._stack: AsyncExitStack | None = None
        self._stderr: TextIO | None = None

    async def __aenter__(self) -> McpToolset:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            problem = await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        if problem is not None:
            await stack.aclose()  # leave the task group first, so the error is not wrapped in a group
            raise AgentdagError(problem)
        self._stack = stack
        return self

    async def _start(self, stack: AsyncExitStack) -> str | None:
        """Start the supervisor and list the tools; return what went wrong, if anything."""
        if self.config.command is not None:
            log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
            self._stderr = stack.enter_context(cast(TextIO, log))
        task_group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(task_group.cancel_scope.cancel)
        task_group.start_soon(self._supervise)
        with anyio.move_on_after(self.config.startup_timeout_s) as startup:
            await self._session.ready.wait()
        name = self.config.name
        if startup.cancelled_caught:
            return f"MCP server {name!r} did not start within {self.config.startup_timeout_s:g} s{self._stderr_tail()}"
        client = self._session.client
        if client is None:
            return f"MCP server {name!r} failed to start: {_describe(self._failure)}{self._stderr_tail()}"
        try:
            await self._list_tools(client)
        except AgentdagError as error:
            return str(error)
        except (MCPError, TimeoutError) as error:
            return f"MCP server {name!r} did not list its tools: {_describe(error)}{self._stderr_tail()}"
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def call(self, tool: McpTool, arguments: dict[str, JsonValue]) -> JsonValue:
        """Call `tool` with `arguments`, restarting a dead server and retrying read-only tools once."""
        async with self._limit:
            died: Exception
            for attempt in (1, 2):
                session = await self._current()
                assert session.client is not None
                try:
                    result = await session.client.call_tool(
                        tool.remote_name, arguments, read_timeout_seconds=self.config.timeout_s
                    )
                except MCPError as error:
                    if error.code == _REQUEST_TIMEOUT:
                        raise ToolError(f"{tool.name}: no reply within {self.config.timeout_s:g} s") from None
                    if error.code != _CONNECTION_CLOSED:
                        raise ToolError(f"{tool.name}: the server refused the call: {error}") from None
                    died = error
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as error:
                    died = error
                else:
                    return _to_output(tool.name, result)
                session.dead.set()  # the supervisor starts the server again
                if attempt == 2 or not tool.policy.idempotent:
                    why = "it was retried once" if attempt == 2 else "it may have side effects, so it is not retried"
                    raise ToolError(
                        f"{tool.name}: MCP server {self.config.name!r} died during the call ({died}); {why}"
                        f"{self._stderr_tail()}"
                    ) from None
        raise AssertionError("unreachable")

    # -- the supervisor ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Own the session: open it, publish it, and open it again whenever it dies."""
        while True:
            session = self._session
            try:
                async with self._connect() as client:
                    session.client = client
                    session.ready.set()
                    await session.dead.wait()
            except Exception as error:  # the server could not start, or its connection broke
                self._failure = error
            session.client = None
            session.ready.set()
            if self.restarts >= self.config.max_restarts:
                self._gave_up = True
                session.replaced.set()
                return
            self.restarts += 1
            self._session = _Session()
            session.replaced.set()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Client]:
        target: Any
        if self._server is not None:
            target = self._server
        elif self.config.url is not None:
            target = self.config.url
        else:
            argv = self.config.argv()
            parameters = StdioServerParameters(
                command=argv[0], args=argv[1:], env=self.config.env or None, cwd=self.config.cwd
            )
            target = stdio_client(parameters, errlog=self._stderr or sys.stderr)
        async with Client(target, read_timeout_seconds=self.config.timeout_s) as client:
            yield client

    async def _current(self) -> _Session:
        """The live session, waiting through a restart; raises once the supervisor has given up."""
        while True:
            session = self._session
            await session.ready.wait()
            if session.client is not None and not session.dead.is_set():
                return session
            await session.replaced.wait()
            if self._gave_up:
                raise ToolError(
                    f"MCP server {self.config.name!r} is down after {self.restarts} restart(s): "
                    f"{_describe(self._failure)}{self._stderr_tail()}"
                )

    async def _list_tools(self, client: Client) -> None:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        with anyio.fail_after(self.config.startup_timeout_s):
            while True:
                page = await client.list_tools(cursor=cursor)
                listed.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
        wanted = self.config.tools
        if wanted is not None:
            missing = sorted(set(wanted) - {item.name for item in listed})
            if missing:
                offered = ", ".join(sorted(item.name for item in listed))
                raise AgentdagError(
                    f"MCP server {self.config.name!r} has no tool(s) {', '.join(missing)} (it offers: {offered})"
                )
            listed = [item for item in listed if item.name in wanted]
        self.tools = [
            McpTool(self, item, f"{self.config.name}.{item.name}" if self.config.prefix else item.name)
            for item in listed
        ]

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().strip()
        return f" (server stderr: …{text[-_STDERR_TAIL:]})" if text else ""


def _describe(error: BaseException | None) -> str:
    """The messages of an error, looking inside exception groups (which say nothing themselves)."""
    if error is None:
        return "unknown error"
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _to_output(name: str, result: mcp_types.CallToolResult) -> JsonValue:
    texts = [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]
    if result.is_error:
        raise ToolError(f"{name}: {' '.join(texts) or 'the server reported an error'}")
    if result.structured_content is not None:
        structured: JsonValue = result.structured_content
        # Servers that return a bare value wrap it as {"result": value}; unwrap it.
        if isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    others = [{"type": block.type} for block in result.content if not isinstance(block, mcp_types.TextContent)]
    if not others:
        return texts[0] if len(texts) == 1 else texts
    return [*texts, *others]


@asynccontextmanager
async def open_mcp_toolsets(configs: Sequence[McpServerConfig]) -> AsyncIterator[list[McpToolset]]:
    """Start every configured server, one after another, and close them all on exit."""
    async with AsyncExitStack() as stack:
        toolsets = [McpToolset(config) for config in configs]
        # Entered one after another: each toolset's task group must be left in this same task.
        for toolset in toolsets:
            await stack.enter_async_context(toolset)
        yield toolsets
