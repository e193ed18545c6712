"""Load benchmark: many concurrent `Agent.run` calls through the SDK, and what they leave behind.

Run it with `agentdag bench load --model scripted` (or `--model local`, or a server URL) and `--json`.

* `scripted`: every run plans four nodes over two tools, one async and one sync (the sync one runs in a
  worker thread), against a `FunctionModel`; the joiner answers from the run's own observations, and every
  output and answer is checked, so cross-talk between concurrent runs would show as a wrong output.
* `local`: the same number of runs share ONE embedded llama.cpp server (SmolLM2-135M) over the calculator
  tool, every reply capped at `max_tokens` to keep the runs short. A 135M model plans poorly, so answers
  are not checked; what counts is that every run ends with a status.

Figures: runs by status, wrong outputs, exceptions, wall time, p50/p95 latency of a run, and the process's
open file descriptors, threads and child processes before and after. "No deadlock" means every run ended
before `deadline_s`.

Threads: anyio keeps an idle worker thread for 10 s and retires it only when a thread is next needed, and
asyncio keeps its default executor's threads until the loop closes. Right after the runs the thread count
is therefore above the baseline by the idle pool; the report counts pool threads apart
(`threads_besides_pools`), and with `settle_s` it waits out anyio's idle timeout, asks for one thread (which
retires the expired ones) and counts again (`after_settle`).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, replace
from typing import Any

import anyio
import anyio.to_thread
from rich.table import Table

from agentdag import Agent, FunctionModel, PlannerConfig, RunResult, tool
from agentdag.messages import ModelRequest, ModelResponse
from agentdag.models import ModelConfig, open_model
from agentdag.models.base import Model, WrapperModel
from agentdag.schemas import JOINER_SCHEMA

from .resources import Resources, settle, snapshot_resources, wait_for_exits

__all__ = ["create_load_table", "run_load_bench"]

# -- the scripted workload -----------------------------------------------------------------------------


@tool
async def lookup(key: str) -> dict[str, Any]:
    """Look a key up (an async tool with a little latency)."""
    await anyio.sleep(0.005)
    return {"key": key, "length": len(key)}


@tool
def add(a: int, b: int) -> int:
    """Add two integers (a sync tool: it runs in a worker thread)."""
    return a + b


@tool
async def describe(total: int) -> str:
    """Put a total into words."""
    return f"total {total}"


_TASK = re.compile(r"load run (\d+)")
_LAST_OBSERVATION = re.compile(r"\[4\] describe\(.*\) -> (.+)")


def _scripted_task(index: int) -> str:
    return f"load run {index}: add the lengths of two keys"


def _expected_answer(index: int) -> str:
    return f"total {len(f'run-{index}-a') + len(f'run-{index}-bb')}"


async def _scripted_reply(request: ModelRequest) -> str:
    """Plan four nodes for the run named in the prompt, or finish with the run's last observation."""
    await anyio.sleep(0.002)  # a model call takes a moment, so runs interleave
    prompt = request.messages[-1].content
    if request.settings.json_schema is JOINER_SCHEMA:
        found = _LAST_OBSERVATION.search(prompt)
        answer = found.group(1) if found else "no observation"
        return json.dumps({"thought": "done", "answer": answer, "action": "finish", "reason": ""})
    match = _TASK.search(prompt)
    index = int(match.group(1)) if match else -1
    nodes = [
        {"id": 1, "tool": "lookup", "arguments": {"key": f"run-{index}-a"}, "depends_on": []},
        {"id": 2, "tool": "lookup", "arguments": {"key": f"run-{index}-bb"}, "depends_on": []},
        {"id": 3, "tool": "add", "arguments": {"a": "${1.length}", "b": "${2.length}"}, "depends_on": [1, 2]},
        {"id": 4, "tool": "describe", "arguments": {"total": "$3"}, "depends_on": [3]},
    ]
    return json.dumps({"thought": "two lookups, a sum, a sentence", "nodes": nodes})


def _check_scripted(index: int, result: RunResult) -> bool:
    """Whether a scripted run produced exactly its own outputs and answer."""
    expected = _expected_answer(index)
    outputs = {node_id: record.output for node_id, record in result.records.items()}
    return (
        result.status == "done"
        and result.answer == expected
        and outputs.get(1) == {"key": f"run-{index}-a", "length": len(f"run-{index}-a")}
        and outputs.get(4) == expected
    )


# -- the embedded workload ----------------------------------------------------------------------------


class _TokenCap(WrapperModel):
    """Caps every request's `max_tokens` (the joiner asks for 512), so that runs under load stay short."""

    def __init__(self, wrapped: Model, max_tokens: int) -> None:
        super().__init__(wrapped)
        self.max_tokens = max_tokens

    def _capped(self, request: ModelRequest) -> ModelRequest:
        wanted = request.settings.max_tokens
        cap = self.max_tokens if wanted is None else min(wanted, self.max_tokens)
        return replace(request, settings=replace(request.settings, max_tokens=cap))

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Forward the request with its reply capped."""
        return await self.wrapped.request(self._capped(request))

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Forward the stream with its reply capped."""
        async with aclosing(self.wrapped.stream(self._capped(request))) as chunks:
            async for chunk in chunks:
                yield chunk


def _local_task(index: int) -> str:
    return f"What is {index} + {2 * index}, and what is {index} * 3?"


# -- driving the runs ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    """How one run ended."""

    latency_s: float
    result: RunResult | None = None
    exception: str | None = None
    correct: bool | None = None


async def _drive(
    agent: Agent,
    tasks: Sequence[str],
    *,
    deadline_s: float,
    check: Callable[[int, RunResult], bool] | None,
) -> tuple[list[_Outcome | None], float]:
    """Start every run at once; return each run's outcome (None if it had not ended) and the wall time."""
    outcomes: list[_Outcome | None] = [None] * len(tasks)

    async def one(index: int) -> None:
        started = time.perf_counter()
        try:
            result = await agent.run(tasks[index])
        except Exception as error:  # a run must end with a status; an exception is a finding to report
            outcomes[index] = _Outcome(time.perf_counter() - started, exception=f"{type(error).__name__}: {error}")
            return
        correct = check(index, result) if check is not None else None
        outcomes[index] = _Outcome(time.perf_counter() - started, result=result, correct=correct)

    started = time.perf_counter()
    with anyio.move_on_after(deadline_s):
        async with anyio.create_task_group() as task_group:
            for index in range(len(tasks)):
                task_group.start_soon(one, index)
    return outcomes, time.perf_counter() - started


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _report(
    *,
    model: str,
    outcomes: Sequence[_Outcome | None],
    wall_s: float,
    deadline_s: float,
    resources: dict[str, Resources],
) -> dict[str, Any]:
    ended = [outcome for outcome in outcomes if outcome is not None]
    results = [outcome.result for outcome in ended if outcome.result is not None]
    latencies = [outcome.latency_s for outcome in ended]
    statuses = Counter(result.status for result in results)
    node_statuses = Counter(record.status for result in results for record in result.records.values())
    errors = Counter((result.error or "")[:90] for result in results if result.status != "done")
    exceptions = [outcome.exception for outcome in ended if outcome.exception is not None]
    checked = [outcome.correct for outcome in ended if outcome.correct is not None]
    before, after = resources["before"], resources["after"]
    settled = resources.get("after_settle")
    return {
        "model": model,
        "runs": len(outcomes),
        "ended": len(ended),
        "deadlock": len(ended) < len(outcomes),
        "deadline_s": deadline_s,
        "by_status": dict(statuses),
        "wrong_outputs": checked.count(False) if checked else None,
        "exceptions": len(exceptions),
        "exception_samples": exceptions[:3],
        "run_errors": dict(errors.most_common(5)),
        "nodes_by_status": dict(node_statuses),
        "model_calls": sum(result.model_calls for result in results),
        "tokens": sum(result.total_usage.total_tokens for result in results),
        "wall_s": round(wall_s, 3),
        "latency_p50_s": _rounded(statistics.median(latencies) if latencies else None),
        "latency_p95_s": _rounded(_percentile(latencies, 0.95)),
        "latency_max_s": _rounded(max(latencies, default=None)),
        "resources": {
            name: {
                **asdict(value),
                "pool_threads": value.pool_threads,
                "threads_besides_pools": value.threads_besides_pools,
            }
            for name, value in resources.items()
        },
        "back_to_baseline": {
            "fds": after.fds == before.fds,
            "children": after.children == before.children,
            "threads_besides_pools": after.threads_besides_pools == before.threads_besides_pools,
            # The settle itself takes one worker; asyncio's executor threads stay until the loop closes.
            "anyio_workers_after_settle": None
            if settled is None
            else settled.anyio_workers <= before.anyio_workers + 1,
        },
        "note": "resources 'after' are counted once the model is closed; pool threads are anyio's idle "
        "workers and asyncio's executor (see the module docstring); after_settle keeps the executor's threads "
        "(until the loop closes) and the one worker the settle used; 'cold' (embedded only) is before "
        "llama.cpp's first start",
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def run_load_bench(
    *,
    model: str = "scripted",
    runs: int = 200,
    max_tokens: int = 64,
    deadline_s: float = 1800.0,
    settle_s: float = 10.5,
    model_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Start `runs` runs at once on one `Agent` and report how they ended and what the process kept.

    Args:
        model: "scripted" (a `FunctionModel`), "local" (one embedded server) or a server's URL.
        runs: concurrent runs.
        max_tokens: real models: the cap of every reply, planner and joiner alike.
        deadline_s: every run must end within this; runs still going then count as deadlocked.
        settle_s: wait this long after the runs for idle worker threads to retire (0: do not wait).
        model_timeout_s: real models: the deadline of one model call (requests queue behind each other).

    Raises:
        ValueError: an unknown model name or a count below 1.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    before = snapshot_resources()
    resources: dict[str, Resources] = {}
    if model == "scripted":
        agent = Agent(tools=[lookup, add, describe], model=FunctionModel(_scripted_reply))
        tasks = [_scripted_task(index) for index in range(runs)]
        outcomes, wall_s = await _drive(agent, tasks, deadline_s=deadline_s, check=_check_scripted)
    else:
        from agentdag.tools.calculator import TOOLS  # the tools ship beside the package

        config = ModelConfig.from_name(model, others=["scripted"]).model_copy(update={"timeout_s": model_timeout_s})
        if config.effective_provider() == "embedded":
            # llama.cpp starts one process-wide native thread on its first server and keeps it (it does not
            # grow with more servers), so the baseline is counted after one start and stop.
            async with open_model(config):
                pass
            resources["cold"], before = before, snapshot_resources()
        async with open_model(config) as opened:
            agent = Agent(
                tools=TOOLS,
                model=_TokenCap(opened, max_tokens),
                planner=PlannerConfig(max_tokens=max(16, max_tokens), max_repairs=1, max_replans=1),
            )
            tasks = [_local_task(index) for index in range(runs)]
            outcomes, wall_s = await _drive(agent, tasks, deadline_s=deadline_s, check=None)
    resources.update(before=before, after=await wait_for_exits(before))
    if settle_s > 0:
        resources["after_settle"] = await settle(settle_s)
    return _report(model=model, outcomes=outcomes, wall_s=wall_s, deadline_s=deadline_s, resources=resources)


def create_load_table(report: dict[str, Any]) -> Table:
    """The report as a table: one row per figure, resources before and after side by side."""
    table = Table(title=f"load: {report['runs']} concurrent runs, model {report['model']}")
    table.add_column("figure")
    table.add_column("value")
    for key in (
        "ended",
        "deadlock",
        "by_status",
        "wrong_outputs",
        "exceptions",
        "run_errors",
        "nodes_by_status",
        "model_calls",
        "tokens",
        "wall_s",
        "latency_p50_s",
        "latency_p95_s",
        "latency_max_s",
        "back_to_baseline",
    ):
        table.add_row(key, str(report[key]))
    for name, counts in report["resources"].items():
        table.add_row(f"resources {name}", ", ".join(f"{key} {value}" for key, value in counts.items()))
    return table
