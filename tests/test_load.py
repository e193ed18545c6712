"""Load: many concurrent runs through the SDK end, stay correct, and give back what they took.

Thread counts, honestly: anyio keeps idle worker threads for 10 s (and retires them only when a thread is
next needed), so right after the runs the sync tools' worker threads are still there. These tests count
them apart as pool threads: every other thread must be back at once, and the pool may hold no more than
the 16 threads that sync tools share. `agentdag bench load` also waits the 10 s out and counts again.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
from agentdag.benchmarks.load import run_load_bench

from agentdag.cli import main
from agentdag.errors import ModelError
from agentdag.models import find_model_file

SYNC_TOOL_THREADS = 16  # the worker threads sync tools share (agentdag.toolsets.function)


def assert_resources_returned(report: dict[str, Any]) -> None:
    resources = report["resources"]
    before, after = resources["before"], resources["after"]
    assert after["fds"] <= before["fds"]
    assert after["children"] <= before["children"]
    assert after["threads_besides_pools"] <= before["threads_besides_pools"]
    assert after["pool_threads"] <= before["pool_threads"] + SYNC_TOOL_THREADS


@pytest.mark.asyncio
async def test_two_hundred_concurrent_scripted_runs_all_end_correctly_and_release_everything() -> None:
    report = await run_load_bench(model="scripted", runs=200, deadline_s=100, settle_s=0)
    assert not report["deadlock"]
    assert report["ended"] == 200
    assert report["by_status"] == {"done": 200}
    assert report["exceptions"] == 0
    assert report["wrong_outputs"] == 0  # each run saw its own outputs: no cross-talk between runs
    assert report["nodes_by_status"] == {"done": 800}
    assert report["model_calls"] == 400
    assert_resources_returned(report)


def test_bench_load_prints_the_figures_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "load", "--runs", "5", "--settle-s", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["model"], report["runs"], report["by_status"]) == ("scripted", 5, {"done": 5})
    assert set(report["resources"]) == {"before", "after"}


def test_bench_load_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "load", "--runs", "3", "--settle-s", "0"]) == 0
    output = capsys.readouterr().out
    assert "load: 3 concurrent runs, model scripted" in output
    assert "latency_p95_s" in output


def _embedded_missing() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return "the embedded server needs xllamacpp: pip install 'agentdag[embedded]'"
    try:
        find_model_file()
    except ModelError as missing:
        return f"no embedded model: {missing}"
    return None


@pytest.mark.embedded
@pytest.mark.timeout(900)
@pytest.mark.skipif(_embedded_missing() is not None, reason=str(_embedded_missing()))
@pytest.mark.asyncio
async def test_concurrent_runs_against_one_embedded_server_all_end_with_a_status() -> None:
    # The bench counts its baseline after one start and stop of the server (llama.cpp keeps one thread).
    # The deadline only separates a hang from slow progress, so it is generous: beside another model
    # server on this 2-core machine these runs have taken longer than 500 s.
    report = await run_load_bench(model="local", runs=12, max_tokens=48, deadline_s=840, settle_s=0)
    assert not report["deadlock"]
    assert report["ended"] == 12
    assert sum(report["by_status"].values()) == 12
    assert report["exceptions"] == 0
    assert_resources_returned(report)
