from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentdag.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write their traces under ./runs: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


def test_run_prints_the_answer_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "quickstart.yaml"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "The three areas add up to 43.982297150257104."


def test_run_json_holds_every_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "quickstart.yaml"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "done"
    assert [node["status"] for node in result["nodes"]] == ["done"] * 4
    assert result["nodes"][3]["arguments"]["expression"].startswith("3.14159")


def test_a_failed_task_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = write(
        tmp_path,
        "task: divide\ntools: [agentdag.tools.calculator:TOOLS]\nplan:\n"
        "  - {id: 1, tool: calculate, arguments: {expression: '1/0'}}\n"
        "  - {id: 2, tool: calculate, arguments: {expression: '$1 + 1'}}\n",
    )
    assert main(["run", str(task)]) == 1
    captured = capsys.readouterr()
    assert "division by zero" in captured.err
    assert "skipped" in captured.out


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("task: [", "invalid YAML"),
        ("task: x\ntools: [no.such:thing]\nplan: [{id: 1, tool: a}]\n", "cannot import module 'no.such'"),
        (
            "task: x\ntools: [agentdag.tools.calculator:TOOLS]\nplan: [{id: 1, tool: calc}]\n",
            "did you mean 'calculate'",
        ),
        ("task: x\ntools: [agentdag.tools.calculator:TOOLS]\nplanner: {style: yaml}\n", "planner.style"),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    assert main(["run", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_plan_prints_the_dag_without_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLES / "quickstart.yaml"), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [node["id"] for node in plan["nodes"]] == [1, 2, 3, 4]


def test_plan_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = write(
        tmp_path,
        "task: x\ntools: [agentdag.tools.calculator:TOOLS]\nplan:\n"
        "  - {id: 1, tool: calculate, arguments: {expression: '$1'}}\n"
        "  - {id: 2, tool: nope}\n",
    )
    assert main(["plan", str(task)]) == 2
    err = capsys.readouterr().err
    assert "node 1" in err
    assert "node 2" in err


def test_the_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "agentdag.cli", "run", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "no such task file" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_unknown_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--no-such-option"])
    assert caught.value.code == 2


def test_run_without_a_task_file_or_resume_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "give a task file to run, or --resume RUN_DIR" in capsys.readouterr().err


def test_bench_executor_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "executor", "--json", "--nodes", "60", "--noop-nodes", "200", "--runs", "1"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for field in (
        "critical_path_s",
        "wall_s",
        "ratio",
        "overhead_us_per_task",
        "target_ratio",
        "target_overhead_us_per_task",
    ):
        assert field in figures
    assert figures["ratio"] == pytest.approx(figures["wall_s"] / figures["critical_path_s"], rel=0.01)
    assert figures["ratio"] >= 1.0  # nothing can beat its critical path


def test_bench_server_runs_the_server_bench_with_its_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wiring only: the real bench starts the embedded server, which tests marked `embedded` cover."""
    import agentdag.benchmarks.server as server_bench

    expected = {"max_tokens", "concurrency", "threads", "contended"}
    assert expected <= inspect.signature(server_bench.run_server_bench).parameters.keys()
    received: list[dict[str, object]] = []

    async def run_server_bench(**options: object) -> dict[str, object]:
        received.append(options)
        return {"bench": "server"}

    monkeypatch.setattr(server_bench, "run_server_bench", run_server_bench)
    assert main(["bench", "server", "--json", "--max-tokens", "16", "--concurrency", "2"]) == 0
    assert main(["bench", "server", "--json", "--threads", "3", "--no-contended"]) == 0
    assert received == [
        {"max_tokens": 16, "concurrency": 2, "threads": None, "contended": True},
        {"max_tokens": 128, "concurrency": 4, "threads": 3, "contended": False},
    ]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [{"bench": "server"}] * 2
    with pytest.raises(SystemExit) as caught:
        main(["bench", "backend"])  # "backend" names where nodes run, not the model server
    assert caught.value.code == 2


def test_the_mcp_example_runs_its_server_as_a_subprocess(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "mcp_search.yaml"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"]["difference_metres"] == 304
    assert "634 metres" in result["answer"]["skytree"]
    assert [node["tool"] for node in result["nodes"]] == ["lookup", "lookup", "search", "calculate"]


def test_an_mcp_server_that_cannot_start_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = write(
        tmp_path,
        "task: x\nmcp_servers:\n  - {name: broken, command: python -c 'raise SystemExit(\"no corpus\")', "
        "max_restarts: 0}\nplan: [{id: 1, tool: search, arguments: {query: q}}]\n",
    )
    assert main(["run", str(task)]) == 2
    err = capsys.readouterr().err
    assert "MCP server 'broken'" in err
    assert "no corpus" in err
    assert "Traceback" not in err


def test_mcp_server_declarations_are_checked_in_the_task_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write(tmp_path, "task: x\nmcp_servers:\n  - {name: s}\nplan: [{id: 1, tool: a}]\n")
    assert main(["run", str(task)]) == 2
    assert "exactly one of `command`" in capsys.readouterr().err


ALLOW_LISTED = (
    "task: x\ntools: [agentdag.tools.calculator:TOOLS]\n"
    "mcp_servers:\n  - {name: calc, command: python -m agentdag.tools.calculator, prefix: true}\n"
    "allow_tools: [<allowed>]\nplan:\n  - {id: 1, tool: <tool>, arguments: {expression: '6 * 7'}}\n"
)


def allow_listed(tmp_path: Path, allowed: str, tool: str) -> Path:
    return write(tmp_path, ALLOW_LISTED.replace("<allowed>", allowed).replace("<tool>", tool))


def test_an_allow_listed_mcp_tool_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(allow_listed(tmp_path, "calc.calculate", "calc.calculate")), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == 42


@pytest.mark.parametrize(
    ("allowed", "tool", "needle"),
    [
        ("calc.calculate", "calculate", "t.yaml:7: plan.0.tool: 'calculate' is not in allow_tools (calc.calculate)"),
        # MCP tool names are known once the servers start: the check runs then, before any node.
        ("calc.nope", "calc.nope", "allow_tools names 'calc.nope', which no tool source offers"),
    ],
)
@pytest.mark.parametrize("command", ["run", "plan"])
def test_tools_outside_the_allow_list_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, allowed: str, tool: str, needle: str
) -> None:
    task = allow_listed(tmp_path, allowed, tool)
    assert main([command, str(task)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert needle.replace("t.yaml", str(task)) in err
    assert "Traceback" not in err
