"""The embedded server benchmark, for real: its phases, the busy core it adds, and its time limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentdag.benchmarks.server import TARGET_KEPT, run_server_bench
from support import require_embedded_model

require_embedded_model()

pytestmark = [pytest.mark.embedded, pytest.mark.anyio, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _children() -> set[int]:
    tasks = Path("/proc/self/task")
    return {int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()}


async def test_every_phase_generates_the_same_work_and_the_busy_loop_is_gone_after() -> None:
    before = _children()
    report = await run_server_bench(max_tokens=8, concurrency=2, rounds=1, threads=1)
    assert _children() == before  # the busy loop was stopped and reaped
    for name in ("single", "concurrent", "contended_single", "contended_concurrent"):
        phase = report[name]
        assert isinstance(phase, dict)
        assert (phase["requests"], phase["completion_tokens"], phase["short_replies"]) == (2, 16, 0), name
        assert phase["timed_out"] is False
    assert report["threads"] == 1
    assert report["kept"] == pytest.approx(report["contended_single_tok_s"] / report["single_tok_s"], abs=0.01)
    assert report["target_kept"] == TARGET_KEPT


async def test_a_phase_that_runs_out_of_time_counts_what_finished_and_says_so() -> None:
    report = await run_server_bench(max_tokens=64, concurrency=2, rounds=2, contended=False, phase_timeout_s=0.01)
    assert "contended_single" not in report and "kept" not in report
    for name in ("single", "concurrent"):
        phase = report[name]
        assert isinstance(phase, dict)
        assert phase["timed_out"] is True
        assert phase["requests"] == 0  # cut during its first request; later rounds are not started
        assert phase["seconds"] < 1.0
