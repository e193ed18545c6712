"""The embedded llama.cpp server, for real: SmolLM2-135M on a loopback port, native tool calls included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jsonschema
import pytest
from support import require_embedded_model

from agentdag.errors import ModelError
from agentdag.messages import Message, ModelRequest, ModelResponse, ModelSettings, ToolSpec
from agentdag.models import EmbeddedServer, ModelConfig, OpenAIModel, open_model, serve_forever
from agentdag.models._chat_template import SMOLLM2_DEFAULT_SYSTEM
from agentdag.models._server_state import ServerState, find_running_server, read_server_state, write_server_state

MODEL_PATH = require_embedded_model()

pytestmark = [pytest.mark.embedded, pytest.mark.anyio, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read or write the user's real server state file."""
    path = tmp_path / "server.json"
    monkeypatch.setenv("AGENTDAG_SERVER_STATE", str(path))
    return path


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(slots=4, ctx_per_slot=2048) as running:
        yield running


@pytest.fixture
async def model(server: EmbeddedServer) -> AsyncIterator[OpenAIModel]:
    client = OpenAIModel(base_url=server.url, model=server.model_name, timeout_s=150, max_retries=0)
    try:
        yield client
    finally:
        await client.aclose()


def ask(text: str, **settings: object) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), settings=ModelSettings(**settings))  # type: ignore[arg-type]


def native_thread_ids() -> set[int]:
    """Threads of this process that Python did not start (llama.cpp's), by kernel id."""
    python_threads = {thread.native_id for thread in threading.enumerate()}
    return {int(name) for name in os.listdir("/proc/self/task")} - python_threads


def port_is_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, int(port))) == 0


async def test_chat(model: OpenAIModel) -> None:
    response = await model.request(ask("What is the capital of France? Answer in one word.", max_tokens=16))
    assert response.text.strip()
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0
    assert response.model == model.name


async def test_n_samples(model: OpenAIModel) -> None:
    response = await model.request(ask("Name a color.", n=3, temperature=1.0, seed=5, max_tokens=12))
    assert len(response.completions) == 3
    assert all(completion.text for completion in response.completions)


async def test_logprobs(model: OpenAIModel) -> None:
    response = await model.request(ask("Say hi.", max_tokens=8, logprobs=True, temperature=0))
    logprobs = response.completions[0].logprobs
    assert logprobs
    assert all(value <= 0.0 for value in logprobs)


async def test_json_schema_output_parses_and_matches(model: OpenAIModel) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response = await model.request(ask("Describe Paris as JSON.", json_schema=schema, max_tokens=80, seed=1))
    assert response.completions[0].finish_reason == "stop"
    jsonschema.validate(json.loads(response.text), schema)


async def test_truncation_is_reported(model: OpenAIModel) -> None:
    response = await model.request(ask("Write a long story about a dragon.", max_tokens=4))
    assert response.completions[0].finish_reason == "length"


async def test_streaming_yields_several_chunks(model: OpenAIModel) -> None:
    parts = [part async for part in model.stream(ask("Count from one to ten in words.", max_tokens=40))]
    chunks, final = parts[:-1], parts[-1]
    assert len(chunks) > 3
    assert isinstance(final, ModelResponse)
    assert final.text == "".join(str(chunk) for chunk in chunks)
    assert final.usage.completion_tokens > 3


async def test_four_concurrent_calls(model: OpenAIModel) -> None:
    texts: dict[int, str] = {}

    async def call(index: int) -> None:
        texts[index] = (await model.request(ask(f"Give one fact about the number {index}.", max_tokens=24))).text

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(call, index)
    assert sorted(texts) == [0, 1, 2, 3]
    assert all(texts.values())


async def test_context_overflow_is_a_clear_error(model: OpenAIModel) -> None:
    with pytest.raises(ModelError, match="does not fit the model's context window") as caught:
        await model.request(ask("word " * 3000, max_tokens=4))
    assert not caught.value.retryable


async def test_open_model_reuses_a_recorded_server(server: EmbeddedServer) -> None:
    record(server, pid=os.getpid())
    started = time.perf_counter()
    async with open_model(ModelConfig()) as model:
        assert isinstance(model, OpenAIModel)
        assert model.base_url == server.url
        assert (await model.request(ask("Hi", max_tokens=4))).text
    assert time.perf_counter() - started < 5  # no model was loaded
    assert port_is_open(server.url)  # closing the run leaves the shared server running


def record(server: EmbeddedServer, *, pid: int) -> None:
    write_server_state(
        ServerState(
            url=server.url,
            pid=pid,
            model=server.model_name,
            model_path=str(MODEL_PATH),
            slots=server.slots,
            ctx_per_slot=server.ctx_per_slot,
            threads=server.threads,
        )
    )


async def test_serve_refuses_while_a_recorded_server_runs(server: EmbeddedServer) -> None:
    record(server, pid=os.getpid())
    with pytest.raises(ModelError, match="already running"):
        await serve_forever(ModelConfig(), on_ready=lambda url: None)


async def test_a_stale_state_file_is_ignored_and_removed(private_state_file: Path, server: EmbeddedServer) -> None:
    finished = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    record(server, pid=int(finished.stdout))
    assert await find_running_server() is None
    assert not await anyio.Path(private_state_file).exists()


async def test_clean_shutdown_leaves_no_port_or_threads() -> None:
    before = native_thread_ids()
    async with EmbeddedServer(slots=1, ctx_per_slot=512, threads=1) as small:
        url = small.url
        assert port_is_open(url)
        assert len(native_thread_ids() - before) > 0
    assert not port_is_open(url)
    # llama.cpp keeps one process-wide log thread from the first server on; none belongs to this one.
    assert native_thread_ids() - before == set()


async def test_cancellation_stops_the_server() -> None:
    urls: list[str] = []
    with anyio.move_on_after(60) as scope:
        async with EmbeddedServer(slots=1, ctx_per_slot=512, threads=1) as small:
            urls.append(small.url)
            scope.cancel()
            await anyio.sleep_forever()
    assert urls
    assert not port_is_open(urls[0])


def test_serve_forever_records_state_and_cleans_up_on_ctrl_c(private_state_file: Path) -> None:
    script = textwrap.dedent(
        """
        import anyio
        from agentdag.models import ModelConfig, serve_forever
        anyio.run(serve_forever, ModelConfig(slots=1, ctx_per_slot=512), lambda url: print(url, flush=True))
        """
    )
    env = os.environ | {"AGENTDAG_SERVER_STATE": str(private_state_file)}
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        state = read_server_state()
        assert state is not None
        assert (state.url, state.pid) == (url, process.pid)
        assert port_is_open(url)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "KeyboardInterrupt" in stderr
    assert not private_state_file.exists()
    assert not port_is_open(url)


# -- native tool calls ------------------------------------------------------------------------------------

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
