"""OpenAIModel's native tool calls against `httpx2.MockTransport`: the request body and the reply's calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from agentdag.errors import ModelError
from agentdag.messages import Message, ModelRequest, ModelResponse, ModelSettings, ToolCall, ToolSpec
from agentdag.models import OpenAIModel

pytestmark = pytest.mark.anyio

RADIUS = {"type": "object", "properties": {"radius": {"type": "number"}}, "required": ["radius"]}
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = (
    ToolSpec(name="area_circle.calculate", description="Area of a circle", parameters=RADIUS),
    ToolSpec(name="get_weather", description="Weather in a city", parameters=CITY),
)


def call(name: str, arguments: str, id: str = "call_1") -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def reply_body(*messages: dict[str, Any], finish_reason: str = "tool_calls", usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {"index": index, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
            for index, message in enumerate(messages)
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
    return body


@asynccontextmanager
async def mock_model(
    reply: Callable[[dict[str, Any]], dict[str, Any]],
) -> AsyncIterator[tuple[OpenAIModel, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return httpx2.Response(200, json=reply(body))

    model = OpenAIModel(
        base_url="http://llm.test/v1", model="test-model", transport=httpx2.MockTransport(handle), max_retries=0
    )
    try:
        yield model, bodies
    finally:
        await model.aclose()


def ask(text: str = "areas of circles of radius 3 and 5?", **settings: Any) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), settings=ModelSettings(**settings))


async def test_tools_are_sent_under_wire_names_with_the_tool_settings() -> None:
    async with mock_model(lambda _: reply_body({"content": "ok"}, finish_reason="stop")) as (model, bodies):
        await model.request(ask(tools=TOOLS, tool_choice="required", parallel_tool_calls=True))
        await model.request(ask(tools=TOOLS, parallel_tool_calls=False))
        await model.request(ask())
    with_tools, without_choice, plain = bodies
    assert with_tools["tools"] == [
        {"type": "function", "function": {"name": "area_circle_calculate", "description": "Area of a circle",
                                          "parameters": RADIUS}},
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                          "parameters": CITY}},
    ]  # fmt: skip
    assert (with_tools["tool_choice"], with_tools["parallel_tool_calls"]) == ("required", True)
    assert without_choice["parallel_tool_calls"] is False
    assert "tool_choice" not in without_choice
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & plain.keys()


async def test_several_tool_calls_come_back_under_their_own_names() -> None:
    message = {
        "content": None,
        "tool_calls": [
            call("area_circle_calculate", '{"radius": 3}', "c1"),
            call("area_circle_calculate", '{"radius": 5}', "c2"),
            call("get_weather", '{"city": "Oslo"}', "c3"),
        ],
    }
    async with mock_model(lambda _: reply_body(message)) as (model, _):
        response = await model.request(ask(tools=TOOLS, tool_choice="required", parallel_tool_calls=True))
    completion = response.completions[0]
    assert completion.text == ""
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == (
        ToolCall(name="area_circle.calculate", arguments='{"radius": 3}', id="c1"),
        ToolCall(name="area_circle.calculate", arguments='{"radius": 5}', id="c2"),
        ToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="c3"),
    )
    assert [tool_call.parsed_arguments() for tool_call in completion.tool_calls][1] == {"radius": 5}


async def test_malformed_arguments_and_unknown_names_are_kept_as_sent() -> None:
    message = {"content": "", "tool_calls": [call("area_circle_calculate", '{"radius": 3'), call("area.circle", "{}")]}
    async with mock_model(lambda _: reply_body(message)) as (model, _):
        response = await model.request(ask(tools=TOOLS))
    malformed, unknown = response.completions[0].tool_calls
    assert (malformed.name, malformed.arguments) == ("area_circle.calculate", '{"radius": 3')
    with pytest.raises(ValueError, match="not JSON"):
        malformed.parsed_arguments()
    assert unknown.name == "area.circle"  # the server's own spelling: a caller scores it as wrong


async def test_a_reply_without_tool_calls_has_none() -> None:
    async with mock_model(lambda _: reply_body({"content": "I cannot help."}, finish_reason="stop")) as (model, _):
        response = await model.request(ask(tools=TOOLS, tool_choice="auto"))
    assert response.text == "I cannot help."
    assert response.completions[0].tool_calls == ()


async def test_a_reply_that_is_not_shaped_like_tool_calls_is_a_malformed_reply() -> None:
    message = {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"arguments": "{}"}}]}
    async with mock_model(lambda _: reply_body(message)) as (model, _):
        with pytest.raises(ModelError, match=r"malformed reply.*tool_calls\.0\.function\.name"):
            await model.request(ask(tools=TOOLS))


async def test_tool_calls_skip_the_json_schema_check_that_text_gets() -> None:
    message = {"content": None, "tool_calls": [call("get_weather", '{"city": "Rome"}')]}
    async with mock_model(lambda _: reply_body(message)) as (model, _):
        response = await model.request(ask(tools=TOOLS, json_schema={"type": "object"}))
    assert response.completions[0].tool_calls[0].name == "get_weather"


async def test_n_samples_with_tools_are_drawn_concurrently_when_the_server_ignores_n() -> None:
    def one_choice(body: dict[str, Any]) -> dict[str, Any]:
        assert [tool["function"]["name"] for tool in body["tools"]] == ["area_circle_calculate", "get_weather"]
        return reply_body(
            {"content": None, "tool_calls": [call("get_weather", json.dumps({"city": str(body["seed"])}))]}
        )

    async with mock_model(one_choice) as (model, bodies):
        response = await model.request(ask(n=3, seed=10, tools=TOOLS, tool_choice="required"))
    assert len(bodies) == 3
    assert all(body["tool_choice"] == "required" for body in bodies)
    cities = sorted(completion.tool_calls[0].parsed_arguments()["city"] for completion in response.completions)
    assert cities == ["10", "11", "12"]
    assert response.usage.calls == 3


async def test_a_stream_with_tools_is_one_request_whose_response_carries_the_calls() -> None:
    message = {"content": "Calling.", "tool_calls": [call("get_weather", '{"city": "Oslo"}')]}
    async with mock_model(lambda _: reply_body(message)) as (model, bodies):
        items = [item async for item in model.stream(ask(tools=TOOLS))]
    assert "stream" not in bodies[0]
    assert items[0] == "Calling."
    final = items[-1]
    assert isinstance(final, ModelResponse)
    assert final.completions[0].tool_calls == (ToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="call_1"),)


async def test_without_usage_the_estimate_counts_tool_specs_and_calls() -> None:
    message = {"content": None, "tool_calls": [call("get_weather", '{"city": "Oslo"}')]}
    async with mock_model(lambda _: reply_body(message, usage=False)) as (model, _):
        with_tools = await model.request(ask(tools=TOOLS))
    async with mock_model(lambda _: reply_body({"content": ""}, finish_reason="stop", usage=False)) as (model, _):
        plain = await model.request(ask())
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 40  # two specs of ~100 characters each
    assert with_tools.usage.completion_tokens > 0
    assert plain.usage.completion_tokens == 0
