"""How the shipped MCP servers are served: stdio by default, streamable HTTP on loopback with `--http PORT`."""

from __future__ import annotations

import argparse
from typing import Any

from mcp.server.mcpserver import MCPServer

__all__ = ["add_transport_arguments", "serve"]


def add_transport_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--http PORT` to a server's command line."""
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio"
    )


def serve(server: MCPServer[Any], arguments: argparse.Namespace) -> None:
    """Run the server until its client disconnects (stdio) or it is stopped (HTTP, loopback only)."""
    if arguments.http is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=arguments.http)
