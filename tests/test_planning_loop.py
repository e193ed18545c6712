"""The planner loop on stateful work: which repeated calls may reuse an earlier output, one usage meter per
run, plan voting, `plan` and `run` agreeing, options that must take effect, and the joiner's fallback.

Every tool here keeps state, so a call that was wrongly merged, or run when it should not have been, shows.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import pytest
from replies import finish, is_joiner, node, plan, replan

from agentdag import Agent, FunctionModel, PlannerConfig, tool
from agentdag.messages import ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model
from agentdag.plan import PlanProblem
from agentdag.schemas import create_plan_schema
from agentdag.toolsets.mcp import McpToolset
from agentdag.toolsets.mcp_config import McpServerConfig
from agentdag.toolsets.model import ModelTool
from agentdag.usage import RunMeter

EXAMPLES = Path(__file__).parent.parent / "examples"


class Store:
    """A key-value store and an append-only log: the state the tools below read and change."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.log: list[str] = []
        self.calls: list[str] = []

    def clear(self) -> None:
        self.values.clear()
        self.log.clear()
        self.calls.clear()


STORE = Store()


@pytest.fixture(autouse=True)
def fresh_store() -> None:
    STORE.clear()


@tool(read_only=True)
def read_value(key: str) -> int:
    """Read a value (0 if unset)."""
    STORE.calls.append(f"read {key}")
    return STORE.values.get(key, 0)


@tool
def write_value(key: str, value: int) -> str:
    """Set a value."""
    STORE.calls.append(f"write {key}={value}")
    STORE.values[key] = value
    return f"{key}={value}"


@tool
def append(item: str) -> int:
    """Append an item to the log; returns the log's length."""
    STORE.calls.append(f"append {item}")
    STORE.log.append(item)
    return len(STORE.log)


@tool(idempotent=True)
def put_flag(name: str) -> str:
    """Set a flag (setting it twice is the same as once)."""
    STORE.calls.append(f"flag {name}")
    return name


TOOLS = [read_value, write_value, append, put_flag]


class Script:
    """Planner replies for planner calls and joiner replies for joiner calls, each in order."""

    def __init__(self, planner: list[str], joiner: list[str]) -> None:
        self.planner, self.joiner = list(planner), list(joiner)
        self.requests: list[ModelRequest] = []

    def __call__(self, request: ModelRequest) -> str:
        self.requests.append(request)
        return (self.joiner if is_joiner(request) else self.planner).pop(0)


async def run(script: Script, *, tools: list[Any] | None = None, **config: Any) -> Any:
    agent = Agent(tools=tools or TOOLS, model=FunctionModel(script), planner=PlannerConfig(**config))
    with anyio.fail_after(30):
        return await agent.run("the task")


# -- 1. which repeated calls may reuse an earlier output ------------------------------------------------


@pytest.mark.asyncio
async def test_a_read_after_a_write_runs_again_and_sees_the_new_value() -> None:
    script = Script(
        [
            plan(
                node(1, "read_value", key="k"),
                node(2, "write_value", (1,), key="k", value=5),
                node(3, "read_value", (2,), key="k"),
            )
        ],
        [finish("5")],
    )
    result = await run(script)
    assert [result.records[index].output for index in (1, 2, 3)] == [0, "k=5", 5]
    assert STORE.calls == ["read k", "write k=5", "read k"]
    assert not any("reused" in note for note in result.notes)


@pytest.mark.asyncio
async def test_two_planned_appends_both_run() -> None:
    script = Script([plan(node(1, "append", item="x"), node(2, "append", item="x"))], [finish("2")])
    result = await run(script)
    assert STORE.log == ["x", "x"]
    assert sorted(result.records[index].output for index in (1, 2)) == [1, 2]
    assert any("node 2 repeats node 1's call and runs again" in note for note in result.notes)


@pytest.mark.asyncio
async def test_a_read_only_repeat_with_nothing_changed_in_between_reuses_the_first_output() -> None:
    script = Script(
        [plan(node(1, "read_value", key="k"), node(2, "read_value", key="k"), node(3, "append", (2,), item="v$2"))],
        [finish("ok")],
    )
    result = await run(script)
    assert STORE.calls == ["read k", "append v0"]
    assert 2 not in result.records
    assert result.records[3].arguments == {"item": "v0"}
    assert any("reused their outputs: node 2 → node 1" in note for note in result.notes)


@pytest.mark.asyncio
async def test_a_replanned_read_after_an_earlier_rounds_write_runs_again() -> None:
    # Round 0 reads and writes with no order between them; round 1 reads again. The write has finished
    # by then, so the new read may see another value than the first one did: it runs.
    script = Script(
        [
            plan(node(1, "read_value", key="k"), node(2, "write_value", key="k", value=7)),
            plan(node(3, "read_value", key="k")),
        ],
        [replan("read it again"), finish("7")],
    )
    result = await run(script)
    assert result.records[3].output == 7
    assert STORE.calls.count("read k") == 2


@pytest.mark.asyncio
async def test_a_replanned_read_with_only_reads_before_it_reuses_the_first_round() -> None:
    script = Script(
        [
            plan(node(1, "read_value", key="k")),
            plan(node(2, "read_value", key="k"), node(3, "append", (2,), item="v$2")),
        ],
        [replan("more"), finish("ok")],
    )
    result = await run(script)
    assert STORE.calls == ["read k", "append v0"]
    assert any("node 2 → node 1" in note for note in result.notes)


@pytest.mark.asyncio
async def test_an_idempotent_call_repeated_after_itself_is_not_run_twice() -> None:
    script = Script([plan(node(1, "put_flag", name="f"), node(2, "put_flag", (1,), name="f"))], [finish("ok")])
    result = await run(script)
    assert STORE.calls == ["flag f"]
    assert any("node 2 → node 1" in note for note in result.notes)


@pytest.mark.asyncio
async def test_an_idempotent_call_after_another_side_effect_runs_again() -> None:
    script = Script(
        [plan(node(1, "put_flag", name="f"), node(2, "append", (1,), item="x"), node(3, "put_flag", (2,), name="f"))],
        [finish("ok")],
    )
    await run(script)
    assert STORE.calls == ["flag f", "append x", "flag f"]


@pytest.mark.asyncio
async def test_a_looping_plan_is_cut_short_and_its_repeats_do_not_run() -> None:
    looping = plan(*(node(index, "append", item="x") for index in range(1, 12)))
    script = Script([looping], [finish("x")])
    model = FunctionModel(script, chunk_size=len(looping) // 11)
    agent = Agent(tools=TOOLS, model=model)
    result = await agent.run("the task")
    assert STORE.log == ["x"]
    assert list(result.records) == [1]
    assert any("repeated earlier nodes 3 times in a row; stopped reading" in note for note in result.notes)


@pytest.mark.asyncio
async def test_repeats_followed_by_a_new_node_all_run() -> None:
    script = Script(
        [plan(node(1, "append", item="x"), node(2, "append", item="x"), node(3, "append", (2,), item="y"))],
        [finish("ok")],
    )
    await run(script)
    assert sorted(STORE.log) == ["x", "x", "y"]  # node 1 runs beside 2 and 3


@pytest.mark.asyncio
async def test_a_replan_that_repeats_the_last_rounds_plan_is_not_run_again() -> None:
    script = Script([plan(node(1, "append", item="x")), plan(node(2, "append", item="x"))], [replan("?"), finish("x")])
    result = await run(script, max_replans=3)
    assert STORE.log == ["x"]
    assert any("replan 1 repeated the plan of round 0" in note for note in result.notes)


def test_the_replan_prompt_does_not_forbid_calling_a_tool_again() -> None:
    from agentdag.templates import load_template

    for style in ("json", "llmcompiler"):
        replan_prompt = load_template(style).replan
        assert "never repeat" not in replan_prompt
        assert "again" in replan_prompt  # it says when calling a tool again is right


# -- 2. one usage meter per run -------------------------------------------------------------------------


def _tool_calling_script(request: ModelRequest) -> str:
    if is_joiner(request):
        return finish("done")
    if request.settings.json_schema is None:  # the llm tool's own call
        return "an answer of some length from the model"
    return plan(node(1, "llm", prompt="say something"))


@pytest.mark.asyncio
async def test_concurrent_runs_on_one_agent_each_count_their_own_tool_tokens() -> None:
    model = FunctionModel(_tool_calling_script)
    agent = Agent(tools=[ModelTool(model)], model=model)
    alone = await agent.run("alone")
    results: list[Any] = []

    async def one(index: int) -> None:
        results.append(await agent.run(f"run {index}"))

    async with anyio.create_task_group() as group:
        for index in range(3):
            group.start_soon(one, index)
    assert alone.usage["tools"].calls == 1
    for result in results:
        for role in ("planner", "joiner", "tools"):
            assert (result.usage[role].calls, result.usage[role].total_tokens) == (
                alone.usage[role].calls,
                alone.usage[role].total_tokens,
            )


@pytest.mark.asyncio
async def test_the_token_budget_reads_the_runs_own_usage() -> None:
    def planner(request: ModelRequest) -> str:
        if is_joiner(request):
            return replan("more")
        text = request.messages[-1].content
        first = int(text.split("numbered from ", 1)[1].split(".")[0]) if "numbered from " in text else 1
        return plan(node(first, "llm", prompt=f"round {first}"))

    async def speaker(request: ModelRequest) -> str:
        await anyio.sleep(0.01)  # the concurrent runs' tool calls overlap
        return "x" * 2000  # the llm tool's tokens dominate the run's usage

    tools = [ModelTool(FunctionModel(speaker))]
    alone = await Agent(tools=tools, model=FunctionModel(planner), planner=PlannerConfig(max_replans=6)).run("x")
    assert len(alone.replans) == 6
    spent = sum(alone.usage[role].total_tokens for role in ("planner", "joiner", "tools"))
    budget = PlannerConfig(max_replans=6, max_total_tokens=spent // 2)
    lone = await Agent(tools=tools, model=FunctionModel(planner), planner=budget).run("x")
    assert 0 < len(lone.replans) < 6
    limited = Agent(tools=tools, model=FunctionModel(planner), planner=budget)
    results: list[Any] = []

    async def one() -> None:
        results.append(await limited.run("x"))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(one)
    # Each run stops where a run alone stops: the other runs' tokens are not its own.
    assert [len(result.replans) for result in results] == [len(lone.replans)] * 3


class EarlyClosedStream(Model):
    """A planner that loops: the planner closes the stream before it ends."""

    name = "looping"

    def __init__(self) -> None:
        self.closed_early = False

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await FunctionModel(lambda _: finish("x")).request(request)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        try:
            yield '{"thought": "t", "nodes": ['
            for index in range(1, 50):
                yield json.dumps(node(index, "append", item="x")) + ", "
        finally:
            self.closed_early = True


@pytest.mark.asyncio
async def test_a_stream_the_planner_closes_early_is_counted_once() -> None:
    model = EarlyClosedStream()
    reports: list[tuple[str, Usage]] = []
    meter = RunMeter(listeners=(lambda role, usage: reports.append((role, usage)),))
    result = await Agent(tools=TOOLS, model=model).run("x", meter=meter)
    assert model.closed_early
    planner_reports = [usage for role, usage in reports if role == "planner"]
    assert len(planner_reports) == 1  # one estimate, from the one place that knows the stream was closed
    assert result.usage["planner"] == planner_reports[0]
    assert planner_reports[0].calls == 1 and planner_reports[0].completion_tokens > 0


def test_the_token_estimate_has_a_home_of_its_own() -> None:
    from agentdag.tokens import estimate_prompt_tokens, estimate_tokens

    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_prompt_tokens([]) == 0


# -- 7. the plan schema bounds the thought -------------------------------------------------------------


def test_the_plan_schema_bounds_the_thought() -> None:
    from agentdag.schemas import THOUGHT_CHARS

    schema = create_plan_schema(TOOLS)
    assert schema["properties"]["thought"]["maxLength"] == THOUGHT_CHARS


# -- 6. the joiner's fallback ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_joiner_reply_that_is_no_decision_is_asked_again_with_the_error() -> None:
    script = Script([plan(node(1, "read_value", key="k"))], ['{"thought": "hmm", "act', finish("0")])
    result = await run(script)
    assert (result.status, result.answer) == ("done", "0")
    retry = [request for request in script.requests if is_joiner(request)][1]
    assert "not a decision" in retry.messages[-1].content


@pytest.mark.asyncio
async def test_a_joiner_that_never_decides_fails_the_run_without_a_json_fragment_as_the_answer() -> None:
    script = Script([plan(node(1, "read_value", key="k"))], ['{"thought": "hmm", "act', '{"thought": "still'])
    result = await run(script)
    assert result.status == "failed"
    assert result.answer is None
    assert result.error is not None and result.error.startswith("no answer")
    assert "{" not in (result.error or "")


@pytest.mark.asyncio
async def test_a_cut_off_joiner_decision_keeps_its_answer_field() -> None:
    script = Script([plan(node(1, "read_value", key="k"))], ['{"thought": "x", "answer": "zero", "action": "fin'])
    result = await run(script)
    assert (result.status, result.answer) == ("done", "zero")


# -- 5. options that must take effect ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_max_nodes_holds_for_llmcompiler_plans() -> None:
    text = "\n".join(f'{index}. append("{index}")' for index in range(1, 6)) + "\n6. join()<END_OF_PLAN>"
    script = Script([text], [finish("ok")])
    result = await run(script, style="llmcompiler", max_nodes=2)
    assert sorted(STORE.log) == ["1", "2"]
    assert any("more than max_nodes (2)" in note for note in result.notes)


# -- 4. `plan` and `run` agree ------------------------------------------------------------------------


def test_a_plan_level_problem_names_no_node() -> None:
    problem = PlanProblem(None, "malformed", "the reply holds no JSON object")
    assert str(problem) == "the reply holds no JSON object"
    assert str(PlanProblem(3, "cycle", "x")) == "node 3: x"


@pytest.mark.asyncio
async def test_draft_and_run_give_the_same_plan_for_the_same_replies() -> None:
    looping = plan(*(node(index, "read_value", key="k") for index in range(1, 9)))
    cut = plan(node(1, "append", item="a"), node(2, "append", item="b"))[:-30]
    for reply in (looping, cut):
        drafted = await Agent(tools=TOOLS, model=FunctionModel(Script([reply], []))).draft("x")
        result = await Agent(tools=TOOLS, model=FunctionModel(Script([reply], [finish("ok")]))).run("x")
        assert drafted.problems == ()
        ran = [record.node.model_dump() for record in result.records.values()]
        assert [item.model_dump() for item in drafted.nodes] == ran
        assert [note for note in drafted.notes if "round 0" in note] == [
            note for note in result.notes if "round 0" in note
        ]


# -- the SWE pattern: patch, then see the tests pass in the same round -----------------------------------


PATCH = {"path": "stats.py", "old": "ordered = list(values)", "new": "ordered = sorted(values)"}


def buggy_median_workspace(tmp_path: Path) -> McpServerConfig:
    """The workspace MCP server over a fresh copy of the example's buggy program (a `median` that forgets to sort)."""
    workspace = tmp_path / "workspace"
    shutil.copytree(EXAMPLES / "data" / "buggy_median", workspace)
    command = [sys.executable, "-m", "agentdag.tools.workspace", "--root", str(workspace)]
    return McpServerConfig(name="workspace", command=[*command, "--test-command", "python test_stats.py"])


@pytest.mark.asyncio
async def test_a_dag_agent_patches_and_sees_its_tests_pass_in_the_same_round(tmp_path: Path) -> None:
    server = buggy_median_workspace(tmp_path)
    script = Script(
        [plan(node(1, "run_tests"), node(2, "patch_file", (1,), **PATCH), node(3, "run_tests", (2,)))],
        [finish("fixed")],
    )
    async with McpToolset(server) as toolset:
        result = await Agent(tools=toolset.tools, model=FunctionModel(script)).run("fix the median")
    assert result.records[1].output["passed"] is False
    assert result.records[3].status == "done"
    assert result.records[3].output["passed"] is True


# -- ids, references and rounds around reused nodes ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_reused_nodes_id_is_not_handed_out_again() -> None:
    script = Script(
        [
            plan(node(1, "read_value", key="a"), node(2, "read_value", key="a")),
            plan(node(3, "read_value", key="b"), node(4, "append", (3,), item="got ${3}")),
        ],
        [replan("read b too"), finish("ok")],
    )
    STORE.values.update(a=1, b=2)
    await run(script)
    replan_prompt = [request for request in script.requests if not is_joiner(request)][1].messages[-1].content
    assert "numbered from 3" in replan_prompt  # 2 is the reused node's id: it stays taken
    assert STORE.log == ["got 2"]  # node 4 reads node 3, not what an id clash would have rewired it to


@pytest.mark.asyncio
async def test_a_reference_object_with_a_string_id_follows_a_reused_node() -> None:
    script = Script(
        [
            plan(
                node(1, "read_value", key="k"),
                node(2, "read_value", key="k"),
                {"id": 3, "tool": "append_any", "arguments": {"item": {"$ref": "2"}}, "depends_on": []},
            )
        ],
        [finish("ok")],
    )
    STORE.values["k"] = 7
    tools = [read_value, append_any]
    result = await run(script, tools=tools)
    assert result.records[3].arguments == {"item": 7}
    assert STORE.calls == ["read k", "append 7"]


@tool
def append_any(item: int | str) -> int:
    """Append an item of any kind to the log."""
    STORE.calls.append(f"append {item}")
    STORE.log.append(str(item))
    return len(STORE.log)


@pytest.mark.asyncio
async def test_a_replan_repeating_a_repaired_round_is_still_recognised() -> None:
    script = Script(
        [
            plan(node(1, "append", item="x"), node(2, "nope")),
            plan(node(1, "append", item="x")),
            plan(node(2, "append", item="x")),
        ],
        [replan("?"), finish("x")],
    )
    result = await run(script, max_replans=3)
    assert STORE.log == ["x"]
    assert any("replan 1 repeated the plan of round 0" in note for note in result.notes)


@pytest.mark.asyncio
async def test_a_replan_that_restates_earlier_reads_and_adds_a_call_is_not_taken_for_a_loop() -> None:
    script = Script(
        [
            plan(node(1, "read_value", key="a"), node(2, "read_value", key="b"), node(3, "read_value", key="c")),
            plan(
                node(4, "read_value", key="a"),
                node(5, "read_value", key="b"),
                node(6, "read_value", key="c"),
                node(7, "append", (4, 5, 6), item="all"),
            ),
        ],
        [replan("combine them"), finish("ok")],
    )
    result = await run(script)
    assert STORE.log == ["all"]
    assert STORE.calls.count("read a") == 1
    assert not any("stopped reading" in note for note in result.notes)


@pytest.mark.asyncio
async def test_a_repeat_may_reuse_a_repeat_that_runs_again() -> None:
    script = Script(
        [
            plan(
                node(1, "read_value", key="k"),
                node(2, "write_value", (1,), key="k", value=3),
                node(3, "read_value", (2,), key="k"),
                node(4, "read_value", (2,), key="k"),
            )
        ],
        [finish("3")],
    )
    result = await run(script)
    assert STORE.calls == ["read k", "write k=3", "read k"]
    assert any("node 4 → node 3" in note for note in result.notes)
    assert any("node 3 repeats node 1's call and runs again: it comes after node(s) 2" in note for note in result.notes)


@pytest.mark.asyncio
async def test_a_read_only_call_downstream_of_a_patch_reads_the_patched_file(tmp_path: Path) -> None:
    server = buggy_median_workspace(tmp_path)
    script = Script(
        [
            plan(
                node(1, "read_file", path="stats.py"),
                node(2, "patch_file", (1,), **PATCH),
                node(3, "read_file", (2,), path="stats.py"),
            )
        ],
        [finish("patched")],
    )
    async with McpToolset(server) as toolset:
        assert {tool.name: tool.policy.read_only for tool in toolset.tools}["read_file"]
        result = await Agent(tools=toolset.tools, model=FunctionModel(script)).run("patch and read")
    assert "ordered = list(values)" in result.records[1].output
    assert "ordered = sorted(values)" in result.records[3].output


# -- plan and run agree when a repeated call fails -------------------------------------------------------


@tool(read_only=True)
def flaky_read(key: str) -> int:
    """A read whose service is down."""
    STORE.calls.append(f"flaky {key}")
    raise RuntimeError("service down")


@pytest.mark.asyncio
async def test_draft_and_run_agree_when_the_twin_of_a_repaired_repeat_fails() -> None:
    replies = [
        plan(node(1, "flaky_read", key="k"), node(2, "nope")),
        plan(node(1, "flaky_read", key="k"), node(3, "flaky_read", key="k"), node(4, "append", (3,), item="$3")),
    ]
    tools = [*TOOLS, flaky_read]

    async def slow(request: ModelRequest) -> str:
        await anyio.sleep(0.05)  # the first attempt's node fails before the repair arrives
        return finish("x") if is_joiner(request) else replies.pop(0)

    drafted = await Agent(tools=tools, model=FunctionModel(Script(list(replies), []))).draft("x")
    result = await Agent(tools=tools, model=FunctionModel(slow)).run("x")
    assert [item.id for item in drafted.nodes] == list(result.records)
    assert STORE.calls.count("flaky k") == 1  # the repeat reused the first call (its failure included)
    assert result.records[4].status == "skipped"


# -- the meter counts what a cancelled stream spent -----------------------------------------------------


class EndlessPlanner(Model):
    """Streams a plan that never ends, slowly: only the time budget stops it."""

    name = "endless"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await FunctionModel(lambda _: finish("x")).request(request)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        yield '{"thought": "' + "thinking " * 50
        while True:
            await anyio.sleep(0.01)
            yield "more "


@pytest.mark.asyncio
async def test_a_planner_call_cut_by_the_time_budget_is_counted() -> None:
    result = await Agent(tools=TOOLS, model=EndlessPlanner(), planner=PlannerConfig(max_seconds=0.3)).run("x")
    assert result.status == "failed" and "time budget" in (result.error or "")
    assert result.usage["planner"].calls == 1
    assert result.usage["planner"].completion_tokens > 100  # what it streamed before the cut


def test_a_decision_without_an_answer_or_inside_json_text_is_no_decision() -> None:
    from agentdag.schemas import parse_decision

    assert parse_decision('{"action": "finish"}') is None
    assert parse_decision('{"thought": "I will Finish(soon", "answ') is None
    assert parse_decision("Thought: done\nFinish(Paris)") is not None
