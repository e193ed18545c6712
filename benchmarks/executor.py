"""Executor benchmark: wall time against the critical path on a random layered DAG, and per-node overhead.

Run it with `agentdag bench executor --json`. The figures are ratios and per-node costs measured in one
run, so they compare across machines better than absolute times.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

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


async def _run(nodes: Sequence[Node]) -> _Timing:
    """Validate the plan, then execute it; each phase timed on its own."""
    tools = ToolRegistry([sleep_ms, noop])
    started = time.perf_counter()
    problems = validate_plan(nodes, tools)
    validated = time.perf_counter()
    if problems:
        raise RuntimeError(f"benchmark DAG is invalid: {problems[0]}")
    async with Executor(tools).open() as execution:
        for node in nodes:
            execution.add(node, check=False)
    finished = time.perf_counter()
    if not execution.result().succeeded:
        raise RuntimeError("benchmark DAG did not finish cleanly")
    return _Timing(validate_s=validated - started, execute_s=finished - validated)


async def run_executor_bench(
    *, nodes: int = 1000, levels: int = 20, noop_nodes: int = 10_000, seed: int = 0, runs: int = 3
) -> dict[str, Any]:
    """Measure both workloads `runs` times (seeds `seed`, `seed + 1`, ...) and report medians.

    The methodology of the executor table in REFERENCES.md: the median of three seeded runs.
    """
    ratios: list[float] = []
    walls: list[float] = []
    critical_paths: list[float] = []
    overheads: list[float] = []
    validations: list[float] = []
    for run in range(runs):
        dag = create_layered_dag(size=nodes, levels=levels, seed=seed + run)
        timing = await _run(dag.nodes)
        ratios.append(timing.execute_s / dag.critical_path_s)
        walls.append(timing.execute_s)
        critical_paths.append(dag.critical_path_s)
        noop_dag = create_layered_dag(size=noop_nodes, levels=levels, seed=seed + run, tool_name="noop")
        noop_timing = await _run(noop_dag.nodes)
        overheads.append(noop_timing.execute_s / noop_nodes * 1e6)
        validations.append(noop_timing.validate_s / noop_nodes * 1e6)
    middle = sorted(range(runs), key=lambda index: ratios[index])[runs // 2]
    ratio = ratios[middle]
    overhead = statistics.median(overheads)
    return {
        "backend": "local",
        "seeds": list(range(seed, seed + runs)),
        "nodes": nodes,
        "levels": levels,
        "critical_path_s": round(critical_paths[middle], 4),
        "wall_s": round(walls[middle], 4),
        "ratio": round(ratio, 4),
        "ratios": [round(item, 4) for item in ratios],
        "noop_nodes": noop_nodes,
        "overhead_us_per_task": round(overhead, 2),
        "overheads_us_per_task": [round(item, 2) for item in overheads],
        "validation_us_per_node": round(statistics.median(validations), 2),
        "target_ratio": TARGET_RATIO,
        "target_overhead_us_per_task": TARGET_OVERHEAD_US,
        "meets_targets": ratio <= TARGET_RATIO and overhead <= TARGET_OVERHEAD_US,
        "note": "medians over the seeds; wall_s and overhead time execution only, "
        "plan validation is timed apart (validation_us_per_node)",
    }
