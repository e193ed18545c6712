from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable

import anyio
import pytest

from agentdag import Agent, FunctionModel, PlannerConfig, tool
from agentdag.events import Event, NodeEvent, RunEvent
from agentdag.messages import ModelRequest, ModelResponse
from agentdag.models.base import Model
from agentdag.schemas import JOINER_SCHEMA, create_plan_schema, parse_decision

LOOKUPS: list[str] = []


@tool(read_only=True)
async def search(query: str) -> dict[str, object]:
    """Look a query up (it changes nothing, so a repeated lookup may reuse the first one's output)."""
    LOOKUPS.append(query)
    return {"query": query, "hits": [f"{query} result"], "length": len(query)}


@tool
def calculate(expression: str) -> float:
    """Evaluate arithmetic."""
    from agentdag.tools.calculator import evaluate

    return evaluate(expression)


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "answer": answer, "action": "finish", "reason": ""})


def replan(reason: str) -> str:
    return json.dumps({"thought": "more", "answer": "unknown", "action": "replan", "reason": reason})


def plan(*nodes: dict[str, object]) -> str:
    return json.dumps({"thought": "t", "nodes": list(nodes)})


def role(request: ModelRequest) -> str:
    return "joiner" if request.settings.json_schema is JOINER_SCHEMA else "planner"


class Script:
    """Replies by role, in order: planner replies for planner calls, joiner replies for joiner calls."""

    def __init__(self, planner: list[str], joiner: list[str]) -> None:
        self.replies = {"planner": list(planner), "joiner": list(joiner)}
        self.seen: list[tuple[str, ModelRequest]] = []

    def __call__(self, request: ModelRequest) -> str:
        kind = role(request)
        self.seen.append((kind, request))
        return self.replies[kind].pop(0)


@pytest.fixture(autouse=True)
def clear_lookups() -> None:
    LOOKUPS.clear()


@pytest.mark.asyncio
async def test_a_valid_plan_runs_in_parallel_and_the_joiner_answers() -> None:
    script = Script(
        [
            plan(
                {"id": 1, "tool": "search", "arguments": {"query": "a"}, "depends_on": []},
                {"id": 2, "tool": "search", "arguments": {"query": "b"}, "depends_on": []},
                {"id": 3, "tool": "calculate", "arguments": {"expression": "${1.length} + ${2.length}"}},
            )
        ],
        [finish("2")],
    )
    result = await Agent(tools=[search, calculate], model=FunctionModel(script)).run("add lengths")
    assert result.status == "done"
    assert result.answer == "2"
    assert result.records[3].arguments == {"expression": "1 + 1"}
    assert result.records[3].output == 2
    assert result.usage["planner"].calls == 1
    assert result.usage["joiner"].calls == 1
    assert result.model_calls == 2
    assert result.replans == ()
    joiner_prompt = script.seen[-1][1].messages[0].content
    assert "[1] search" in joiner_prompt
    assert "a result" in joiner_prompt


class SlowStreamingModel(Model):
    """Streams a fixed plan in chunks and waits for the test between chunks after the first node."""

    def __init__(self, text: str, gate: anyio.Event, joiner: Callable[[ModelRequest], str]) -> None:
        self.text = text
        self.gate = gate
        self.joiner = joiner
        self.name = "slow"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await FunctionModel(self.joiner).request(request)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        cut = self.text.index("}", self.text.index('"depends_on"')) + 1
        yield self.text[:cut]
        await self.gate.wait()
        yield self.text[cut:]
        yield await FunctionModel(lambda _: self.text).request(request)


@pytest.mark.asyncio
async def test_streamed_node_starts_before_the_planner_finishes() -> None:
    gate = anyio.Event()
    events: list[Event] = []

    def release_on_start(event: Event) -> None:
        events.append(event)
        if isinstance(event, NodeEvent) and event.kind == "done" and event.node_id == 1:
            gate.set()

    text = plan(
        {"id": 1, "tool": "search", "arguments": {"query": "first"}, "depends_on": []},
        {"id": 2, "tool": "search", "arguments": {"query": "$1"}, "depends_on": [1]},
    )
    model = SlowStreamingModel(text, gate, lambda _: finish("ok"))
    result = await Agent(tools=[search], model=model, on_event=[release_on_start]).run("x")
    assert result.status == "done"
    kinds = [(type(event).__name__, event.kind) for event in events]
    # Node 1 started and finished while the planner was still streaming (its "planned" event comes later).
    assert kinds.index(("NodeEvent", "done")) < kinds.index(("RunEvent", "planned"))
    assert result.first_dispatch_s is not None
    assert result.records[2].arguments == {"query": {"query": "first", "hits": ["first result"], "length": 5}}


@pytest.mark.asyncio
async def test_an_invalid_plan_is_repaired_with_the_exact_problems() -> None:
    script = Script(
        [
            plan(
                {"id": 1, "tool": "search", "arguments": {"query": "ok"}, "depends_on": []},
                {"id": 2, "tool": "serch", "arguments": {"query": "typo"}, "depends_on": []},
                {"id": 3, "tool": "search", "arguments": {"query": "$3"}, "depends_on": []},
            ),
            plan(
                {"id": 1, "tool": "search", "arguments": {"query": "ok"}, "depends_on": []},
                {"id": 2, "tool": "search", "arguments": {"query": "fixed"}, "depends_on": []},
                {"id": 3, "tool": "search", "arguments": {"query": "$2"}, "depends_on": [2]},
            ),
        ],
        [finish("done")],
    )
    result = await Agent(tools=[search], model=FunctionModel(script)).run("x")
    assert result.status == "done"
    repair_request = script.seen[1][1]
    feedback = repair_request.messages[-1].content
    assert "node 2: unknown tool 'serch'; did you mean 'search'?" in feedback
    assert "node 3: reference $3 names the node itself" in feedback
    assert "Nodes 1 are valid and already running" in feedback
    assert LOOKUPS.count("ok") == 1  # node 1 was not run twice
    assert sorted(result.records) == [1, 2, 3]
    assert any("repaired after 1 attempt" in note for note in result.notes)


@pytest.mark.asyncio
async def test_after_the_last_repair_the_valid_part_runs_and_the_result_says_so() -> None:
    bad = plan(
        {"id": 1, "tool": "search", "arguments": {"query": "good"}, "depends_on": []},
        {"id": 2, "tool": "nope", "arguments": {}, "depends_on": []},
    )
    script = Script([bad, bad], [finish("partial")])
    agent = Agent(tools=[search], model=FunctionModel(script), planner=PlannerConfig(max_repairs=1))
    result = await agent.run("x")
    assert result.status == "done"
    assert list(result.records) == [1]
    assert any("still invalid after 1 repair" in note for note in result.notes)


@pytest.mark.asyncio
async def test_direct_fallback_answers_without_tools_when_no_node_is_valid() -> None:
    def reply(request: ModelRequest) -> str:
        if request.settings.json_schema is not None:
            return "this is not a plan at all"
        return "Paris"

    agent = Agent(tools=[search], model=FunctionModel(reply), planner=PlannerConfig(max_repairs=1, fallback="direct"))
    result = await agent.run("capital of France?")
    # The answer is kept, but no tool checked it: a run in which no node ran is never done.
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("failed to plan: no node ran")
    assert result.answer == "Paris"
    assert result.records == {}
    assert any("answered directly" in note for note in result.notes)


@pytest.mark.asyncio
async def test_a_run_whose_plans_never_ran_a_node_fails_to_plan_even_when_the_joiner_answers() -> None:
    # Every plan repeats itself into nothing runnable; the joiner still writes an answer (as SmolLM2 does).
    script = Script(["not a plan", "still not a plan", "nor this"], [finish("42")])
    agent = Agent(tools=[search], model=FunctionModel(script), planner=PlannerConfig(max_repairs=1, max_replans=0))
    result = await agent.run("What is 6 * 7?")
    assert (result.status, result.answer, result.records) == ("failed", "42", {})
    assert result.error is not None and result.error.startswith("failed to plan")


@pytest.mark.asyncio
async def test_a_node_that_ran_and_failed_still_counts_as_planned() -> None:
    @tool
    def explode(reason: str) -> str:
        """Always fails."""
        raise ValueError(reason)

    script = Script(
        [plan({"id": 1, "tool": "explode", "arguments": {"reason": "boom"}, "depends_on": []})], [finish("?")]
    )
    result = await Agent(tools=[explode], model=FunctionModel(script)).run("x")
    assert result.records[1].status == "failed"
    assert (result.status, result.error) == ("done", None)  # the joiner saw the failure and answered


@pytest.mark.asyncio
async def test_truncated_plan_is_reported_and_repaired() -> None:
    full = plan({"id": 1, "tool": "search", "arguments": {"query": "q"}, "depends_on": []})
    script = Script([full[:25], full], [finish("ok")])
    result = await Agent(tools=[search], model=FunctionModel(script)).run("x")
    assert result.status == "done"
    assert "cut off" in script.seen[1][1].messages[-1].content


@pytest.mark.asyncio
async def test_replan_reuses_earlier_results_and_keeps_ids_global() -> None:
    script = Script(
        [
            plan({"id": 1, "tool": "search", "arguments": {"query": "first"}, "depends_on": []}),
            plan(
                {"id": 1, "tool": "search", "arguments": {"query": "first"}, "depends_on": []},
                {"id": 2, "tool": "search", "arguments": {"query": "first"}, "depends_on": []},
                {"id": 3, "tool": "search", "arguments": {"query": "second ${2.query}"}, "depends_on": []},
            ),
        ],
        [replan("need the second fact"), finish("both")],
    )
    result = await Agent(tools=[search], model=FunctionModel(script)).run("x")
    assert result.status == "done"
    assert result.answer == "both"
    assert LOOKUPS == ["first", "second first"]  # the finished call was never run again
    assert len(result.replans) == 1
    assert result.replans[0].reason == "need the second fact"
    replan_prompt = script.seen[2][1].messages[-1].content
    assert "[1] search" in replan_prompt
    assert "numbered from 2" in replan_prompt
    assert any("1 planned node(s) repeated earlier calls" in note for note in result.notes)


@pytest.mark.asyncio
async def test_replanning_stops_at_max_replans_with_the_best_answer() -> None:
    script = Script(
        [
            plan({"id": index, "tool": "search", "arguments": {"query": f"q{index}"}, "depends_on": []})
            for index in (1, 2)
        ],
        [replan("more"), replan("still more")],
    )
    agent = Agent(tools=[search], model=FunctionModel(script), planner=PlannerConfig(max_replans=1))
    result = await agent.run("x")
    assert result.status == "done"
    assert result.answer == "unknown"
    assert len(result.replans) == 1
    assert any("max_replans (1) reached" in note for note in result.notes)


@pytest.mark.asyncio
async def test_token_budget_stops_replanning() -> None:
    script = Script(
        [plan({"id": 1, "tool": "search", "arguments": {"query": "q"}, "depends_on": []})],
        [replan("more")],
    )
    agent = Agent(tools=[search], model=FunctionModel(script), planner=PlannerConfig(max_total_tokens=10))
    result = await agent.run("x")
    assert result.replans == ()
    assert any("token budget (10) spent" in note for note in result.notes)
    assert len([kind for kind, _ in script.seen if kind == "planner"]) == 1


@pytest.mark.asyncio
async def test_time_budget_cancels_running_nodes_and_fails_cleanly() -> None:
    @tool
    async def slow(query: str) -> str:
        await anyio.sleep(30)
        return query

    script = Script([plan({"id": 1, "tool": "slow", "arguments": {"query": "q"}, "depends_on": []})], [])
    agent = Agent(tools=[slow], model=FunctionModel(script), planner=PlannerConfig(max_seconds=0.2))
    result = await agent.run("x")
    assert result.status == "failed"
    assert result.error is not None and "time budget" in result.error
    assert result.records[1].status == "cancelled"


@pytest.mark.asyncio
async def test_a_failing_tool_never_hangs_the_run_and_the_joiner_sees_the_error() -> None:
    @tool
    async def broken(query: str) -> str:
        raise RuntimeError("service down")

    script = Script(
        [
            plan(
                {"id": 1, "tool": "broken", "arguments": {"query": "q"}, "depends_on": []},
                {"id": 2, "tool": "search", "arguments": {"query": "$1"}, "depends_on": [1]},
                {"id": 3, "tool": "search", "arguments": {"query": "other"}, "depends_on": []},
            )
        ],
        [finish("partial")],
    )
    result = await Agent(tools=[broken, search], model=FunctionModel(script)).run("x")
    assert result.status == "done"
    statuses = {node_id: record.status for node_id, record in result.records.items()}
    assert statuses == {1: "failed", 2: "skipped", 3: "done"}
    joiner_prompt = script.seen[-1][1].messages[0].content
    assert "FAILED: RuntimeError: service down" in joiner_prompt
    assert "SKIPPED" in joiner_prompt


@pytest.mark.asyncio
async def test_a_model_failure_becomes_a_failed_result() -> None:
    from agentdag.errors import ModelError

    def down(request: ModelRequest) -> str:
        raise ModelError("connection refused", source="test server")

    result = await Agent(tools=[search], model=FunctionModel(down)).run("x")
    assert result.status == "failed"
    assert result.error == "model call failed: test server: connection refused"


@pytest.mark.asyncio
async def test_llmcompiler_style_plans_stream_and_pass_context_lists() -> None:
    text = (
        '1. search("cheetah")\n2. search("falcon")\nThought: compare\n'
        '3. calculate("${1.length} * 10", ["$2"])\n4. join()<END_OF_PLAN>'
    )
    script = Script([text], [finish("done")])
    agent = Agent(tools=[search, calculate], model=FunctionModel(script), planner=PlannerConfig(style="llmcompiler"))
    result = await agent.run("x")
    assert result.status == "done"
    assert result.records[3].node.depends_on == (2,)
    assert result.records[3].node.thought == "compare"
    assert result.records[3].output == 70
    planner_request = script.seen[0][1]
    assert planner_request.settings.stop == ("<END_OF_PLAN>",)
    assert planner_request.settings.json_schema is None


@pytest.mark.asyncio
async def test_run_events_trace_the_loop() -> None:
    events: list[Event] = []
    script = Script([plan({"id": 1, "tool": "search", "arguments": {"query": "q"}, "depends_on": []})], [finish("a")])
    await Agent(tools=[search], model=FunctionModel(script), on_event=[events.append]).run("x")
    kinds = [event.kind for event in events if isinstance(event, RunEvent)]
    assert kinds == ["planning", "planned", "joining", "finished"]


def test_plan_schema_has_one_variant_per_tool_and_allows_references() -> None:
    schema = create_plan_schema([search, calculate])
    variants = schema["properties"]["nodes"]["items"]["anyOf"]
    assert [variant["properties"]["tool"]["const"] for variant in variants] == ["search", "calculate"]
    query = variants[0]["properties"]["arguments"]["properties"]["query"]["anyOf"]
    assert query[0] == {"type": "string"}
    assert any(item.get("type") == "object" for item in query)


@pytest.mark.parametrize(
    ("text", "action", "answer", "reason"),
    [
        (finish("42"), "finish", "42", ""),
        ('{"action": "replan", "answer": "?", "reason": "missing X"}', "replan", "?", "missing X"),
        ("Thought: ok\nAction: Finish(Paris)", "finish", "Paris", ""),
        ("Replan(need more)", "replan", "", "need more"),
    ],
)
def test_parse_decision(text: str, action: str, answer: str, reason: str) -> None:
    decision = parse_decision(text)
    assert decision is not None
    assert (decision.action, decision.answer, decision.reason) == (action, answer, reason)


def test_a_cut_off_decision_keeps_the_answer_it_wrote() -> None:
    decision = parse_decision('{"thought": "x", "answer": "Paris \\"city\\"", "action": "fin')
    assert decision is not None
    assert (decision.action, decision.answer) == ("finish", 'Paris "city"')
    assert parse_decision('{"thought": "rambling on and on') is None


def test_parse_decision_rejects_other_text() -> None:
    assert parse_decision("I think the answer is 4") is None


@pytest.mark.asyncio
async def test_a_planner_that_repeats_itself_is_cut_short_and_its_repeats_reuse_the_first_call() -> None:
    same = {"tool": "search", "arguments": {"query": "loop"}, "depends_on": []}
    looping = plan(*({"id": index, **same} for index in range(1, 12)))
    model = FunctionModel(Script([looping], [finish("x")]), chunk_size=len(looping) // 11)
    result = await Agent(tools=[search], model=model).run("x")
    assert result.status == "done"
    assert LOOKUPS == ["loop"]
    assert list(result.records) == [1]
    assert any("repeated earlier nodes 3 times in a row; stopped reading" in note for note in result.notes)
    assert model.requests[0].settings.json_schema is not None


@pytest.mark.asyncio
async def test_a_truncated_plan_keeps_its_complete_nodes_without_a_repair() -> None:
    from agentdag.messages import Completion, ModelResponse, Usage

    full = plan(
        {"id": 1, "tool": "search", "arguments": {"query": "kept"}, "depends_on": []},
        {"id": 2, "tool": "search", "arguments": {"query": "lost"}, "depends_on": []},
    )
    cut = full[: full.index('"lost"')]

    def reply(request: ModelRequest) -> ModelResponse | str:
        if role(request) == "joiner":
            return finish("ok")
        return ModelResponse(
            completions=(Completion(text=cut, finish_reason="length"),), usage=Usage(calls=1), model="m"
        )

    result = await Agent(tools=[search], model=FunctionModel(reply)).run("x")
    assert LOOKUPS == ["kept"]
    assert any("cut off at the token limit; ran the complete nodes" in note for note in result.notes)
    assert result.usage["planner"].calls == 1


@pytest.mark.asyncio
async def test_an_llmcompiler_plan_the_server_ended_early_counts_as_cut_off() -> None:
    # The text has only complete lines, so the parser alone would take it for the whole plan.
    from agentdag.messages import Completion, ModelResponse, Usage

    def reply(request: ModelRequest) -> ModelResponse | str:
        if role(request) == "joiner":
            return finish("ok")
        text = '1. search("kept")\n'
        return ModelResponse(
            completions=(Completion(text=text, finish_reason="error"),), usage=Usage(calls=1), model="m"
        )

    agent = Agent(tools=[search], model=FunctionModel(reply), planner=PlannerConfig(style="llmcompiler"))
    result = await agent.run("x")
    assert LOOKUPS == ["kept"]
    assert any("the server ended the plan's reply before it was finished" in note for note in result.notes)


@pytest.mark.asyncio
async def test_mid_run_refinement_cancels_pending_nodes_and_adds_new_ones_without_waiting() -> None:
    never = anyio.Event()

    @tool
    async def slow(query: str) -> str:
        await never.wait()  # only a cancellation ends this node
        return query

    calls: list[str] = []

    def reply(request: ModelRequest) -> str:
        schema = request.settings.json_schema or {}
        if schema is JOINER_SCHEMA:
            calls.append("joiner")
            return finish("refined")
        if "cancel" in schema.get("properties", {}):
            calls.append("refine")
            prompt = request.messages[0].content
            assert "[1] search" in prompt
            assert "[2] slow" in prompt
            add = [{"id": 3, "tool": "search", "arguments": {"query": "from ${1.query}"}, "depends_on": [1]}]
            return json.dumps({"thought": "1 is enough", "cancel": [2], "add": add})
        calls.append("planner")
        return plan(
            {"id": 1, "tool": "search", "arguments": {"query": "fast"}, "depends_on": []},
            {"id": 2, "tool": "slow", "arguments": {"query": "forever"}, "depends_on": []},
        )

    agent = Agent(tools=[search, slow], model=FunctionModel(reply), planner=PlannerConfig(refine=True))
    result = await agent.run("x")
    assert result.status == "done"
    assert result.records[2].status == "cancelled"
    assert result.records[3].status == "done"
    assert result.records[3].arguments == {"query": "from fast"}
    assert calls[0] == "planner"
    assert calls[1] == "refine"
    assert calls[-1] == "joiner"
    assert any("refinement 1: added [3], cancelled [2]" in note for note in result.notes)


@pytest.mark.asyncio
async def test_without_refine_no_refinement_call_is_made() -> None:
    script = Script(
        [
            plan(
                {"id": 1, "tool": "search", "arguments": {"query": "a"}, "depends_on": []},
                {"id": 2, "tool": "search", "arguments": {"query": "b"}, "depends_on": []},
            )
        ],
        [finish("ok")],
    )
    await Agent(tools=[search], model=FunctionModel(script)).run("x")
    assert [kind for kind, _ in script.seen] == ["planner", "joiner"]


@pytest.mark.asyncio
async def test_the_planner_seed_reaches_planner_and_joiner_requests() -> None:
    script = Script([plan({"id": 1, "tool": "search", "arguments": {"query": "q"}, "depends_on": []})], [finish("a")])
    await Agent(tools=[search], model=FunctionModel(script), planner=PlannerConfig(seed=7)).run("x")
    assert [(kind, request.settings.seed) for kind, request in script.seen] == [("planner", 7), ("joiner", 7)]
