"""The tool result cache: read-only tools only, canonical keys, a time to live, failures never cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentdag import Executor, Node, tool
from agentdag.toolsets import Tool, ToolRegistry
from agentdag.toolsets.cache import CachedTool, ToolCache, ToolCacheError, cache_tools


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def counted_tools() -> tuple[list[str], list[Tool]]:
    calls: list[str] = []

    @tool(read_only=True)
    async def lookup(query: str, limit: int = 3) -> dict[str, object]:
        """Look a query up."""
        calls.append(query)
        if query == "broken":
            raise RuntimeError("index offline")
        return {"query": query, "limit": limit}

    @tool
    async def write(path: str) -> str:
        """Write a file (a side effect)."""
        return path

    return calls, [lookup, write]


@pytest.mark.asyncio
async def test_a_fresh_entry_is_served_and_an_expired_one_is_not(tmp_path: Path) -> None:
    calls, (lookup, _) = counted_tools()
    clock = Clock()
    with ToolCache(tmp_path / "cache.sqlite", clock=clock) as cache:
        cached = CachedTool(lookup, cache, ttl_s=60)
        assert await cached.call({"query": "x", "limit": 2}) == {"query": "x", "limit": 2}
        assert await cached.call({"limit": 2, "query": "x"}) == {"query": "x", "limit": 2}, "key order is canonical"
        assert calls == ["x"]
        assert await cached.call({"query": "x", "limit": 5}) == {"query": "x", "limit": 5}
        assert calls == ["x", "x"]
        clock.now += 61
        await cached.call({"query": "x", "limit": 2})
        assert calls == ["x", "x", "x"]
        assert (cache.hits, cache.misses) == (1, 3)


@pytest.mark.asyncio
async def test_entries_outlive_the_process_that_wrote_them(tmp_path: Path) -> None:
    calls, (lookup, _) = counted_tools()
    with ToolCache(tmp_path / "cache.sqlite") as cache:
        await CachedTool(lookup, cache, ttl_s=60).call({"query": "x"})
    with ToolCache(tmp_path / "cache.sqlite") as cache:
        assert await CachedTool(lookup, cache, ttl_s=60).call({"query": "x"}) == {"query": "x", "limit": 3}
    assert calls == ["x"]


@pytest.mark.asyncio
async def test_failures_are_not_cached(tmp_path: Path) -> None:
    calls, (lookup, _) = counted_tools()
    with ToolCache(tmp_path / "cache.sqlite") as cache:
        cached = CachedTool(lookup, cache, ttl_s=60)
        for _ in range(2):
            with pytest.raises(RuntimeError, match="index offline"):
                await cached.call({"query": "broken"})
    assert calls == ["broken", "broken"]


def test_tools_with_side_effects_cannot_be_cached(tmp_path: Path) -> None:
    _, tools = counted_tools()
    with ToolCache(tmp_path / "cache.sqlite") as cache:
        with pytest.raises(ToolCacheError, match="'write' is not marked read-only"):
            cache_tools(tools, cache, {"write": 60})
        with pytest.raises(ToolCacheError, match="no tool named 'nope'"):
            cache_tools(tools, cache, {"nope": 60})
        wrapped = cache_tools(tools, cache, {"lookup": 60})
        assert [type(item).__name__ for item in wrapped] == ["CachedTool", "FunctionTool"]


@pytest.mark.asyncio
async def test_a_cached_tool_runs_in_plans_like_the_tool(tmp_path: Path) -> None:
    calls, tools = counted_tools()
    with ToolCache(tmp_path / "cache.sqlite") as cache:
        registry = ToolRegistry(cache_tools(tools, cache, {"lookup": 60}))
        nodes = [Node(id=node_id, tool="lookup", arguments={"query": "q"}) for node_id in (1, 2)]
        result = await Executor(registry).run(nodes)
        again = await Executor(registry).run(nodes[:1])
    assert result.succeeded and again.succeeded
    assert again.outputs[1] == {"query": "q", "limit": 3}
    assert len(calls) <= 2 and calls.count("q") == len(calls), "the second execution was served from the cache"
    assert cache.hits >= 1


def test_a_cache_file_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ToolCacheError, match="cannot open the tool cache"):
        ToolCache(tmp_path / "file" / "cache.sqlite")


def test_two_tools_of_one_name_do_not_share_entries(tmp_path: Path) -> None:
    @tool(name="search", read_only=True)
    async def over_papers(query: str) -> str:
        """Search papers."""
        return f"paper about {query}"

    @tool(name="search", read_only=True)
    async def over_landmarks(query: str) -> str:
        """Search landmarks."""
        return f"landmark named {query}"

    with ToolCache(tmp_path / "cache.sqlite") as cache:
        papers, landmarks = CachedTool(over_papers, cache, ttl_s=60), CachedTool(over_landmarks, cache, ttl_s=60)
        assert papers.key({"query": "x"}) != landmarks.key({"query": "x"})
        assert CachedTool(over_papers, cache, ttl_s=5).key({"query": "x"}) == papers.key({"query": "x"})
