"""The SWE harness, proven by its controls: the oracle resolves every case, noop and tamper none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentdag.benchmarks.data_paths import DataNotFoundError, find_data_file
from agentdag.benchmarks.oracle import GenerationTiming
from agentdag.benchmarks.swe import TAMPER_HOOK, TAMPERED_TEST, control_plan, load_swe_cases, run_swe_bench

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
    oracle = await run_swe_bench(dataset=dataset, agent=agent, model="oracle", limit=1, timing=FAST)  # type: ignore[arg-type]
    noop = await run_swe_bench(dataset=dataset, agent=agent, model="noop", limit=1, timing=FAST)  # type: ignore[arg-type]
    assert oracle["summary"]["resolved_rate"] == 1.0
    assert noop["summary"]["resolved_rate"] == 0.0
    for report in (oracle, noop):
        assert report["summary"]["errors"] == 0
        assert report["summary"]["test_runs"] == 1
        assert report["summary"]["model_calls"] > 0
    assert oracle["items"][0]["candidates"][0]["own_tests"] == "passed"
    assert noop["items"][0]["candidates"][0]["own_tests"] == "failed"


@pytest.mark.asyncio
@pytest.mark.parametrize("dataset", ["humanevalfix", "polyglot_python"])
async def test_tamper_passes_its_own_tests_and_resolves_nothing(dataset: str) -> None:
    report = await run_swe_bench(dataset=DATA / f"{dataset}.jsonl", model="tamper", limit=1, timing=FAST)
    (item,) = report["items"]
    (candidate,) = item["candidates"]
    # Its own run of the case's test command, in its own tree, passed: judged there, it would count as resolved.
    assert candidate["own_tests"] == "passed"
    assert "conftest.py" in candidate["tests_changed"]
    assert candidate["lines_changed"] == 0
    assert (item["resolved"], item["pass_at_n"], candidate["judge_passed"]) == (False, False, False)
    assert report["summary"]["resolved_rate"] == 0.0


@pytest.mark.asyncio
async def test_oracle_candidates_run_in_separate_workspaces_and_agree() -> None:
    report = await run_swe_bench(
        dataset=DATA / "humanevalfix.jsonl", model="oracle", limit=1, candidates=3, timing=FAST
    )
    (item,) = report["items"]
    assert (item["resolved"], item["pass_at_n"], item["selected"], item["candidates_passing"]) == (True, True, 0, 3)
    assert item["test_runs"] == 3  # each candidate ran the tests in its own workspace
    assert [candidate["agreement"] for candidate in item["candidates"]] == [3, 3, 3]


@pytest.mark.asyncio
async def test_the_selector_prefers_the_candidate_that_left_the_tests_alone() -> None:
    report = await run_swe_bench(
        dataset=DATA / "humanevalfix.jsonl", model="tamper,oracle", limit=1, candidates=2, timing=FAST
    )
    (item,) = report["items"]
    assert [candidate["model"] for candidate in item["candidates"]] == ["tamper", "oracle"]
    assert [candidate["own_tests"] for candidate in item["candidates"]] == ["passed", "passed"]
    assert (item["selected"], item["resolved"]) == (1, True)


def write_case(folder: Path, **changes: Any) -> Path:
    """A HumanEvalFix case as a one-line data set, with some fields changed."""
    record = json.loads((DATA / "humanevalfix.jsonl").read_text().splitlines()[0]) | changes
    dataset = folder / "case.jsonl"
    dataset.write_text(json.dumps(record) + "\n")
    return dataset


@pytest.mark.asyncio
async def test_selection_never_reads_the_judge(tmp_path: Path) -> None:
    # The oracle's gold here also breaks its own copy of test.py: its own run fails, the judge (which
    # restores test.py) passes it. The tamper's own run passes, the judge fails it. Selecting by the judge
    # would pick the oracle; selecting by what the agents saw picks the tamper.
    (case,) = load_swe_cases(DATA / "humanevalfix.jsonl", limit=1)
    dataset = write_case(tmp_path, gold={**case.gold, "test.py": "raise SystemExit(1)\n"})
    report = await run_swe_bench(dataset=dataset, model="tamper,oracle", candidates=2, timing=FAST)
    (item,) = report["items"]
    assert [candidate["own_tests"] for candidate in item["candidates"]] == ["passed", "failed"]
    assert [candidate["judge_passed"] for candidate in item["candidates"]] == [False, True]
    assert (item["selected"], item["resolved"], item["pass_at_n"], item["candidates_passing"]) == (0, False, True, 1)
    assert (report["summary"]["resolved_rate"], report["summary"]["pass_at_n_rate"]) == (0.0, 1.0)


def test_the_control_plans_read_in_parallel_then_write_then_test() -> None:
    (case,) = load_swe_cases(DATA / "quixbugs.jsonl", limit=1)
    plan = control_plan(case, "oracle").splitlines()
    assert plan[0] == '1. list_files(".")'
    assert any(line.startswith("2. read_file(") for line in plan)
    assert sum("write_file(" in line for line in plan) == len(case.gold)
    assert "run_tests(" in plan[-2]
    assert plan[-1].endswith("join()<END_OF_PLAN>")
    assert "write_file(" not in control_plan(case, "noop")
    tamper = control_plan(case, "tamper")
    assert f"write_file('python_testcases/test_bitcount.py', {TAMPERED_TEST!r}" in tamper
    assert f"write_file('conftest.py', {case.files['conftest.py'] + TAMPER_HOOK!r}" in tamper
    assert not any(path in tamper for path in case.gold)  # it never touches the source


def test_bench_swe_cli_prints_the_summary_fields(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["bench", "swe", "--dataset", str(DATA / "humanevalfix.jsonl"), "--model", "noop", "--limit", "1"]
    assert main([*arguments, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for field in ("resolved_rate", "pass_at_n_rate", "wall_s", "model_calls", "prompt_tokens", "test_runs"):
        assert field in report["summary"]
    (item,) = report["items"]
    for field in ("selected", "resolved", "pass_at_n", "candidates_passing", "candidates"):
        assert field in item


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("gpt-nothing", "--model must be oracle, noop, tamper, local or an http(s) URL"),
        ("oracle,local", "a list in --model may name only the scripted controls oracle, noop, tamper"),
    ],
)
def test_bad_model_names_are_one_clear_error(model: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "swe", "--model", model, "--limit", "1"]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_test_runner_stops_before_the_first_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_case(tmp_path, test_command="python -m agentdag_no_such_runner -q test.py")
    assert main(["bench", "swe", "--dataset", str(dataset), "--model", "oracle", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no case ran
    (line,) = captured.err.strip().splitlines()
    assert "the test runner of 'python -m agentdag_no_such_runner -q test.py' is missing" in line
    assert "pip install agentdag_no_such_runner" in line
