"""A small MCP server for the supervisor tests: it can crash, hang, fail, and report its pid.

`crash_once_*` exit the process the first time they are called (a marker file in $FLAKY_STATE remembers
it), so the supervisor's restart and retry can be observed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True)
SIDE_EFFECT = ToolAnnotations(read_only_hint=False, idempotent_hint=False, destructive_hint=True)

server: MCPServer[Any] = MCPServer(name="flaky")
state = Path(os.environ.get("FLAKY_STATE", "."))


def crash_first_time(name: str) -> None:
    marker = state / name
    if not marker.exists():
        marker.write_text("crashed")
        os._exit(3)


@server.tool(annotations=READ_ONLY, structured_output=True)
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool(annotations=READ_ONLY, structured_output=True)
def crash_once_read(key: str) -> str:
    """Crash the first time; answer afterwards."""
    crash_first_time(f"read-{key}")
    return f"read {key}"


@server.tool(annotations=SIDE_EFFECT, structured_output=True)
def crash_once_write(key: str) -> str:
    """Crash the first time; answer afterwards (but it has side effects, so it is never retried)."""
    crash_first_time(f"write-{key}")
    return f"wrote {key}"


@server.tool(annotations=READ_ONLY)
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "slept"


@server.tool()
def fail(message: str) -> str:
    """Always fail with `message`."""
    raise ToolError(message)


@server.tool(annotations=READ_ONLY, structured_output=True)
def record(title: str, year: int) -> dict[str, Any]:
    """Return a structured record."""
    return {"title": title, "year": year, "tags": ["a", "b"]}


if __name__ == "__main__":
    server.run("stdio")
