"""The fault catalogue, end to end through `Agent.run`: each fault has one documented outcome.

Every test checks the run's status and error, the failed node's error kind and message, that the outputs
of nodes that finished are kept (no lost results), and (autouse fixture) that no child process is left.
The table of faults, outcomes and tests is in the README's "Faults" section.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from agentdag.benchmarks.resources import child_pids

from agentdag import Agent, FunctionModel, PlannerConfig, RunResult, tool
from agentdag.events import Event, RunEvent
from agentdag.messages import ModelRequest
from agentdag.models import OpenAIModel
from agentdag.models.base import Model
from agentdag.schemas import JOINER_SCHEMA
from agentdag.toolsets.mcp import McpToolset
from agentdag.toolsets.mcp_config import McpServerConfig

SERVERS = Path(__file__).parent / "servers"
GUARD_S = 60  # no fault may hang a run; this only turns a hang into a failure instead of a stuck suite


@pytest.fixture(autouse=True)
def no_child_process_left() -> Iterator[None]:
    before = child_pids()
    yield
    assert child_pids() <= before, "a fault left a child process behind"


def plan(*nodes: dict[str, Any]) -> str:
    return json.dumps({"thought": "t", "nodes": list(nodes)})


def node(node_id: int, tool_name: str, depends_on: tuple[int, ...] = (), **arguments: Any) -> dict[str, Any]:
    return {"id": node_id, "tool": tool_name, "arguments": arguments, "depends_on": list(depends_on)}


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "answer": answer, "action": "finish", "reason": ""})


def is_joiner(request: ModelRequest) -> bool:
    return request.settings.json_schema is JOINER_SCHEMA


def scripted(planner_reply: str, *, joiner_reply: str = finish("ok")) -> FunctionModel:
    """A model that always plans `planner_reply` and always finishes with `joiner_reply`."""
    return FunctionModel(lambda request: joiner_reply if is_joiner(request) else planner_reply)


async def run(agent: Agent, task: str = "the task") -> RunResult:
    with anyio.fail_after(GUARD_S):
        return await agent.run(task)


@tool
async def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


# -- a tool raises ----------------------------------------------------------------------------------


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("even the message is broken")


def raise_runtime_error() -> None:
    raise RuntimeError("service down")


def raise_unprintable() -> None:
    raise UnprintableError


def call_sys_exit() -> None:
    sys.exit(3)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (raise_runtime_error, "RuntimeError: service down"),
        (raise_unprintable, "UnprintableError"),
        (call_sys_exit, "SystemExit: 3"),
    ],
)
async def test_a_tool_that_raises_fails_its_node_skips_its_dependents_and_keeps_other_results(
    behaviour: Callable[[], None], message: str
) -> None:
    @tool
    async def broken(key: str) -> str:
        behaviour()
        return key

    model = scripted(plan(node(1, "lookup", key="a"), node(2, "broken", key="b"), node(3, "lookup", (2,), key="$2")))
    result = await run(Agent(tools=[lookup, broken], model=model))
    assert result.status == "done"
    assert result.records[1].output == "value of a"
    error = result.records[2].error
    assert result.records[2].status == "failed"
    assert error is not None and (error.kind, error.message) == ("tool_error", message)
    skipped = result.records[3].error
    assert skipped is not None and (skipped.kind, skipped.cause) == ("dependency_failed", 2)
    joiner_prompt = model.requests[-1].messages[0].content
    assert f"FAILED: {message}" in joiner_prompt
    assert "value of a" in joiner_prompt


# -- a tool hangs past its timeout ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_async_tool_that_hangs_past_its_timeout_fails_with_timeout() -> None:
    @tool(timeout_s=0.1)
    async def hang(key: str) -> str:
        await anyio.sleep_forever()
        return key

    model = scripted(plan(node(1, "lookup", key="a"), node(2, "hang", key="b")))
    result = await run(Agent(tools=[lookup, hang], model=model))
    assert result.status == "done"
    assert result.records[1].output == "value of a"
    error = result.records[2].error
    assert error is not None and error.kind == "timeout"
    assert error.message == "tool 'hang' did not finish within 0.1 s"


@pytest.mark.asyncio
async def test_a_sync_tool_that_hangs_past_its_timeout_is_abandoned_and_the_run_goes_on() -> None:
    release = threading.Event()
    finished = threading.Event()

    @tool(timeout_s=0.1)
    def block(key: str) -> str:
        release.wait(GUARD_S)
        finished.set()
        return key

    model = scripted(plan(node(1, "block", key="b"), node(2, "lookup", (1,), key="$1"), node(3, "lookup", key="c")))
    try:
        result = await run(Agent(tools=[lookup, block], model=model))
    finally:
        release.set()
    assert result.status == "done"
    assert result.records[3].output == "value of c"
    error = result.records[1].error
    assert error is not None and (error.kind, error.message) == ("timeout", "tool 'block' did not finish within 0.1 s")
    assert result.records[2].status == "skipped"
    # The abandoned thread still ends once its blocking call returns; its result is dropped.
    assert await anyio.to_thread.run_sync(finished.wait, GUARD_S)


# -- a tool returns something JSON cannot carry -----------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def never_awaited() -> int:
    return 1


def numbers() -> Iterator[int]:
    yield from (1, 2)


REFUSED: list[tuple[str, Callable[[], object], str]] = [
    ("object", object, "not JSON-able: Unable to serialize unknown type: <class 'object'>"),
    ("bytes that are not UTF-8", lambda: b"\xff\xfe", "not JSON-able: 'utf-8' codec can't decode byte 0xff"),
    ("NaN", lambda: math.nan, "not JSON-able: NaN or infinity"),
    ("infinity inside a list", lambda: [1.0, math.inf], "not JSON-able: NaN or infinity"),
    ("a generator", numbers, "returned an iterator (generator), which is not JSON-able: return a list"),
    ("an endless iterator", itertools.count, "returned an iterator (count), which is not JSON-able"),
    ("a coroutine", never_awaited, "returned an awaitable (coroutine), which is not JSON-able: did the function"),
    ("an iterator in a dict", lambda: {"rows": iter([1])}, "returned an iterator (list_iterator)"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("what", "make", "message"), REFUSED, ids=[item[0] for item in REFUSED])
async def test_a_result_json_cannot_carry_fails_the_node_with_an_error_naming_the_tool(
    what: str, make: Callable[[], object], message: str
) -> None:
    @tool
    def produce() -> Any:
        return make()

    model = scripted(plan(node(1, "produce"), node(2, "lookup", key="a")))
    result = await run(Agent(tools=[lookup, produce], model=model))
    assert result.status == "done"
    assert result.records[2].output == "value of a"
    error = result.records[1].error
    assert result.records[1].status == "failed"
    assert error is not None and error.kind == "tool_error"
    assert error.message.startswith("ToolError: tool 'produce' returned ")
    assert message in error.message


COERCED: list[tuple[str, Callable[[], object], Any]] = [
    ("a set becomes a sorted-as-iterated list", lambda: {3, 1, 2}, [1, 2, 3]),
    ("a tuple becomes a list", lambda: (1, "a"), [1, "a"]),
    ("UTF-8 bytes become a string", lambda: "café".encode(), "café"),
    ("integer keys become strings", lambda: {1: "one"}, {"1": "one"}),
    ("a dataclass becomes an object", lambda: Point(1, 2), {"x": 1, "y": 2}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("what", "make", "expected"), COERCED, ids=[item[0] for item in COERCED])
async def test_a_result_with_a_json_form_is_converted(what: str, make: Callable[[], object], expected: Any) -> None:
    @tool
    def produce() -> Any:
        return make()

    result = await run(Agent(tools=[produce], model=scripted(plan(node(1, "produce")))))
    assert result.records[1].status == "done"
    assert result.records[1].output == expected


# -- an MCP server crashes mid-call -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_mcp_server_that_crashes_mid_call_is_restarted_and_only_the_unsafe_call_fails(
    tmp_path: Path,
) -> None:
    config = McpServerConfig(
        name="flaky", command=["python", str(SERVERS / "flaky.py")], env={"FLAKY_STATE": str(tmp_path)}
    )
    nodes = plan(
        node(1, "record", title="kept", year=2024),
        node(2, "crash_once_read", (1,), key="r"),  # crashes the server; read-only, so retried on the new one
        node(3, "crash_once_write", (2,), key="w"),  # crashes it again; it has side effects, so it fails
        node(4, "record", (3,), title="$3", year=1),
    )
    with anyio.fail_after(GUARD_S):
        async with McpToolset(config) as toolset:
            result = await run(Agent(tools=toolset.tools, model=scripted(nodes)))
            # The server is back for the next call, after its second restart.
            pid = await next(item for item in toolset.tools if item.name == "pid").call({})
            assert isinstance(pid, int)
            assert toolset.restarts == 2
    assert result.status == "done"
    assert result.records[1].output == {"title": "kept", "year": 2024, "tags": ["a", "b"]}
    assert result.records[2].output == "read r"
    error = result.records[3].error
    assert error is not None and error.kind == "tool_error"
    assert "crash_once_write: MCP server 'flaky' died during the call" in error.message
    assert "it may have side effects, so it is not retried" in error.message
    skipped = result.records[4].error
    assert skipped is not None and (skipped.kind, skipped.cause) == ("dependency_failed", 3)


@pytest.mark.asyncio
async def test_a_fifo_read_through_the_workspace_server_fails_its_node_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.txt").write_text("kept\n")
    os.mkfifo(tmp_path / "pipe")
    config = McpServerConfig(
        name="workspace", command=["python", "-m", "agentdag.tools.workspace", "--root", str(tmp_path)]
    )
    nodes = plan(node(1, "read_file", path="pipe"), node(2, "read_file", path="notes.txt"))
    async with McpToolset(config) as toolset:
        result = await run(Agent(tools=toolset.tools, model=scripted(nodes)))
        restarts = toolset.restarts
    # Before: the read blocked the server's event loop in open(); both nodes hung and the server, alive, was
    # never restarted.
    assert result.status == "done"
    error = result.records[1].error
    assert error is not None and error.kind == "tool_error"
    assert "'pipe' is not a regular file" in error.message
    assert result.records[2].output == "kept\n"
    assert restarts == 0


# -- the model server is down, slow, or returns malformed or truncated output -----------------------

BASE_URL = "http://llm.test/v1"
PLAN = plan(node(1, "lookup", key="a"), node(2, "lookup", key="b"))
FIRST_NODE_END = PLAN.index(', {"id": 2') + 1  # the text up to the end of node 1


def sse_event(content: str | None = None, finish_reason: str | None = None) -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}]
    event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": choices}
    return f"data: {json.dumps(event)}\n\n".encode()


def completion(text: str) -> httpx2.Response:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
    return httpx2.Response(200, json=body)


def stream_of(chunks: AsyncIterator[bytes]) -> httpx2.Response:
    return httpx2.Response(200, content=chunks, headers={"content-type": "text/event-stream"})


def served(
    planner: Callable[[], httpx2.Response], joiner: Callable[[], httpx2.Response], **options: Any
) -> tuple[OpenAIModel, list[dict[str, Any]]]:
    """An OpenAI-compatible model over a mock transport: streamed requests are the planner's."""
    bodies: list[dict[str, Any]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return planner() if body.get("stream") else joiner()

    settings: dict[str, Any] = {"timeout_s": 5.0, "max_retries": 0, "retry_backoff_s": 0.0} | options
    return OpenAIModel(base_url=BASE_URL, model="m", transport=httpx2.MockTransport(handle), **settings), bodies


async def run_on(model: Model) -> RunResult:
    try:
        return await run(Agent(tools=[lookup], model=model))
    finally:
        await model.aclose()


@pytest.mark.asyncio
async def test_a_model_server_that_is_down_fails_the_run_with_one_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAIModel(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, retry_backoff_s=0.0)
    result = await run_on(model)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(f"model call failed: openai-compatible server at http://127.0.0.1:{port}/v1: ")
    assert "cannot connect" in result.error and "is the server running?" in result.error
    assert result.records == {}


@pytest.mark.asyncio
async def test_a_model_server_that_never_answers_hits_the_deadline() -> None:
    async def silent() -> AsyncIterator[bytes]:
        await anyio.sleep_forever()
        yield b""

    model, bodies = served(lambda: stream_of(silent()), lambda: completion(finish("ok")), timeout_s=0.2)
    result = await run_on(model)
    assert result.status == "failed"
    assert result.error is not None and result.error.endswith(
        "no reply within 0.2s; the server may be overloaded or the model too slow: "
        "raise model.timeout_s or lower max_tokens"
    )
    assert len(bodies) == 1
    assert result.records == {}


def gated_stream(first_node_done: anyio.Event, then: str) -> AsyncIterator[bytes]:
    """Stream node 1 of the plan, wait until that node has finished, then `stall`, `drop` or `cut`."""

    async def chunks() -> AsyncIterator[bytes]:
        yield sse_event(PLAN[:FIRST_NODE_END])
        await first_node_done.wait()
        if then == "stall":
            await anyio.sleep_forever()
        if then == "drop":
            raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body")
        yield sse_event(PLAN[FIRST_NODE_END : FIRST_NODE_END + 12])  # "cut": ends cleanly mid-plan

    return chunks()


def watch_node_one(done: anyio.Event) -> Callable[[Event], None]:
    def sink(event: Event) -> None:
        if not isinstance(event, RunEvent) and event.kind == "done" and event.node_id == 1:
            done.set()

    return sink


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("then", "cause"),
    [
        ("stall", "no chunk within 0.3s"),
        ("drop", "RemoteProtocolError: peer closed connection without sending complete message body"),
    ],
)
async def test_a_stream_that_stalls_or_drops_fails_the_run_and_keeps_the_finished_node(then: str, cause: str) -> None:
    done = anyio.Event()
    model, _ = served(lambda: stream_of(gated_stream(done, then)), lambda: completion(finish("ok")), timeout_s=0.3)
    agent = Agent(tools=[lookup], model=model, on_event=[watch_node_one(done)])
    try:
        result = await run(agent)
    finally:
        await model.aclose()
    assert result.status == "failed"
    assert result.error == (
        f"model call failed: openai-compatible server at {BASE_URL}: the stream broke off after "
        f"{FIRST_NODE_END} characters ({cause}); the server stopped or dropped the connection"
    )
    assert result.records[1].status == "done"
    assert result.records[1].output == "value of a"
    assert 2 not in result.records


@pytest.mark.asyncio
async def test_a_stream_cut_off_cleanly_runs_its_complete_nodes_and_the_run_recovers() -> None:
    done = anyio.Event()
    model, bodies = served(lambda: stream_of(gated_stream(done, "cut")), lambda: completion(finish("from node 1")))
    agent = Agent(tools=[lookup], model=model, on_event=[watch_node_one(done)])
    try:
        result = await run(agent)
    finally:
        await model.aclose()
    assert result.status == "done"
    assert result.answer == "from node 1"
    assert list(result.records) == [1]
    assert result.records[1].output == "value of a"
    assert "round 0: the plan was cut off at the token limit; ran the complete nodes" in result.notes
    assert [body.get("stream", False) for body in bodies] == [True, False]  # no repair call: node 1 stands


@pytest.mark.asyncio
async def test_a_malformed_reply_fails_the_run_and_keeps_every_finished_node() -> None:
    async def whole_plan() -> AsyncIterator[bytes]:
        yield sse_event(PLAN, finish_reason="stop")
        yield b"data: [DONE]\n\n"

    def html() -> httpx2.Response:
        return httpx2.Response(200, text="<html>502 bad gateway</html>", headers={"content-type": "application/json"})

    model, _ = served(lambda: stream_of(whole_plan()), html)
    result = await run_on(model)
    assert result.status == "failed"
    assert result.error is not None
    assert "returned a malformed reply: the reply is not JSON" in result.error
    assert "body starts with '<html>502 bad gateway" in result.error
    assert {node_id: record.output for node_id, record in result.records.items()} == {
        1: "value of a",
        2: "value of b",
    }


@pytest.mark.asyncio
async def test_a_server_error_is_retried_then_fails_the_run_with_the_status() -> None:
    def error() -> httpx2.Response:
        return httpx2.Response(500, json={"error": {"message": "CUDA out of memory"}})

    model, bodies = served(error, error, max_retries=2)
    result = await run_on(model)
    assert result.status == "failed"
    assert result.error == (
        f"model call failed: openai-compatible server at {BASE_URL}: failed with HTTP 500: CUDA out of memory"
    )
    assert len(bodies) == 3  # the first attempt and two retries
    assert result.records == {}


# -- the planner keeps producing invalid plans ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_planner_that_never_produces_a_valid_plan_is_repaired_a_bounded_number_of_times() -> None:
    def reply(request: ModelRequest) -> str:
        if is_joiner(request):
            return json.dumps({"thought": "t", "answer": "unknown", "action": "replan", "reason": "no data"})
        return plan(node(1, "no_such_tool", key="a"))

    events: list[Event] = []
    model = FunctionModel(reply)
    config = PlannerConfig(max_repairs=2, max_replans=5)
    result = await run(Agent(tools=[lookup], model=model, planner=config, on_event=[events.append]))
    planner_calls = [request for request in model.requests if not is_joiner(request)]
    # Round 0: one plan and two repairs; the joiner asks for a replan; round 1 again adds nothing, which
    # ends the run (an empty replan is never asked again, whatever max_replans allows).
    assert len(planner_calls) == 6
    assert result.usage["joiner"].calls == 1
    assert [event.kind for event in events if isinstance(event, RunEvent)].count("fallback") == 2
    assert result.records == {}
    assert "round 0: the plan was still invalid after 2 repair(s); no valid node" in result.notes
    assert "replan 1 added no nodes; answered with the joiner's best answer" in result.notes
    repair = planner_calls[1].messages[-1].content
    assert "unknown tool 'no_such_tool'" in repair
    # The joiner's best answer is kept, but no tool ran: the run failed to plan, and the notes say why.
    assert (result.status, result.answer) == ("failed", "unknown")
    assert result.error is not None and result.error.startswith("failed to plan: no node ran")


@pytest.mark.asyncio
async def test_a_planner_that_never_produces_a_valid_plan_with_the_direct_fallback_answers_without_tools() -> None:
    def reply(request: ModelRequest) -> str:
        if request.settings.json_schema is None:
            return "Paris"
        return "I cannot write JSON"

    model = FunctionModel(reply)
    result = await run(Agent(tools=[lookup], model=model, planner=PlannerConfig(max_repairs=1, fallback="direct")))
    assert (result.status, result.answer, result.records) == ("failed", "Paris", {})  # unchecked by any tool
    assert len(model.requests) == 3  # a plan, one repair, the direct answer
    assert "no valid plan: answered directly without tools" in result.notes
