"""Durability benchmark: what saving run state costs per node, what resuming saves, what caching saves.

Run it with `agentdag bench durability --json`. Three measurements, each in one process so the ratios
compare across machines:

* **state**: a fixed plan of `nodes` no-op nodes in a layered DAG, run with and without a `RunStore`;
  the difference per node is the cost of saving state (three small SQLite transactions per node).
* **resume**: the same plan with `sleep_ms` nodes, interrupted once half of its nodes finished, then
  resumed; the resumed run's wall time against a full run's, and the number of tool calls repeated.
* **cache**: the plan's sleeping nodes marked read-only and cached; a second run against the first.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from agentdag.agent import Agent
from agentdag.events import Event, NodeEvent
from agentdag.plan import Node
from agentdag.store import RunStore
from agentdag.toolsets import Tool, tool
from agentdag.toolsets.cache import ToolCache, cache_tools

__all__ = ["run_durability_bench"]


def _layered(size: int, width: int, tool_name: str, arguments: dict[str, Any]) -> list[Node]:
    """`size` nodes in levels of `width`; each node depends on the node above it and its neighbour."""
    nodes: list[Node] = []
    for index in range(size):
        above = index - width
        depends = (above, above + 1) if above >= 0 and (above + 1) % width else (above,) if above >= 0 else ()
        nodes.append(
            Node(
                id=index + 1,
                tool=tool_name,
                arguments={**arguments, "n": index},
                depends_on=tuple(d + 1 for d in depends),
            )
        )
    return nodes


def _tools(calls: list[int]) -> list[Tool]:
    @tool(read_only=True)
    async def noop(n: int) -> int:
        """Do nothing."""
        return n

    @tool(read_only=True)
    async def sleep_ms(n: int, ms: float) -> int:
        """Sleep, standing in for an I/O-bound call."""
        calls.append(n)
        await anyio.sleep(ms / 1000)
        return n

    return [noop, sleep_ms]


async def _time_state(nodes: int, folder: Path, runs: int) -> dict[str, float]:
    plan = _layered(nodes, 50, "noop", {})
    agent = Agent(tools=_tools([]))
    plain: list[float] = []
    saved: list[float] = []
    for run in range(runs):
        started = time.perf_counter()
        result = await agent.run_plan(plan)
        plain.append(time.perf_counter() - started)
        assert result.status == "done"
        with RunStore.create(folder / f"state-{run}", task="bench") as store:
            started = time.perf_counter()
            result = await agent.run_plan(plan, store=store)
            saved.append(time.perf_counter() - started)
        assert result.status == "done"
    plain_s, saved_s = statistics.median(plain), statistics.median(saved)
    return {
        "state_nodes": nodes,
        "state_plain_s": round(plain_s, 4),
        "state_saved_s": round(saved_s, 4),
        "state_us_per_node": round((saved_s - plain_s) / nodes * 1e6, 2),
    }


async def _time_resume(nodes: int, sleep_ms: float, folder: Path) -> dict[str, float]:
    plan = _layered(nodes, 10, "sleep_ms", {"ms": sleep_ms})
    calls: list[int] = []
    started = time.perf_counter()
    assert (await Agent(tools=_tools(calls)).run_plan(plan)).status == "done"
    full_s = time.perf_counter() - started

    calls.clear()
    finished: list[int] = []
    half = anyio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, NodeEvent) and event.kind == "done":
            finished.append(event.node_id)
            if len(finished) >= nodes // 2:
                half.set()

    with RunStore.create(folder / "resume", task="bench") as store:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: Agent(tools=_tools(calls), on_event=[watch]).run_plan(plan, store=store))
                await half.wait()
                scope.cancel()
    first_calls = len(calls)
    with RunStore.open(folder / "resume") as store:
        started = time.perf_counter()
        result = await Agent(tools=_tools(calls)).run_plan(plan, store=store)
        resumed_s = time.perf_counter() - started
    assert result.status == "done"
    return {
        "resume_nodes": nodes,
        "resume_full_run_s": round(full_s, 3),
        "resume_finished_before_interrupt": len(finished),
        "resume_resumed_run_s": round(resumed_s, 3),
        "resume_ratio": round(resumed_s / full_s, 3),
        "resume_calls_before": first_calls,
        "resume_calls_after": len(calls) - first_calls,
        "resume_calls_repeated": len(calls) - nodes,
    }


async def _time_cache(nodes: int, sleep_ms: float, folder: Path) -> dict[str, float]:
    plan = _layered(nodes, 10, "sleep_ms", {"ms": sleep_ms})
    calls: list[int] = []
    with ToolCache(folder / "cache.sqlite") as cache:
        agent = Agent(tools=cache_tools(_tools(calls), cache, {"sleep_ms": 3600}))
        started = time.perf_counter()
        assert (await agent.run_plan(plan)).status == "done"
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        assert (await agent.run_plan(plan)).status == "done"
        warm_s = time.perf_counter() - started
        hits = cache.hits
    return {
        "cache_nodes": nodes,
        "cache_cold_s": round(cold_s, 3),
        "cache_warm_s": round(warm_s, 3),
        "cache_speedup": round(cold_s / warm_s, 1),
        "cache_hits": hits,
        "cache_tool_calls": len(calls),
    }


async def run_durability_bench(*, nodes: int = 2000, sleep_ms: float = 20.0, runs: int = 3) -> dict[str, Any]:
    """Measure the cost of saved state, the saving of a resume and of the tool cache; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="agentdag-durability-") as name:
        folder = Path(name)
        figures: dict[str, Any] = {}
        figures.update(await _time_state(nodes, folder, runs))
        figures.update(await _time_resume(max(20, nodes // 20), sleep_ms, folder))
        figures.update(await _time_cache(max(20, nodes // 20), sleep_ms, folder))
    return figures
