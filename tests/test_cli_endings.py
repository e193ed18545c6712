"""How the real CLI ends: bad input naming its place, closed pipes, SIGTERM, --strict, run folders that tell why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentdag.cli import main

TOOLS = '''
import anyio
from agentdag import tool

@tool
def big(size: int) -> str:
    """A text of `size` characters."""
    return "x" * size

@tool
async def slow(seconds: float) -> str:
    """Sleep, then say so."""
    await anyio.sleep(seconds)
    return "slept"

@tool
def fail(reason: str) -> str:
    """Fail with `reason`."""
    raise ValueError(reason)
'''


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks import `nodes_tools` from their folder and write their runs under ./runs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nodes_tools.py").write_text(TOOLS)


def write_task(
    tmp_path: Path,
    plan: str,
    *,
    tools: str = "[nodes_tools:big, nodes_tools:slow, nodes_tools:fail]",
    name: str = "task.yaml",
) -> Path:
    path = tmp_path / name
    path.write_text(f"task: t\ntools: {tools}\nplan:\n{plan}")
    return path


def agentdag(*arguments: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentdag", *arguments], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def bad_input_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line.removeprefix("agentdag: bad input: ") for line in err.splitlines()]


@pytest.mark.parametrize("command", ["run", "plan"])
def test_each_plan_problem_is_one_line_naming_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    task = write_task(
        tmp_path,
        "  - {id: 1, tool: big, arguments: {size: 3}}\n"
        "  - id: 2\n"
        "    tool: big\n"
        "    depends_on: [7]\n"
        "    arguments: {size: {$ref: 9}}\n"
        "  - {id: 3, tool: bgi}\n",
    )
    assert main([command, str(task)]) == 2
    assert bad_input_lines(capsys) == [
        f"{task}:7: plan.1.depends_on: node 2: depends_on names node 7, which does not exist",
        f"{task}:8: plan.1.arguments.size: node 2: reference $9 names node 9, which does not exist",
        f"{task}:9: plan.2.tool: node 3: unknown tool 'bgi'; did you mean 'big'? (tools: big, fail, slow)",
    ]
    assert not (tmp_path / "runs").exists()  # a rejected run leaves no folder behind


def test_an_answer_naming_a_node_outside_the_plan_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(tmp_path, "  - {id: 1, tool: big, arguments: {size: 3}}\nanswer: {$ref: 9}\n")
    assert main(["run", str(task)]) == 2
    assert bad_input_lines(capsys) == [
        f"{task}:5: answer: names node 9, which is not in the plan (nodes: 1)",
    ]


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("def f(:\n", "SyntaxError: invalid syntax (broken.py, line 1)"),
        ("import sys\nsys.exit(7)\n", "SystemExit: 7"),
        ("def again():\n    return again()\nagain()\n", "RecursionError: maximum recursion depth exceeded"),
        ("raise RuntimeError('no database')\n", "RuntimeError: no database"),
    ],
)
def test_a_tools_module_that_fails_to_import_is_bad_input_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: str, reason: str
) -> None:
    (tmp_path / "broken.py").write_text(module)
    task = write_task(tmp_path, "  - {id: 1, tool: big}\n", tools="\n  - nodes_tools:big\n  - broken:tool")
    assert main(["run", str(task)]) == 2  # not 7: the module's exit is the module's failure
    assert bad_input_lines(capsys) == [
        f"{task}:4: tools.1: cannot import module 'broken' for tool 'broken:tool': {reason}",
    ]


def test_a_relative_module_name_is_a_malformed_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = write_task(tmp_path, "  - {id: 1, tool: system}\n", tools="['..os:system']")
    assert main(["run", str(task)]) == 2
    assert bad_input_lines(capsys) == [
        f"{task}:2: tools.0: tool reference '..os:system' must look like 'package.module:name'",
    ]


@pytest.mark.parametrize("json_output", [True, False])
def test_a_reader_that_closes_the_pipe_ends_every_printing_command_quietly(tmp_path: Path, json_output: bool) -> None:
    task = write_task(tmp_path, "  - {id: 1, tool: big, arguments: {size: 400000}}\n")
    json_flag = ["--json"] if json_output else []
    assert main(["run", str(task), "--run-dir", "runs/big", "--quiet"]) == 0
    many = "".join(f"  - {{id: {index}, tool: big, arguments: {{size: 1}}}}\n" for index in range(1, 2001))
    commands = [
        ["run", str(task), "--no-state", *(json_flag or ["--quiet"])],  # the answer alone is 400,000 characters
        ["trace", "show", "runs/big", *json_flag],
        ["plan", str(write_task(tmp_path, many, name="many.yaml")), *(["--format", "json"] if json_output else [])],
    ]
    codes = []
    for command in commands:
        # Like `| head -c 10`: read 10 bytes and close the pipe while the command still writes more than it holds.
        with (tmp_path / "err").open("w") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "agentdag", *command], cwd=tmp_path, stdout=subprocess.PIPE, stderr=err
            )
            assert process.stdout is not None
            assert len(process.stdout.read(10)) == 10
            process.stdout.close()
            codes.append(process.wait(timeout=120))
        assert (tmp_path / "err").read_text() == "", command
    # 141 is the closed pipe. Some kernels (this project's CI VM among them) report nothing to a single write
    # that the reader's exit cut short, so a command whose last write was that one exits 0; the trace's
    # summary and JSON are written in more than one piece and always meet the closed pipe.
    assert set(codes) <= {0, 141}, codes
    assert codes[1] == 141, codes


def test_sigterm_ends_a_run_as_ctrl_c_does_with_a_resume_hint_and_a_trace_that_says_so(tmp_path: Path) -> None:
    task = write_task(
        tmp_path, "  - {id: 1, tool: slow, arguments: {seconds: 60}}\n  - {id: 2, tool: big, arguments: {size: 2}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "agentdag", "run", str(task), "--run-dir", "runs/slow"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    trace = tmp_path / "runs" / "slow" / "trace.jsonl"
    deadline = time.monotonic() + 60
    while '"running"' not in (trace.read_text() if trace.exists() else ""):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "Traceback" not in err
    assert "resume with: agentdag run --resume runs/slow" in err
    assert "agentdag: terminated" in err
    shown = agentdag("trace", "show", "runs/slow", cwd=tmp_path)
    assert "the run was interrupted before it ended" in shown.stderr
    assert json.loads(trace.read_text().splitlines()[-1]) == {"type": "end", "reason": "interrupted", "error": None}


def test_a_killed_run_reads_as_truncated(tmp_path: Path) -> None:
    task = write_task(tmp_path, "  - {id: 1, tool: slow, arguments: {seconds: 60}}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "agentdag", "run", str(task), "--run-dir", "runs/killed"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trace = tmp_path / "runs" / "killed" / "trace.jsonl"
    deadline = time.monotonic() + 60
    while '"running"' not in (trace.read_text() if trace.exists() else ""):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    shown = agentdag("trace", "show", "runs/killed", cwd=tmp_path)
    assert "truncated trace: no result line (the process was killed before the run ended)" in shown.stderr


def test_strict_exits_1_when_a_node_failed_though_the_task_has_its_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(
        tmp_path,
        "  - {id: 1, tool: fail, arguments: {reason: unlucky}}\n"
        "  - {id: 2, tool: big, arguments: {size: 2}}\n"
        "answer: {$ref: 2}\n",
    )
    assert main(["run", str(task), "--quiet", "--no-state"]) == 0
    assert capsys.readouterr().out.strip() == "xx"
    assert main(["run", str(task), "--quiet", "--no-state", "--strict"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "xx"  # the answer is still printed
    assert "strict: 1 node(s) did not succeed (1 failed)" in captured.err
    clean = write_task(tmp_path, "  - {id: 1, tool: big, arguments: {size: 2}}\n")
    assert main(["run", str(clean), "--quiet", "--no-state", "--strict"]) == 0
