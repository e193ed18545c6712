"""Every task file in examples/ runs, as the README shows it; a scripted model stands in where a real one is slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentdag.agent import Agent
from agentdag.assembly import apply_scaling, load_task_tools
from agentdag.cli import main
from agentdag.errors import ModelError
from agentdag.messages import ModelRequest
from agentdag.models.function import FunctionModel
from agentdag.taskfile import load_task_file
from agentdag.trace import read_trace

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def run_json(task: Path, *options: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = main(["run", str(task), "--json", *options])
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    assert code == (0 if result["status"] == "done" else 1)
    return result


def test_there_are_at_least_five_examples_and_each_has_a_test() -> None:
    names = {path.stem for path in EXAMPLES.glob("*.yaml")}
    assert {"quickstart", "arithmetic", "mcp_search", "code_fix", "openai_server"} <= names
    tested = Path(__file__).read_text()
    for name in names:
        assert f'"{name}.yaml"' in tested, f"examples/{name}.yaml has no test"


def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(EXAMPLES / "quickstart.yaml", capsys=capsys)
    assert result["answer"] == "The three areas add up to 43.982297150257104."


def test_mcp_search(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(EXAMPLES / "mcp_search.yaml", capsys=capsys)
    answer = result["answer"]
    assert isinstance(answer, dict)
    assert answer["difference_metres"] == 304


def test_code_fix_patches_a_copy_and_the_tests_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    program = EXAMPLES / "data" / "buggy_median" / "stats.py"
    before = program.read_bytes()
    trace = tmp_path / "code_fix.jsonl"
    result = run_json(EXAMPLES / "code_fix.yaml", "--trace", str(trace), capsys=capsys)
    assert result["answer"] == {
        "tests_passed_before": False,
        "patch": "patched stats.py at line 16",
        "tests_passed_after": True,
    }
    assert program.read_bytes() == before  # the server worked on a temporary copy
    started = [line["node_id"] for line in read_trace(trace).events if line["kind"] == "running"]
    assert started.index(3) > max(started.index(1), started.index(2))  # the patch waited for read and test


def test_arithmetic_with_a_scripted_planner() -> None:
    """The task file as the planner sees it, with a scripted model standing in for SmolLM2 (slow on 2 cores)."""
    task = load_task_file(EXAMPLES / "arithmetic.yaml")
    plan = {
        "thought": "Both at once.",
        "nodes": [
            {"id": 1, "tool": "calculate", "arguments": {"expression": "(12 + 30) * 2"}, "depends_on": []},
            {"id": 2, "tool": "calculate", "arguments": {"expression": "100 / 4"}, "depends_on": []},
        ],
    }

    def reply(request: ModelRequest) -> str:
        prompt = "\n".join(message.content for message in request.messages)
        if "You are a planner" in prompt:
            assert "What is (12 + 30) * 2, and what is 100 / 4?" in prompt
            return json.dumps(plan)
        assert "-> 84" in prompt and "-> 25" in prompt
        return json.dumps({"thought": "", "answer": "84 and 25.0", "action": "finish", "reason": ""})

    model = FunctionModel(reply)
    agent = Agent(tools=load_task_tools(task, base_dir=EXAMPLES, model=model), model=model, planner=task.planner)
    result = agent.run_sync(task.task)
    assert result.status == "done"
    assert result.answer == "84 and 25.0"
    assert [record.output for record in result.records.values()] == [84, 25.0]
    assert model.requests[0].settings.max_tokens == 300  # the task file's planner settings apply


@pytest.mark.embedded
@pytest.mark.timeout(600)
def test_arithmetic_on_the_embedded_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("xllamacpp", reason="the embedded server needs xllamacpp")
    from agentdag.models import find_model_file

    try:
        find_model_file()
    except ModelError as missing:
        pytest.skip(f"no embedded model: {missing}")
    result = run_json(EXAMPLES / "arithmetic.yaml", capsys=capsys)
    assert result["nodes"] or result["status"] == "done"  # a 135M model: the engine is what is checked


def test_openai_server(openai_stub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (EXAMPLES / "openai_server.yaml").read_text()
    assert "base_url: http://127.0.0.1:8080/v1" in text
    task = tmp_path / "openai_server.yaml"
    task.write_text(text.replace("http://127.0.0.1:8080/v1", openai_stub))
    result = run_json(task, capsys=capsys)
    assert result["answer"] == "7 * 6 - 5 * 4 = 22, and 2 ** 10 = 1024."
    usage = result["usage"]
    assert isinstance(usage, dict)
    assert usage["planner"]["calls"] == 1 and usage["joiner"]["calls"] == 1


def test_scaling_answer_stops_when_a_window_of_samples_agrees() -> None:
    import anyio

    task = load_task_file(EXAMPLES / "scaling_answer.yaml")
    replies = iter(["44", "43", "44", "44", "44", "44", "12", "12", "12"])
    model = FunctionModel(lambda request: next(replies))
    tools = load_task_tools(task, base_dir=EXAMPLES, model=apply_scaling(task.scaling, "tools", model))
    assert task.plan is not None
    result = anyio.run(lambda: Agent(tools=tools).run_plan(task.plan or [], answer=task.answer))
    assert result.status == "done"
    assert result.answer == {"circumference": 43.982297150257104, "rounded": "44"}
    assert len(model.requests) == 6  # two windows of three; the second agreed, so sampling stopped
    assert "43.98" in model.requests[0].messages[-1].content


@pytest.mark.embedded
@pytest.mark.timeout(300)
def test_scaling_answer_on_the_embedded_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("xllamacpp")
    result = run_json(EXAMPLES / "scaling_answer.yaml", capsys=capsys)
    assert result["status"] == "done"
    usage = result["usage"]
    assert isinstance(usage, dict)
    assert 3 <= usage["tools"]["calls"] <= 9  # at least one window, at most max_n samples
