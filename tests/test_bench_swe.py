"""The SWE harness, proven by its two controls: the oracle resolves every case, noop none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentdag.benchmarks.data_paths import DataNotFoundError, find_data_file
from agentdag.benchmarks.oracle import GenerationTiming
from agentdag.benchmarks.swe import load_swe_cases, oracle_plan, run_swe_bench

from agentdag.cli import main


def _swe_folder() -> Path:
    try:
        return find_data_file("swe/humanevalfix.jsonl").parent
    except DataNotFoundError:
        return Path("no-swe-data")


DATA = _swe_folder()
FAST = GenerationTiming(first_token_s=0.0, token_s=0.0)

pytestmark = pytest.mark.skipif(
    not (DATA / "quixbugs.jsonl").is_file(), reason="no SWE data: `agentdag data fetch humanevalfix quixbugs`"
)


@pytest.mark.asyncio
@pytest.mark.parametrize("agent", ["dag", "react"])
async def test_oracle_resolves_and_noop_does_not(agent: str) -> None:
    dataset = DATA / "humanevalfix.jsonl"
    oracle = await run_swe_bench(dataset=dataset, agent=agent, model="oracle", limit=2, timing=FAST)  # type: ignore[arg-type]
    noop = await run_swe_bench(dataset=dataset, agent=agent, model="noop", limit=2, timing=FAST)  # type: ignore[arg-type]
    assert oracle["summary"]["resolved_rate"] == 1.0
    assert noop["summary"]["resolved_rate"] == 0.0
    for report in (oracle, noop):
        assert report["summary"]["errors"] == 0
        assert report["summary"]["test_runs"] == 2
        assert report["summary"]["model_calls"] > 0


@pytest.mark.asyncio
async def test_candidates_run_in_separate_workspaces_and_one_is_selected() -> None:
    report = await run_swe_bench(
        dataset=DATA / "humanevalfix.jsonl", model="oracle", limit=1, candidates=3, timing=FAST
    )
    (item,) = report["items"]
    assert item["resolved"]
    assert item["selected"] == 0
    assert item["test_runs"] == 3  # each candidate ran the tests in its own workspace


def test_the_oracle_plan_reads_in_parallel_then_writes_the_gold_then_tests() -> None:
    (case,) = load_swe_cases(DATA / "quixbugs.jsonl", limit=1)
    plan = oracle_plan(case, apply_fix=True).splitlines()
    assert plan[0] == '1. list_files(".")'
    assert any(line.startswith("2. read_file(") for line in plan)
    assert sum("write_file(" in line for line in plan) == len(case.gold)
    assert "run_tests(" in plan[-2]
    assert plan[-1].endswith("join()<END_OF_PLAN>")
    assert "write_file(" not in oracle_plan(case, apply_fix=False)


def test_bench_swe_cli_prints_the_summary_fields(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["bench", "swe", "--dataset", str(DATA / "humanevalfix.jsonl"), "--model", "noop", "--limit", "1"]
    assert main([*arguments, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    for field in ("resolved_rate", "wall_s", "model_calls", "prompt_tokens", "completion_tokens", "test_runs"):
        assert field in summary


def test_bad_model_names_are_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "swe", "--model", "gpt-nothing", "--limit", "1"]) == 2
    assert "--model must be oracle, noop, local or an http(s) URL" in capsys.readouterr().err
