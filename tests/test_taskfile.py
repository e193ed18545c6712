from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentdag import Agent, FunctionModel, tool
from agentdag.assembly import apply_scaling, select_allowed_tools
from agentdag.errors import TaskFileError
from agentdag.messages import ModelRequest
from agentdag.schemas import JOINER_SCHEMA
from agentdag.taskfile import load_task_file, parse_task_file
from agentdag.toolsets.model import ModelTool

MALFORMED = {
    "empty": ("", "t.yaml: the task file is empty"),
    "a list": ("- a\n- b\n", "t.yaml:1: a task file is a mapping"),
    "a string": ("just words\n", "t.yaml:1: a task file is a mapping"),
    "unclosed bracket": ("task: [x\n", "t.yaml:2: invalid YAML"),
    "tab indent": ("task: x\n\tplan: 1\n", "t.yaml:2: invalid YAML"),
    "alias": ("a: &x [1]\ntask: x\nb: *x\n", "t.yaml:3: invalid YAML: YAML aliases"),
    "typo key": ("task: x\ntool:\n  - a:b\n", "t.yaml:2: tool: unknown key"),
    "missing task": ("tools: []\n", "t.yaml:1: task: required key is missing"),
    "blank task": ("task: ''\n", "t.yaml:1: task: String should have at least 1 character"),
    "tools not a list": ("task: x\ntools: calc\n", "t.yaml:2: tools: Input should be a valid list"),
    "node id text": ("task: x\nplan:\n  - id: 1\n    tool: a\n  - id: two\n    tool: a\n", "t.yaml:5: plan.1.id"),
    "node unknown field": (
        "task: x\nplan:\n  - id: 1\n    tool: a\n    args: {}\n",
        "t.yaml:5: plan.0.args: unknown key",
    ),
    "node without tool": ("task: x\nplan:\n  - id: 1\n", "t.yaml:3: plan.0.tool: required key is missing"),
    "bad limit": ("task: x\nlimits:\n  max_concurrency: 0\n", "t.yaml:3: limits.max_concurrency"),
    "bad provider": ("task: x\nmodel:\n  provider: magic\n", "t.yaml:3: model.provider"),
    "openai option on embedded": ("task: x\nmodel:\n  provider: embedded\n  model: gpt\n", "t.yaml:2: model"),
    "duplicate key": ("task: x\ntask: y\n", "t.yaml:2: invalid YAML: duplicate key 'task'"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_each_malformed_file_gets_one_line_naming_file_key_and_line(name: str) -> None:
    text, expected = MALFORMED[name]
    with pytest.raises(TaskFileError) as caught:
        parse_task_file(text, source="t.yaml")
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_each_problem_gets_its_own_line_naming_its_place() -> None:
    text = "task: ''\ntools: 1\nplan: 2\nlimits: 3\nanswer: 1\nextra: 1\n"
    with pytest.raises(TaskFileError) as caught:
        parse_task_file(text, source="t.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 5, lines
    assert [line.split(": ", 1)[0] for line in lines] == ["t.yaml:1", "t.yaml:2", "t.yaml:3", "t.yaml:4", "t.yaml:6"]


def test_problems_past_ten_are_counted_on_one_line() -> None:
    text = "task: t\n" + "".join(f"extra{index}: 1\n" for index in range(14))
    with pytest.raises(TaskFileError) as caught:
        parse_task_file(text, source="t.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 11
    assert lines[-1] == "t.yaml: and 4 more problem(s)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("task: t\nmodle: {}\n", "t.yaml:2: modle: unknown key; did you mean 'model'?"),
        ("task: t\nlimits: {max_concurency: 2}\n", "t.yaml:2: limits.max_concurency: unknown key; did you mean"),
        ("task: t\nplan:\n  - {id: 1, tool: x, argumens: {}}\n", "t.yaml:3: plan.0.argumens: unknown key; did you"),
        ("task: t\nbackend: {kind: ray, adress: x}\n", "t.yaml:2: backend.ray.adress: unknown key; did you mean"),
        (
            "task: t\nscaling: {planner: {strategy: best_of_n, selectr: judge}}\n",
            "t.yaml:2: scaling.planner.best_of_n.selectr: unknown key; did you mean 'selector'?",
        ),
        ("task: t\nzzzz: 1\n", "t.yaml:2: zzzz: unknown key (check its spelling)"),
    ],
)
def test_an_unknown_key_gets_a_suggestion(text: str, expected: str) -> None:
    with pytest.raises(TaskFileError) as caught:
        parse_task_file(text, source="t.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="no such task file"):
        load_task_file(tmp_path / "missing.yaml")
    with pytest.raises(TaskFileError, match="is a directory"):
        load_task_file(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"task: \xff\xfe\n")
    with pytest.raises(TaskFileError, match="not UTF-8"):
        load_task_file(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_text("task: " + "x" * 1_100_000)
    with pytest.raises(TaskFileError, match="the limit is"):
        load_task_file(huge)


def test_a_good_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    plan = "plan:\n  - {id: 1, tool: calculate, arguments: {expression: '1+2'}}\n"
    path.write_text("task: add\ntools: [agentdag.tools.calculator:TOOLS]\n" + plan)
    task = load_task_file(path)
    assert task.plan is not None and task.plan[0].arguments == {"expression": "1+2"}
    assert task.model.provider == "embedded"
    assert task.limits.timeout_s == 300


@given(st.text(max_size=200))
def test_any_text_loads_or_raises_only_task_file_error(text: str) -> None:
    try:
        parse_task_file(text)
    except TaskFileError as error:
        message = str(error)
    else:
        message = "loaded"
    assert message


@pytest.mark.asyncio
async def test_scaling_wraps_the_configured_roles_only() -> None:
    from agentdag.messages import Message, ModelRequest
    from agentdag.models import FunctionModel

    text = "task: x\nscaling:\n  joiner: {strategy: best_of_n, n: 3}\n  tools: [{strategy: single}]\n"
    task = parse_task_file(text)
    base = FunctionModel(lambda request: "The answer is 42.")
    joiner = apply_scaling(task.scaling, "joiner", base)
    assert apply_scaling(task.scaling, "planner", base) is base
    response = await joiner.request(ModelRequest(messages=(Message("user", "q"),)))
    assert len(base.requests) == 3  # three samples drawn for best-of-3
    assert "42" in response.text


def test_unknown_scaling_strategies_are_rejected_with_the_key() -> None:
    with pytest.raises(TaskFileError, match=r"t.yaml:3: scaling.planner"):
        parse_task_file("task: x\nscaling:\n  planner: {strategy: magic}\n", source="t.yaml")


# -- allow_tools --------------------------------------------------------------------------------------

CALLS: list[str] = []


@tool
async def lookup(query: str) -> str:
    """Look a query up."""
    CALLS.append(f"lookup {query}")
    return query.upper()


@tool
async def erase(path: str) -> str:
    """Erase a file."""
    CALLS.append(f"erase {path}")
    return "erased"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "task: x\nallow_tools: [lookup]\nplan:\n  - {id: 1, tool: lookup}\n  - {id: 2, tool: erase}\n",
            "t.yaml:5: plan.1.tool: 'erase' is not in allow_tools (lookup)",
        ),
        (
            "task: x\nallow_tools: []\nplan:\n  - {id: 1, tool: lookup}\n",
            "t.yaml:4: plan.0.tool: 'lookup' is not in allow_tools (none)",
        ),
        ("task: x\nallow_tools: lookup\n", "t.yaml:2: allow_tools: Input should be a valid list"),
        ("task: x\nallow_tools: ['']\n", "t.yaml:2: allow_tools.0: String should have at least 1 character"),
    ],
)
def test_allow_tools_is_checked_with_the_task_file(text: str, expected: str) -> None:
    with pytest.raises(TaskFileError) as caught:
        parse_task_file(text, source="t.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_select_allowed_tools_keeps_the_allowed_and_names_the_unknown() -> None:
    model_tool = ModelTool(FunctionModel(lambda _: "ok"))
    offered = [lookup, erase, model_tool]
    assert select_allowed_tools(parse_task_file("task: x\n"), offered) == offered
    allowed = select_allowed_tools(parse_task_file("task: x\nallow_tools: [llm, lookup]\n"), offered)
    assert [item.name for item in allowed] == ["lookup", "llm"]
    with pytest.raises(TaskFileError) as caught:
        select_allowed_tools(parse_task_file("task: x\nallow_tools: [lookup, erase_all, web]\n"), offered)
    assert str(caught.value) == (
        "allow_tools names 'erase_all', 'web', which no tool source offers (tools: erase, llm, lookup)"
    )


@pytest.mark.asyncio
async def test_the_planner_sees_only_allowed_tools_and_plans_naming_others_never_run() -> None:
    CALLS.clear()
    task = parse_task_file("task: look things up\nallow_tools: [lookup]\n")
    planner_replies = [
        _plan({"id": 1, "tool": "lookup", "arguments": {"query": "a"}}),
        _plan({"id": 2, "tool": "erase", "arguments": {"path": "/"}}),  # a replan that reaches for erase
        _plan({"id": 2, "tool": "lookup", "arguments": {"query": "b"}}),  # the repair
    ]
    joiner_replies = [_decision("replan", "need more"), _decision("finish", "A B")]
    requests: list[ModelRequest] = []

    def reply(request: ModelRequest) -> str:
        requests.append(request)
        return (joiner_replies if request.settings.json_schema is JOINER_SCHEMA else planner_replies).pop(0)

    agent = Agent(tools=select_allowed_tools(task, [lookup, erase]), model=FunctionModel(reply))
    result = await agent.run(task.task)
    assert result.status == "done" and result.answer == "A B"
    assert CALLS == ["lookup a", "lookup b"]  # erase never ran
    planner_prompt = " ".join(message.content for message in requests[0].messages)
    assert "lookup" in planner_prompt and "erase" not in planner_prompt
    repair = " ".join(message.content for message in requests[3].messages)
    assert "unknown tool 'erase'" in repair


def _plan(*nodes: dict[str, object]) -> str:
    return json.dumps({"thought": "t", "nodes": list(nodes)})


def _decision(action: str, text: str) -> str:
    answer, reason = (text, "") if action == "finish" else ("", text)
    return json.dumps({"thought": "t", "answer": answer, "action": action, "reason": reason})
