"""Model-call cassettes: record against a model, replay without one, fail loudly on a miss."""

from __future__ import annotations

import json
from contextlib import aclosing
from pathlib import Path

import pytest

from agentdag import Agent, FunctionModel, tool
from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, ToolCall, ToolSpec
from agentdag.models import CassetteMissError, CassetteModel, ModelConfig, open_model
from agentdag.models.cassette import CassetteError, request_key
from agentdag.schemas import JOINER_SCHEMA


def request(text: str, **settings: object) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), settings=ModelSettings(**settings))  # type: ignore[arg-type]


def test_the_key_depends_on_messages_and_settings_only() -> None:
    assert request_key(request("hi")) == request_key(request("hi"))
    assert request_key(request("hi")) != request_key(request("hi "))
    assert request_key(request("hi", temperature=0.0)) != request_key(request("hi", temperature=0.5))
    spec = ToolSpec(name="f", description="d", parameters={"type": "object"})
    assert request_key(request("hi", tools=(spec,))) != request_key(request("hi"))
    assert request_key(request("hi", parallel_tool_calls=False)) != request_key(request("hi"))


def test_keys_of_requests_without_tools_are_those_recorded_before_tools_existed() -> None:
    settings = ModelSettings(temperature=0.0, seed=3, max_tokens=64)
    old = ModelRequest(messages=(Message("system", "be brief"), Message("user", "hi")), settings=settings)
    assert request_key(old) == "69ac974e8a40cf3bad9988f3167e6672566f5761aadf8471ba27f44179e3b266"


@pytest.mark.asyncio
async def test_tool_calls_are_recorded_and_replayed(tmp_path: Path) -> None:
    spec = ToolSpec(name="area.circle", description="area", parameters={"type": "object"})
    calls = (ToolCall(name="area.circle", arguments='{"r": 1}', id="c1"), ToolCall(name="area.circle", arguments="{"))
    recorder = CassetteModel.recording(FunctionModel(lambda _: Completion(text="", tool_calls=calls)), tmp_path / "c")
    recorded = await recorder.request(request("areas", tools=(spec,), tool_choice="required"))
    await recorder.aclose()
    replayed = await CassetteModel.replaying(tmp_path / "c").request(
        request("areas", tools=(spec,), tool_choice="required")
    )
    assert replayed == recorded
    assert replayed.completions[0].tool_calls == calls


@pytest.mark.asyncio
async def test_a_recorded_run_replays_without_the_model(tmp_path: Path) -> None:
    calls: list[str] = []

    @tool
    async def double(value: int) -> int:
        """Double a number."""
        return value * 2

    def reply(model_request: ModelRequest) -> str:
        calls.append("call")
        if model_request.settings.json_schema is JOINER_SCHEMA:
            answer = "42" if "-> 42" in model_request.messages[-1].content else "?"
            return json.dumps({"thought": "t", "answer": answer, "action": "finish", "reason": ""})
        return json.dumps({"thought": "t", "nodes": [{"id": 1, "tool": "double", "arguments": {"value": 21}}]})

    cassette = tmp_path / "calls.jsonl"
    recorder = CassetteModel.recording(FunctionModel(reply, name="scripted"), cassette)
    recorded = await Agent(tools=[double], model=recorder).run("Double 21.")
    await recorder.aclose()
    assert recorded.answer == "42" and len(calls) == 2
    assert recorder.recorded == 2

    player = CassetteModel.replaying(cassette)
    replayed = await Agent(tools=[double], model=player).run("Double 21.")
    assert replayed.answer == "42"
    assert len(calls) == 2, "replay never calls the model"
    assert player.hits == 2
    assert player.name == "scripted"

    with pytest.raises(CassetteMissError, match="no recorded response"):
        await Agent(tools=[double], model=player).run("Double 22.")


@pytest.mark.asyncio
async def test_a_stream_closed_early_replays_as_far_as_it_went(tmp_path: Path) -> None:
    model = FunctionModel(lambda _: "one two three four", name="scripted")
    cassette = tmp_path / "calls.jsonl"
    recorder = CassetteModel.recording(model, cassette)
    async with aclosing(recorder.stream(request("count"))) as stream:
        async for item in stream:
            assert isinstance(item, str)
            break
    await recorder.aclose()
    player = CassetteModel.replaying(cassette)
    async with aclosing(player.stream(request("count"))) as stream:
        items = [item async for item in stream]
    assert all(isinstance(item, str) for item in items), "no final response: the recording stopped early"
    response = await player.request(request("count"))
    assert isinstance(response, ModelResponse)
    assert response.completions[0].finish_reason == "length"


@pytest.mark.asyncio
async def test_identical_requests_replay_in_recorded_order(tmp_path: Path) -> None:
    counter = iter(range(100))
    recorder = CassetteModel.recording(FunctionModel(lambda _: f"sample {next(counter)}"), tmp_path / "c.jsonl")
    first = [(await recorder.request(request("roll", temperature=1.0))).text for _ in range(3)]
    await recorder.aclose()
    player = CassetteModel.replaying(tmp_path / "c.jsonl")
    replayed = [(await player.request(request("roll", temperature=1.0))).text for _ in range(4)]
    assert replayed == [*first, first[0]]


def test_a_damaged_cassette_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "k", "response": null, "chunks": ["a"]}\nnot json\n')
    with pytest.raises(CassetteError, match=r"bad.jsonl:2: not a recorded model call"):
        CassetteModel.replaying(path)
    with pytest.raises(CassetteError, match="no such cassette"):
        CassetteModel.replaying(tmp_path / "missing.jsonl")


@pytest.mark.asyncio
async def test_open_model_replays_from_the_environment_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = CassetteModel.recording(FunctionModel(lambda _: "recorded", name="scripted"), tmp_path / "c.jsonl")
    await recorder.request(request("hello"))
    await recorder.aclose()
    monkeypatch.setenv("AGENTDAG_REPLAY", str(tmp_path / "c.jsonl"))
    # The configured server does not exist: replay must not try to reach it.
    async with open_model(ModelConfig(base_url="http://127.0.0.1:9/v1")) as model:
        assert (await model.request(request("hello"))).text == "recorded"
    monkeypatch.setenv("AGENTDAG_RECORD", str(tmp_path / "other.jsonl"))
    with pytest.raises(CassetteError, match="choose one"):
        async with open_model(ModelConfig()):
            pass


def test_a_cli_run_recorded_against_a_server_replays_with_the_server_gone(
    openai_stub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentdag.cli import main

    example = (Path(__file__).parent.parent / "examples" / "openai_server.yaml").read_text()
    live, gone = tmp_path / "live.yaml", tmp_path / "gone.yaml"
    live.write_text(example.replace("http://127.0.0.1:8080/v1", openai_stub))
    gone.write_text(example.replace("http://127.0.0.1:8080/v1", "http://127.0.0.1:9/v1"))
    cassette = tmp_path / "calls.jsonl"

    monkeypatch.setenv("AGENTDAG_RECORD", str(cassette))  # the environment, as a benchmark would use it
    assert main(["run", str(live), "--json", "--no-state", "--no-trace"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    monkeypatch.delenv("AGENTDAG_RECORD")
    assert len(cassette.read_text().splitlines()) == 2, "the planner's and the joiner's calls"

    assert main(["run", str(gone), "--json", "--no-state", "--no-trace", "--replay", str(cassette)]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["answer"] == recorded["answer"] == "7 * 6 - 5 * 4 = 22, and 2 ** 10 = 1024."
    assert main(["run", str(gone), "--no-state", "--no-trace"]) == 1, "without the cassette the server is gone"
