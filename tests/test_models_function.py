from __future__ import annotations

import pytest

from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, ToolCall, ToolSpec, Usage
from agentdag.models import FunctionModel
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens


def request(text: str, **settings: object) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), settings=ModelSettings(**settings))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_plain_function_decides_the_reply_and_usage_is_counted() -> None:
    model = FunctionModel(lambda req: req.messages[-1].content.upper())
    response = await model.request(request("hello there", n=2))
    assert [completion.text for completion in response.completions] == ["HELLO THERE", "HELLO THERE"]
    assert response.usage.calls == 1
    assert response.usage.prompt_tokens == estimate_tokens("hello there")
    assert response.usage.completion_tokens == 2 * estimate_tokens("HELLO THERE")
    assert model.requests[0].settings.n == 2


@pytest.mark.asyncio
async def test_async_functions_and_full_responses_are_supported() -> None:
    async def reply(req: ModelRequest) -> ModelResponse:
        return ModelResponse(completions=(), usage=Usage(calls=1), model="x") if req.settings.n == 0 else "ok"  # type: ignore[return-value]

    assert (await FunctionModel(reply).request(request("a"))).text == "ok"


@pytest.mark.asyncio
async def test_streaming_yields_chunks_that_join_to_the_reply() -> None:
    model = FunctionModel(lambda _: "abcdefghij", chunk_size=3)
    items = [item async for item in model.stream(request("x"))]
    assert items[:-1] == ["abc", "def", "ghi", "j"]
    assert isinstance(items[-1], ModelResponse)
    assert items[-1].text == "abcdefghij"


@pytest.mark.asyncio
async def test_a_function_may_return_a_completion_with_tool_calls() -> None:
    spec = ToolSpec(name="math.factorial", description="n!", parameters={"type": "object"})
    calls = (
        ToolCall(name="math.factorial", arguments='{"n": 5}'),
        ToolCall(name="math.factorial", arguments='{"n": 6}'),
    )

    def reply(req: ModelRequest) -> Completion:
        assert req.settings.tools == (spec,)
        return Completion(text="", tool_calls=calls)

    model = FunctionModel(reply)
    response = await model.request(request("5! and 6!", n=2, tools=(spec,)))
    assert [completion.tool_calls for completion in response.completions] == [calls, calls]
    assert response.usage.prompt_tokens == estimate_prompt_tokens(model.requests[0].messages, tools=(spec,))
    assert response.usage.completion_tokens == 2 * estimate_tokens('math.factorial{"n": 5}math.factorial{"n": 6}')
    streamed = [item async for item in model.stream(request("5! and 6!", tools=(spec,)))]
    assert isinstance(streamed[-1], ModelResponse)
    assert streamed[-1].completions[0].tool_calls == calls


def test_usage_adds_up() -> None:
    total = Usage(calls=1, prompt_tokens=2, completion_tokens=3) + Usage(calls=2, prompt_tokens=1, completion_tokens=1)
    assert (total.calls, total.prompt_tokens, total.completion_tokens, total.total_tokens) == (3, 3, 4, 7)
