from __future__ import annotations

import json

import anyio
import jsonschema
import pytest

from agentdag.errors import ModelError
from agentdag.messages import ModelRequest
from agentdag.models import FunctionModel
from agentdag.react import ReActAgent, create_step_schema
from agentdag.toolsets import ToolRegistry, tool


@tool
async def lookup(query: str) -> str:
    """Look a fact up."""
    return {"capital of France": "Paris", "population of Paris": "2.1 million"}.get(query, "unknown")


@tool(timeout_s=0.05)
async def slow(query: str) -> str:
    """Never answers in time."""
    await anyio.sleep(10)
    return query


@tool
async def broken(query: str) -> str:
    """Always fails."""
    raise RuntimeError(f"service down for {query}")


def call(tool_name: str, **arguments: object) -> str:
    return json.dumps({"thought": "look it up", "action": "call", "tool": tool_name, "arguments": arguments})


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "action": "finish", "answer": answer})


def last_user(request: ModelRequest) -> str:
    return request.messages[-1].content


@pytest.mark.asyncio
async def test_react_calls_tools_one_at_a_time_and_answers() -> None:
    def reply(request: ModelRequest) -> str:
        text = last_user(request)
        if text.startswith("Question:"):
            return call("lookup", query="capital of France")
        if "Paris" in text and "(call 1)" in text:
            return call("lookup", query="population of $1")
        return finish(text.split(": ", 1)[1])

    model = FunctionModel(reply)
    result = await ReActAgent(tools=[lookup], model=model).run("How many people live in France's capital?")

    assert result.status == "done"
    assert result.answer == "2.1 million"
    assert list(result.records) == [1, 2]
    assert [record.arguments for record in result.records.values()] == [
        {"query": "capital of France"},
        {"query": "population of Paris"},  # `$1` resolved by the executor
    ]
    assert result.records[1].finished_at is not None and result.records[2].started_at is not None
    assert result.records[1].finished_at <= result.records[2].started_at  # strictly sequential
    assert result.usage["planner"].calls == 3 == result.model_calls
    assert result.usage["planner"].prompt_tokens > 0
    assert set(result.usage) == {"planner", "joiner", "tools"}
    assert result.first_dispatch_s is not None
    # Every request is constrained by the step schema, and the system prompt lists the tools.
    assert all(request.settings.json_schema == create_step_schema(ToolRegistry([lookup])) for request in model.requests)
    assert "lookup" in model.requests[0].messages[0].content


@pytest.mark.asyncio
async def test_malformed_reply_gets_one_error_observation_and_counts_as_a_step() -> None:
    def reply(request: ModelRequest) -> str:
        text = last_user(request)
        if text.startswith("Question:"):
            return '{"thought": "hmm", "action": "dance"}'
        assert "not a valid step" in text and '"action": "finish"' in text
        return finish("42")

    model = FunctionModel(reply)
    result = await ReActAgent(tools=[lookup], model=model, max_steps=2).run("?")

    assert result.status == "done" and result.answer == "42"
    assert result.records == {}
    assert result.model_calls == 2


@pytest.mark.asyncio
async def test_step_budget_ends_the_run_as_failed() -> None:
    model = FunctionModel(lambda request: call("lookup", query="capital of France"))
    result = await ReActAgent(tools=[lookup], model=model, max_steps=3).run("loop forever")

    assert result.status == "failed"
    assert result.answer is None
    assert result.error is not None and "max_steps=3" in result.error
    assert result.model_calls == 3
    assert list(result.records) == [1, 2, 3]


@pytest.mark.asyncio
async def test_tool_timeouts_and_failures_become_observations() -> None:
    def reply(request: ModelRequest) -> str:
        text = last_user(request)
        if text.startswith("Question:"):
            return call("slow", query="x")
        if "(call 1)" in text:
            assert "error (timeout)" in text
            return call("broken", query="y")
        assert "error (tool_error)" in text and "service down for y" in text
        return finish("gave up")

    result = await ReActAgent(tools=[slow, broken], model=FunctionModel(reply)).run("?")

    assert result.status == "done"
    assert [record.status for record in result.records.values()] == ["failed", "failed"]
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"
    assert result.records[2].error is not None and result.records[2].error.kind == "tool_error"
    assert len(result.failures) == 2


@pytest.mark.asyncio
async def test_unknown_tool_and_bad_arguments_are_rejected_without_running() -> None:
    def reply(request: ModelRequest) -> str:
        text = last_user(request)
        if text.startswith("Question:"):
            return call("lookpu", query="x")
        if "unknown tool 'lookpu'" in text:
            assert "did you mean 'lookup'" in text
            return call("lookup", q="x")
        assert "rejected" in text and "query" in text
        return finish("none")

    result = await ReActAgent(tools=[lookup], model=FunctionModel(reply)).run("?")

    assert result.status == "done"
    assert result.records == {}
    assert result.model_calls == 3


@pytest.mark.asyncio
async def test_model_failure_is_reported_in_the_result() -> None:
    def reply(request: ModelRequest) -> str:
        raise ModelError("connection refused", source="test")

    result = await ReActAgent(tools=[lookup], model=FunctionModel(reply)).run("?")

    assert result.status == "failed"
    assert result.error is not None and "connection refused" in result.error


def test_step_schema_accepts_calls_and_answers_and_rejects_the_rest() -> None:
    schema = create_step_schema(ToolRegistry([lookup, broken]))
    jsonschema.validate(json.loads(call("lookup", query="x")), schema)
    jsonschema.validate(json.loads(finish("y")), schema)
    for bad in (
        call("nope", query="x"),
        call("lookup", query=3),
        call("lookup"),
        '{"thought": "", "action": "finish"}',
        '{"thought": "", "action": "finish", "answer": "a", "extra": 1}',
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(json.loads(bad), schema)


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        ReActAgent(tools=[lookup], model=FunctionModel(lambda request: ""), max_steps=0)
