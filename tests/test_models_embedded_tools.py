"""Native tool calls on the real embedded server: SmolLM2-135M's replies parsed into `Completion.tool_calls`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import jsonschema
import pytest

from agentdag.errors import ModelError
from agentdag.messages import Message, ModelRequest, ModelSettings, ToolSpec
from agentdag.models import EmbeddedServer, OpenAIModel, find_model_file
from agentdag.models._chat_template import SMOLLM2_DEFAULT_SYSTEM

pytest.importorskip("xllamacpp", reason="the embedded backend needs xllamacpp: pip install 'agentdag[embedded]'")
try:
    find_model_file()
except ModelError as missing:
    pytest.skip(f"no embedded model: {missing}", allow_module_level=True)

pytestmark = [pytest.mark.embedded, pytest.mark.anyio, pytest.mark.timeout(300)]

RADIUS = {"type": "object", "properties": {"radius": {"type": "number"}}, "required": ["radius"]}
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = (
    ToolSpec(name="area_circle.calculate", description="Calculate the area of a circle", parameters=RADIUS),
    ToolSpec(name="get_weather", description="Current weather of a city", parameters=CITY),
)
SCHEMAS = {spec.name: spec.parameters for spec in TOOLS}


def shown_calls(*calls: tuple[str, dict[str, Any]]) -> str:
    """An earlier assistant turn that called tools, as the template renders one (under the wire names)."""
    listed = ", ".join(json.dumps({"name": name, "arguments": arguments}) for name, arguments in calls)
    return f"<tool_call>[{listed}]</tool_call>"


# SmolLM2-135M was not trained to call tools: zero-shot it answers in prose; shown two calls, it calls.
EXAMPLES = (
    Message("user", "What's the weather in Oslo and in Lima?"),
    Message("assistant", shown_calls(("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Lima"}))),
    Message("user", "Area of circles of radius 1 and 2?"),
    Message(
        "assistant",
        shown_calls(("area_circle_calculate", {"radius": 1}), ("area_circle_calculate", {"radius": 2})),
    ),
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(slots=2, ctx_per_slot=2048) as running:
        yield running


@pytest.fixture
async def model(server: EmbeddedServer) -> AsyncIterator[OpenAIModel]:
    client = OpenAIModel(base_url=server.url, model=server.model_name, timeout_s=150, max_retries=0)
    try:
        yield client
    finally:
        await client.aclose()


async def test_parallel_tool_calls_come_back_parsed_under_their_own_names(model: OpenAIModel) -> None:
    settings = ModelSettings(
        tools=TOOLS, tool_choice="required", parallel_tool_calls=True, temperature=0.0, seed=1, max_tokens=120
    )
    question = Message("user", "What are the areas of circles with radius 3 and 5?")
    response = await model.request(ModelRequest(messages=(*EXAMPLES, question), settings=settings))
    completion = response.completions[0]
    assert completion.finish_reason == "stop"  # the server said "tool_calls"
    assert len(completion.tool_calls) >= 2, completion
    for call in completion.tool_calls:
        assert call.name in SCHEMAS  # "area_circle_calculate" on the wire, mapped back
        jsonschema.validate(call.parsed_arguments(), SCHEMAS[call.name])


async def render(server: EmbeddedServer, messages: list[dict[str, str]], **extra: Any) -> str:
    async with httpx2.AsyncClient(timeout=30) as client:
        reply = await client.post(f"{server.address}/apply-template", json={"messages": messages, **extra})
    reply.raise_for_status()
    prompt: str = reply.json()["prompt"]
    return prompt


async def test_conversations_without_tools_render_as_smollm2s_own_template(server: EmbeddedServer) -> None:
    # What the GGUF's own template renders: ChatML, with a default system message when there is none.
    assert await render(server, [{"role": "user", "content": "hi"}]) == (
        f"<|im_start|>system\n{SMOLLM2_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    assert await render(server, conversation) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n"
    )
    tool = {"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": CITY}}
    with_tools = await render(server, conversation, tools=[tool])
    assert with_tools.startswith("<|im_start|>system\nBe brief.\n\nYou can call these functions:\n<tools>")
    assert '"name": "get_weather"' in with_tools
    assert with_tools.count("<|im_start|>system") == 1
