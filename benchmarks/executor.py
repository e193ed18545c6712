"""Executor benchmark: wall time against the critical path on a random layered DAG, and per-node overhead.

Run it with `agentdag bench executor --json`, or `--backend ray` to run the same DAGs on a Ray cluster (a
local one unless `--address` names a running one). The figures are ratios and per-node costs measured
in one run, so they compare across machines better than absolute times.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from agentdag.backends import Backend, LocalBackend
from agentdag.executor import Executor
from agentdag.plan import Node, validate_plan
from agentdag.toolsets import ToolRegistry, tool

TARGET_RATIO = 1.05
TARGET_OVERHEAD_US = 100.0


@tool
async def sleep_ms(ms: float) -> float:
    """Sleep for `ms` milliseconds, standing in for an I/O-bound tool call."""
    await anyio.sleep(ms / 1000)
    return ms


@tool
async def noop() -> None:
    """Do nothing, to measure the executor's own cost per node."""


@tool
def noop_sync() -> None:
    """Do nothing in a sync tool (a worker thread locally, a Ray remote function on Ray)."""


CHAIN_NODES = 200
"""Nodes of the chain (each depends on the one before) that measures one node's latency."""


@dataclass(frozen=True, slots=True)
class LayeredDag:
    """A seeded random DAG in levels; each node depends on 1-3 nodes of the level above."""

    nodes: tuple[Node, ...]
    levels: int
    critical_path_s: float


def create_layered_dag(
    *, size: int, levels: int, seed: int, tool_name: str = "sleep_ms", sleep_ms_range: tuple[float, float] = (20, 50)
) -> LayeredDag:
    """Build a layered DAG of `size` nodes and compute its critical path (sum of sleeps on the longest path)."""
    rng = random.Random(seed)
    width = max(1, size // levels)
    nodes: list[Node] = []
    finish: dict[int, float] = {}
    previous: list[int] = []
    for level in range(levels):
        count = width if level < levels - 1 else size - width * (levels - 1)
        current: list[int] = []
        for _ in range(count):
            node_id = len(nodes) + 1
            parents = sorted(rng.sample(previous, k=min(len(previous), rng.randint(1, 3)))) if previous else []
            ms = round(rng.uniform(*sleep_ms_range), 3)
            arguments: dict[str, Any] = {"ms": ms} if tool_name == "sleep_ms" else {}
            nodes.append(Node(id=node_id, tool=tool_name, arguments=arguments, depends_on=tuple(parents)))
            finish[node_id] = max((finish[parent] for parent in parents), default=0.0) + ms / 1000
            current.append(node_id)
        previous = current
    return LayeredDag(tuple(nodes), levels, max(finish.values()))


@dataclass(frozen=True, slots=True)
class _Timing:
    validate_s: float
    execute_s: float


async def _run(nodes: Sequence[Node], backend: Backend) -> _Timing:
    """Validate the plan, then execute it; each phase timed on its own."""
    tools = ToolRegistry([sleep_ms, noop, noop_sync])
    started = time.perf_counter()
    problems = validate_plan(nodes, tools)
    validated = time.perf_counter()
    if problems:
        raise RuntimeError(f"benchmark DAG is invalid: {problems[0]}")
    async with Executor(tools, backend=backend).open() as execution:
        for node in nodes:
            execution.submit(node, check=False)
    finished = time.perf_counter()
    if not execution.result().succeeded:
        failed = execution.result().with_status("failed")
        raise RuntimeError(f"benchmark DAG did not finish cleanly: {failed[0].error if failed else 'cancelled'}")
    return _Timing(validate_s=validated - started, execute_s=finished - validated)


def _open_backend(backend: Literal["local", "ray"], address: str | None) -> Backend:
    if backend == "local":
        if address is not None:
            raise ValueError("--address names a Ray cluster; use it with --backend ray")
        return LocalBackend()
    from agentdag.backends.ray import RayBackend, RayConfig

    return RayBackend(RayConfig(address=address))


async def run_executor_bench(
    *,
    nodes: int = 1000,
    levels: int = 20,
    noop_nodes: int = 10_000,
    seed: int = 0,
    runs: int = 3,
    backend: Literal["local", "ray"] = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Measure both workloads `runs` times (seeds `seed`, `seed + 1`, ...) and report medians.

    The methodology of the executor table in REFERENCES.md: the median of three seeded runs. On Ray,
    a warm-up DAG first starts the workers and actors; its time is reported apart (`startup_s`).

    Figures besides the ratio: `overhead_us_per_task` (wall time per node of the no-op DAG, whose levels
    run at once: the inverse of throughput), `sync_overhead_us_per_task` (the same with a sync no-op
    tool, on a tenth as many nodes), and `latency_us_per_node` (wall time per node of a chain of
    no-op nodes, each waiting for the one before: one node's round trip).
    """
    started = time.perf_counter()
    async with _open_backend(backend, address) as opened:
        opened_s = time.perf_counter() - started
        warm = create_layered_dag(size=min(noop_nodes, 200), levels=2, seed=seed, tool_name="noop")
        warm_sync = create_layered_dag(size=20, levels=2, seed=seed, tool_name="noop_sync")
        await _run(warm.nodes, opened)
        await _run(warm_sync.nodes, opened)
        startup_s = time.perf_counter() - started
        figures = await _measure(opened, nodes=nodes, levels=levels, noop_nodes=noop_nodes, seed=seed, runs=runs)
    local = backend == "local"
    ratio, overhead = figures["ratio"], figures["overhead_us_per_task"]
    return {
        "backend": backend,
        **({} if local else {"address": address, "open_s": round(opened_s, 2), "startup_s": round(startup_s, 2)}),
        **figures,
        "target_ratio": TARGET_RATIO if local else None,
        "target_overhead_us_per_task": TARGET_OVERHEAD_US if local else None,
        "meets_targets": (ratio <= TARGET_RATIO and overhead <= TARGET_OVERHEAD_US) if local else None,
        "note": "medians over the seeds; wall_s and overhead time execution only, "
        "plan validation is timed apart (validation_us_per_node)"
        + ("" if local else "; the targets are the local backend's, so none are set for Ray"),
    }


async def _measure(
    backend: Backend, *, nodes: int, levels: int, noop_nodes: int, seed: int, runs: int
) -> dict[str, Any]:
    ratios: list[float] = []
    walls: list[float] = []
    critical_paths: list[float] = []
    overheads: list[float] = []
    sync_overheads: list[float] = []
    latencies: list[float] = []
    validations: list[float] = []
    sync_nodes = max(1, noop_nodes // 10)
    chain_nodes = min(CHAIN_NODES, noop_nodes)
    for run in range(runs):
        dag = create_layered_dag(size=nodes, levels=levels, seed=seed + run)
        timing = await _run(dag.nodes, backend)
        ratios.append(timing.execute_s / dag.critical_path_s)
        walls.append(timing.execute_s)
        critical_paths.append(dag.critical_path_s)
        noop_dag = create_layered_dag(size=noop_nodes, levels=levels, seed=seed + run, tool_name="noop")
        noop_timing = await _run(noop_dag.nodes, backend)
        overheads.append(noop_timing.execute_s / noop_nodes * 1e6)
        validations.append(noop_timing.validate_s / noop_nodes * 1e6)
        sync_dag = create_layered_dag(size=sync_nodes, levels=levels, seed=seed + run, tool_name="noop_sync")
        sync_overheads.append((await _run(sync_dag.nodes, backend)).execute_s / sync_nodes * 1e6)
        chain = create_layered_dag(size=chain_nodes, levels=chain_nodes, seed=seed + run, tool_name="noop")
        latencies.append((await _run(chain.nodes, backend)).execute_s / chain_nodes * 1e6)
    middle = sorted(range(runs), key=lambda index: ratios[index])[runs // 2]
    return {
        "seeds": list(range(seed, seed + runs)),
        "nodes": nodes,
        "levels": levels,
        "critical_path_s": round(critical_paths[middle], 4),
        "wall_s": round(walls[middle], 4),
        "ratio": round(ratios[middle], 4),
        "ratios": [round(item, 4) for item in ratios],
        "noop_nodes": noop_nodes,
        "overhead_us_per_task": round(statistics.median(overheads), 2),
        "overheads_us_per_task": [round(item, 2) for item in overheads],
        "sync_noop_nodes": sync_nodes,
        "sync_overhead_us_per_task": round(statistics.median(sync_overheads), 2),
        "chain_nodes": chain_nodes,
        "latency_us_per_node": round(statistics.median(latencies), 2),
        "validation_us_per_node": round(statistics.median(validations), 2),
    }
