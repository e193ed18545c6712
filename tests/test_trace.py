from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentdag.cli import main
from agentdag.events import NodeError, NodeEvent, RunEvent
from agentdag.trace import REDACTED, Redactor, TraceFileError, TraceWriter, read_trace

EXAMPLES = Path(__file__).parent.parent / "examples"
QUICKSTART = EXAMPLES / "quickstart.yaml"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write their traces under ./runs: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def test_a_run_writes_a_trace_under_runs_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(QUICKSTART)]) == 0
    (path,) = Path("runs").glob("*-quickstart/trace.jsonl")
    assert (path.parent / "run.sqlite").is_file(), "the run's state sits beside its trace"
    trace = read_trace(path)
    assert trace.header["task"].startswith("Sum the areas")
    assert trace.header["tools"] == ["calculate"]
    assert trace.header["started_at"]
    kinds = [(line["type"], line["kind"], line["node_id"]) for line in trace.events]
    assert ("node", "running", 1) in kinds
    assert ("node", "done", 4) in kinds
    assert all(isinstance(line["time"], float) for line in trace.events)
    assert trace.result["status"] == "done"
    assert trace.result["answer"] == "The three areas add up to 43.982297150257104."
    assert [node["dependencies"] for node in trace.result["nodes"]] == [[], [], [], [1, 2, 3]]
    assert "usage" in trace.result
    assert str(path) in capsys.readouterr().out


def test_no_trace_and_an_explicit_trace_path(tmp_path: Path) -> None:
    assert main(["run", str(QUICKSTART), "--quiet", "--no-trace", "--no-state"]) == 0
    assert not Path("runs").exists()
    target = tmp_path / "deep" / "run.jsonl"
    assert main(["run", str(QUICKSTART), "--quiet", "--trace", str(target)]) == 0
    assert read_trace(target).result["status"] == "done"


def test_trace_show_renders_the_summary_again(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert main(["run", str(QUICKSTART), "--quiet", "--trace", str(trace)]) == 0
    capsys.readouterr()
    assert main(["trace", "show", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "Sum the areas of three circles" in out
    assert "answer: The three areas add up to 43.982297150257104." in out
    assert "critical path" in out
    assert "parallelism" in out
    assert main(["trace", "show", str(trace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"


def test_a_failed_run_shows_its_failures_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "task: divide\ntools: [agentdag.tools.calculator:TOOLS]\nplan:\n"
        "  - {id: 1, tool: calculate, arguments: {expression: '1/0'}}\n"
        "  - {id: 2, tool: calculate, arguments: {expression: '$1 + 1'}}\n"
    )
    trace = tmp_path / "t.jsonl"
    assert main(["run", str(task), "--trace", str(trace)]) == 1
    capsys.readouterr()
    assert main(["trace", "show", str(trace)]) == 1
    out = capsys.readouterr().out
    assert "failure: node 1 calculate failed: ToolError: cannot evaluate '1/0': division by zero" in out
    assert "failure: node 2 calculate skipped: node 1 failed: " in out
    assert "(caused by node 1)" in out


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "not an agentdag trace"),
        ("{not json\n", ":1: not a trace line (invalid JSON"),
        ('{"type": "header", "version": 1}\n{"type": "node", "kind": "started"', ":2: not a trace line"),
        ('{"type": "header", "version": 1}\n{"type": "node", "kind": "started", "time": 0}\n', "truncated trace"),
        ('{"type": "header", "version": 9}\n{"type": "result"}\n', "trace version 9"),
        ('{"type": "header", "version": 1}\n{"type": "result", "status": "done"}\n', "the result line is not a run"),
        ("[1, 2]\n", "no `type`"),
    ],
)
def test_malformed_traces_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    assert main(["trace", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_a_missing_trace_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "show", "nope.jsonl"]) == 2
    assert "no such trace file" in capsys.readouterr().err


def test_the_console_script_shows_no_traceback_for_a_truncated_trace(tmp_path: Path) -> None:
    real = tmp_path / "t.jsonl"
    assert main(["run", str(QUICKSTART), "--quiet", "--trace", str(real)]) == 0
    lines = real.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    completed = subprocess.run(
        [sys.executable, "-m", "agentdag.cli", "trace", "show", str(cut)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 2
    assert "not a trace line" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_redactor_hides_secrets_at_any_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDAG_API_KEY", "sk-env-secret-1234")
    monkeypatch.delenv("OPENAI_API_KEY")
    redactor = Redactor.from_environment("sk-config-secret-5678", None, "abc")  # too short to be a key
    value = {"a": ["x sk-env-secret-1234 y", {"sk-config-secret-5678": 1}], "b": 3, "c": "abc"}
    assert redactor.redact(value) == {"a": [f"x {REDACTED} y", {REDACTED: 1}], "b": 3, "c": "abc"}


def test_a_planted_api_key_never_reaches_the_trace_or_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env_key, config_key = "sk-planted-env-key-0123456789", "sk-planted-config-key-9876543210"
    monkeypatch.setenv("AGENTDAG_API_KEY", env_key)
    # The key travels through a tool's arguments and output, the answer and an error message.
    task = tmp_path / "task.yaml"
    task.write_text(
        f"task: echo {env_key} and {config_key}\n"
        "tools: [agentdag.tools.calculator:TOOLS]\n"
        f"model: {{provider: openai, base_url: 'http://127.0.0.1:9/v1', api_key: {config_key}}}\n"
        "plan:\n"
        f"  - {{id: 1, tool: calculate, arguments: {{expression: '1 + 1'}}, thought: '{env_key}'}}\n"
        f"  - {{id: 2, tool: calculate, arguments: {{expression: '{config_key}'}}}}\n"
        f"answer: 'key {env_key} / {config_key} / ${{1}}'\n"
    )
    trace = tmp_path / "t.jsonl"
    main(["run", str(task), "--trace", str(trace)])
    main(["run", str(task), "--json", "--no-trace"])
    captured = capsys.readouterr()
    text = trace.read_text()
    assert REDACTED in text
    for secret in (env_key, config_key):
        assert secret not in text
        assert secret not in captured.out
        assert secret not in captured.err


def test_the_writer_writes_events_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    writer = TraceWriter.create(path, task="t", task_file=Path("t.yaml"), tools=["b", "a"], redactor=Redactor())
    writer(RunEvent("planning", 0.5, 0, "attempt 1"))
    writer(NodeEvent("failed", 3, "calc", 1.25, 2, 0.5, NodeError("timeout", "too slow")))
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["tools"] == ["a", "b"]
    assert lines[1] == {"type": "run", "kind": "planning", "time": 0.5, "round": 0, "detail": "attempt 1"}
    assert lines[2]["error"] == {"kind": "timeout", "message": "too slow", "cause": None}
    assert lines[2]["duration_s"] == 0.5
    with pytest.raises(TraceFileError, match="truncated"):
        read_trace(path)


def test_an_unwritable_trace_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(QUICKSTART), "--trace", str(blocker / "t.jsonl")]) == 2
    assert "cannot write the trace" in capsys.readouterr().err
