"""A tool result cache: opt-in per tool, only for read-only tools, each entry with a time to live.

Entries live in SQLite, keyed by the tool's name, a hash of what the tool is (its function, or its MCP
server's settings, so two search servers over different corpora never share entries) with its argument
schema, and a hash of the canonical JSON of the arguments (keys sorted): two calls that differ only in
key order share an entry, and a tool whose schema changed starts afresh. Failures are never cached; outputs that are not
JSON are not cached either. Expired entries are dropped when they are read and when the cache opens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from agentdag.errors import AgentdagError
from agentdag.hashing import canonical_hash
from agentdag.toolsets.base import JsonValue, Tool

__all__ = ["CachedTool", "ToolCache", "ToolCacheError", "cache_tools", "default_cache_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, tool TEXT NOT NULL, output TEXT NOT NULL, saved_at REAL NOT NULL, expires_at REAL NOT NULL
);
"""


class ToolCacheError(AgentdagError):
    """The cache cannot be opened, or a tool that may have side effects was asked to be cached."""


class ToolCache:
    """Tool outputs in one SQLite file, shared by runs and processes. Use it from one event loop.

    Attributes:
        hits, misses: lookups so far that found a live entry, or did not.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self.hits = 0
        self.misses = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=5.0)
        except (OSError, sqlite3.Error) as error:
            raise ToolCacheError(f"{self.path}: cannot open the tool cache: {error}") from None
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.executescript(_SCHEMA)
            with self._connection:
                self._connection.execute("DELETE FROM entries WHERE expires_at <= ?", (clock(),))
        except sqlite3.Error as error:
            self._connection.close()
            raise ToolCacheError(f"{self.path}: cannot open the tool cache: {error}") from None

    def get(self, key: str) -> tuple[bool, JsonValue]:
        """`(True, output)` for a live entry, else `(False, None)`."""
        try:
            row = self._connection.execute("SELECT output, expires_at FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            row = None  # a cache that cannot be read is a miss, never a failed node
        if row is None or row[1] <= self._clock():
            self.misses += 1
            return False, None
        self.hits += 1
        return True, json.loads(row[0])

    def put(self, key: str, tool: str, output: JsonValue, ttl_s: float) -> None:
        """Keep `output` under `key` for `ttl_s` seconds (skipped when it is not JSON)."""
        try:
            text = json.dumps(output, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            return
        now = self._clock()
        try:
            with self._connection:
                self._connection.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", (key, tool, text, now, now + ttl_s)
                )
        except sqlite3.Error:
            return  # the output still goes to the node; only the cache misses out

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._connection.close()

    def __enter__(self) -> ToolCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CachedTool(Tool):
    """A read-only tool whose outputs are served from a `ToolCache` while they are younger than `ttl_s`.

    Raises:
        ToolCacheError: the tool is not marked read-only (`policy.read_only`), so caching it could skip a
            side effect.
    """

    def __init__(self, tool: Tool, cache: ToolCache, *, ttl_s: float) -> None:
        if not tool.policy.read_only:
            raise ToolCacheError(
                f"tool {tool.name!r} is not marked read-only, so caching it could skip a side effect "
                "(mark it with @tool(read_only=True), or readOnlyHint on an MCP server)"
            )
        if ttl_s <= 0:
            raise ToolCacheError(f"tool {tool.name!r}: the cache's time to live must be positive, got {ttl_s}")
        self.wrapped = tool
        self.cache = cache
        self.ttl_s = ttl_s
        self.name = tool.name
        self.description = tool.description
        self.input_schema = tool.input_schema
        self.policy = tool.policy
        self._identity = canonical_hash([_identity(tool), tool.input_schema])

    def key(self, arguments: Mapping[str, JsonValue]) -> str:
        """The cache key of a call with `arguments`."""
        return f"{self.name}:{self._identity[:16]}:{canonical_hash(arguments)}"

    async def call(self, arguments: dict[str, JsonValue]) -> JsonValue:
        """The cached output for these arguments, or the tool's output (then cached)."""
        key = self.key(arguments)
        found, output = self.cache.get(key)
        if found:
            return output
        output = await self.wrapped.call(arguments)
        self.cache.put(key, self.name, output, self.ttl_s)
        return output

    def __repr__(self) -> str:
        return f"CachedTool({self.wrapped!r}, ttl_s={self.ttl_s:g})"


def cache_tools(tools: list[Tool], cache: ToolCache, ttl_s: Mapping[str, float]) -> list[Tool]:
    """`tools` with those named in `ttl_s` wrapped in `CachedTool`.

    Raises:
        ToolCacheError: a name in `ttl_s` is not among the tools, or names a tool that is not read-only.
    """
    names = {tool.name for tool in tools}
    unknown = sorted(set(ttl_s) - names)
    if unknown:
        offered = ", ".join(sorted(names)) or "none"
        raise ToolCacheError(f"cache: no tool named {', '.join(map(repr, unknown))} (tools: {offered})")
    return [CachedTool(tool, cache, ttl_s=ttl_s[tool.name]) if tool.name in ttl_s else tool for tool in tools]


def _identity(tool: Tool) -> object:
    """What tells this tool from another of the same name: its function, or its MCP server's settings.

    Two search servers over different corpora are two tools; so are two functions of one name.
    """
    function = getattr(tool, "function", None)
    if function is not None:
        return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"
    config = getattr(getattr(tool, "toolset", None), "config", None)
    if config is not None and hasattr(config, "model_dump"):
        return [config.model_dump(mode="json"), getattr(tool, "remote_name", tool.name)]
    return type(tool).__qualname__


def default_cache_path() -> Path:
    """`$XDG_CACHE_HOME/agentdag/tools.sqlite`, or `~/.cache/agentdag/tools.sqlite`."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "agentdag" / "tools.sqlite"
