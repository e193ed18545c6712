"""`agentdag run` killed mid-run (`kill -9`, Ctrl-C) and resumed with `--resume`: nothing finished is lost
and nothing finished runs again. The runs are real `agentdag` processes; the planner's replies come from a
cassette recorded in this process, so the subprocess needs no model server.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from agentdag import Agent, FunctionModel
from agentdag.assembly import load_task_tools
from agentdag.messages import ModelRequest
from agentdag.models import CassetteModel
from agentdag.schemas import JOINER_SCHEMA
from agentdag.taskfile import load_task_file

TOOLS = '''
"""Tools that leave one file per call in calls/, so a test can count calls across processes."""

import uuid
from pathlib import Path

import anyio

from agentdag import tool

HERE = Path(__file__).parent


def _log(name: str) -> None:
    (HERE / "calls").mkdir(exist_ok=True)
    (HERE / "calls" / f"{name}.{uuid.uuid4().hex}").touch()


@tool
async def fetch(name: str) -> dict:
    """Fetch a named item."""
    _log(name)
    return {"name": name, "value": name.upper()}


@tool
async def gate(name: str) -> str:
    """Wait until the file `release` exists, then return the name upper-cased."""
    _log(name)
    while not (HERE / "release").exists():
        await anyio.sleep(0.02)
    return name.upper()


@tool
async def combine(parts: list[str]) -> str:
    """Join parts with '+'."""
    _log("combine")
    return "+".join(parts)
'''

TASK = """
task: Fetch a and b, wait for c, then combine them.
tools:
  - durable_tools:fetch
  - durable_tools:gate
  - durable_tools:combine
"""

PLAN = {
    "thought": "a and b at once, c alone, then combine",
    "nodes": [
        {"id": 1, "tool": "fetch", "arguments": {"name": "a"}},
        {"id": 2, "tool": "fetch", "arguments": {"name": "b"}},
        {"id": 3, "tool": "gate", "arguments": {"name": "c"}},
        {"id": 4, "tool": "combine", "arguments": {"parts": ["${1.value}", "${2.value}", "$3"]}},
    ],
}


def reply(request: ModelRequest) -> str:
    if request.settings.json_schema is JOINER_SCHEMA:
        answer = "A+B+C" if "A+B+C" in request.messages[-1].content else "unknown"
        return json.dumps({"thought": "t", "answer": answer, "action": "finish", "reason": ""})
    return json.dumps(PLAN)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A task folder with the tools, the task file and a cassette of the planner's and joiner's replies."""
    (tmp_path / "durable_tools.py").write_text(TOOLS)
    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "release").touch()  # the recording run must not block
    task = load_task_file(tmp_path / "task.yaml")
    tools = load_task_tools(task, base_dir=tmp_path, model=None)
    recorder = CassetteModel.recording(FunctionModel(reply, name="scripted"), tmp_path / "cassette.jsonl")

    async def record() -> None:
        result = await Agent(tools=tools, model=recorder, planner=task.planner).run(task.task)
        assert result.answer == "A+B+C"
        await recorder.aclose()

    anyio.run(record)
    (tmp_path / "release").unlink()
    for call in (tmp_path / "calls").iterdir():
        call.unlink()
    sys.modules.pop("durable_tools", None)
    return tmp_path


def agentdag(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "agentdag", *arguments]


def node_states(run_dir: Path) -> dict[int, str]:
    path = run_dir / "run.sqlite"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as connection:
            return dict(connection.execute("SELECT id, status FROM nodes").fetchall())
    except sqlite3.OperationalError:
        return {}  # the schema is not written yet


def start_and_wait_for_the_gate(workspace: Path, run_dir: Path) -> subprocess.Popen[str]:
    options = ("--replay", "cassette.jsonl", "--run-dir", str(run_dir), "--json")
    command = agentdag("run", "task.yaml", *options)
    process = subprocess.Popen(
        command, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    gate_called = workspace / "calls"
    while node_states(run_dir) != {1: "done", 2: "done", 3: "queued", 4: "queued"} or not any(
        path.name.startswith("c.") for path in gate_called.iterdir()
    ):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the run never reached the gate: {node_states(run_dir)}\n{out}\n{err}")
        time.sleep(0.05)
    return process


def calls(workspace: Path) -> list[str]:
    return sorted(path.name.split(".")[0] for path in (workspace / "calls").iterdir())


def resume(workspace: Path, run_dir: Path) -> dict[str, object]:
    (workspace / "release").touch()
    command = agentdag("run", "--resume", str(run_dir), "--replay", "cassette.jsonl", "--json")
    done = subprocess.run(command, cwd=workspace, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(180)
def test_a_run_killed_with_sigkill_resumes_without_losing_or_repeating_work(workspace: Path) -> None:
    run_dir = workspace / "run"
    process = start_and_wait_for_the_gate(workspace, run_dir)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    assert calls(workspace) == ["a", "b", "c"]

    result = resume(workspace, run_dir)
    assert result["status"] == "done"
    assert result["answer"] == "A+B+C"
    # a and b ran once in all; c was running when the process died, so it ran again; combine ran once.
    assert calls(workspace) == ["a", "b", "c", "c", "combine"]
    assert node_states(run_dir) == {1: "done", 2: "done", 3: "done", 4: "done"}
    assert "trace-2.jsonl" in {path.name for path in run_dir.iterdir()}, "the resumed run has its own trace"


@pytest.mark.timeout(180)
def test_a_run_interrupted_with_ctrl_c_says_how_to_resume_and_resumes(workspace: Path) -> None:
    run_dir = workspace / "run"
    process = start_and_wait_for_the_gate(workspace, run_dir)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert f"agentdag run --resume {run_dir}" in " ".join(err.split())
    assert node_states(run_dir)[3] == "queued", "a node cancelled by the interruption is not recorded as cancelled"

    result = resume(workspace, run_dir)
    assert result["answer"] == "A+B+C"
    assert calls(workspace) == ["a", "b", "c", "c", "combine"]


def test_resuming_a_folder_without_a_run_is_one_clear_error(workspace: Path) -> None:
    command = agentdag("run", "--resume", str(workspace / "nothing"))
    done = subprocess.run(command, cwd=workspace, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "no run here" in done.stderr
    assert "Traceback" not in done.stderr
