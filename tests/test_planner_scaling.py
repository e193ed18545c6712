"""Scaling the planner: votes over plans compare calls, the structure selector, dispatch at the decision,
options a rule would ignore refused at load, and `agentdag plan` drafting what `agentdag run` would run.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from replies import finish, is_joiner, node, plan

from agentdag import Agent, FunctionModel, tool
from agentdag.cli import main
from agentdag.errors import ModelError, TaskFileError
from agentdag.events import Event, NodeEvent
from agentdag.messages import Message, ModelRequest
from agentdag.models.cassette import CassetteModel
from agentdag.scaling import BestOfNConfig, create_strategy
from agentdag.taskfile import parse_task_file

LOOKUPS: list[str] = []


@pytest.fixture(autouse=True)
def clear_lookups() -> None:
    LOOKUPS.clear()


@tool(read_only=True)
async def search(query: str) -> dict[str, object]:
    """Look a query up."""
    LOOKUPS.append(query)
    return {"query": query, "length": len(query)}


@tool(read_only=True)
def calculate(expression: str) -> float:
    """Evaluate arithmetic."""
    from agentdag.tools.calculator import evaluate

    return evaluate(expression)


class Samples:
    """Planner samples in the order they are asked for; the joiner always finishes."""

    def __init__(self, *plans: str) -> None:
        self.plans = list(plans)
        self.drawn = 0

    def __call__(self, request: ModelRequest) -> str:
        if is_joiner(request):
            return finish("ok")
        reply = self.plans[self.drawn % len(self.plans)]
        self.drawn += 1
        return reply


def scaled_agent(samples: Samples, config: BestOfNConfig) -> Agent:
    model = FunctionModel(samples)
    return Agent(tools=[search, calculate], model=model, planner_model=create_strategy(config, model))


# The last integer of each plan's JSON is 2, 2 and 1: a vote on numbers would pick the first plan. The second
# and third make the same calls (ids renumbered, references spelled differently): a vote on plans picks them.
OTHER = plan(node(1, "search", query="c"), node(2, "search", query="d"), node(3, "calculate", (1, 2), expression="1"))
SAME_A = plan(
    node(1, "search", query="a"),
    node(2, "search", query="b"),
    node(3, "calculate", (1, 2), expression="${1.length} + ${2.length}"),
)
SAME_B = plan(
    node(1, "search", query="b"),
    node(2, "search", query="a"),
    node(3, "calculate", (2, 1), expression="${2.length} + ${1.length}"),
    thought="the same plan, numbered the other way",
)


@pytest.mark.asyncio
async def test_a_majority_over_plans_votes_on_their_calls() -> None:
    result = await scaled_agent(Samples(OTHER, SAME_A, SAME_B), BestOfNConfig(n=3)).run("add the lengths of a and b")
    assert result.status == "done"
    assert sorted(LOOKUPS) == ["a", "b"]
    assert result.usage["planner"].calls == 3  # every sample counted on the run's meter


@pytest.mark.asyncio
async def test_the_structure_selector_prefers_a_valid_plan_that_covers_the_task_and_runs_in_parallel() -> None:
    invalid = plan(node(1, "serch", query="Paris"), node(2, "search", query="Rome"))
    partial = plan(node(1, "search", query="Paris population"), node(2, "calculate", (1,), expression="${1.length}"))
    chain = plan(node(1, "search", query="Paris"), node(2, "search", (1,), query="Rome after ${1.query}"))
    wide = plan(node(1, "search", query="Paris"), node(2, "search", query="Rome"))
    samples = Samples(invalid, partial, chain, wide)
    result = await scaled_agent(samples, BestOfNConfig(n=4, selector="structure")).run("Compare Paris and Rome")
    assert result.status == "done"
    assert sorted(LOOKUPS) == ["Paris", "Rome"]
    assert [record.node.arguments for record in result.records.values()] == [{"query": "Paris"}, {"query": "Rome"}]


@pytest.mark.asyncio
async def test_the_structure_selector_outside_the_planner_is_an_error() -> None:
    strategy = create_strategy(BestOfNConfig(n=2, selector="structure"), FunctionModel(lambda _: "4"))
    with pytest.raises(ModelError, match="applies to the planner only"):
        await strategy.request(ModelRequest(messages=(Message("user", "2 + 2?"),)))


def test_the_structure_selector_on_another_role_is_refused_at_load() -> None:
    with pytest.raises(TaskFileError, match="applies to the planner only"):
        parse_task_file("task: x\nscaling:\n  joiner: {strategy: best_of_n, selector: structure}\n")


@pytest.mark.asyncio
async def test_the_winning_plan_starts_the_moment_the_vote_is_decided() -> None:
    started = anyio.Event()
    winner = plan(node(1, "search", query="x"))
    calls = 0

    async def reply(request: ModelRequest) -> str:
        nonlocal calls
        if is_joiner(request):
            return finish("ok")
        calls += 1
        if calls == 3:
            await started.wait()  # the last sample ends only after the winner's node has started
            return plan(node(1, "search", query="y"))
        return winner

    def watch(event: Event) -> None:
        if isinstance(event, NodeEvent) and event.kind == "running":
            started.set()

    model = FunctionModel(reply)
    planner = create_strategy(BestOfNConfig(n=3), model)
    agent = Agent(tools=[search], model=model, planner_model=planner, on_event=[watch])
    with anyio.fail_after(10):
        result = await agent.run("look x up")
    assert LOOKUPS == ["x"]
    assert result.usage["planner"].calls == 3  # the third sample still ran to its end and is counted


@pytest.mark.parametrize(
    ("scaling", "key"),
    [
        ("{strategy: self_consistency, rule: window, batch: 3}", "batch"),
        ("{strategy: self_consistency, rule: window, threshold: 0.9}", "threshold"),
        ("{strategy: self_consistency, rule: beta, window: 3}", "window"),
        ("{strategy: prune, judge: model, judge_threshold: 0.3}", "judge_threshold"),
        ("{strategy: prune, judge: model, measure: ngram}", "measure"),
        ("{strategy: pdr, distill: summary, top_k: 3}", "top_k"),
        ("{strategy: pdr, distill: summary, seed: 3}", "seed"),
        ("{strategy: adaptive_termination, rule: secretary, threshold: 0.5}", "threshold"),
        ("{strategy: best_of_n, selector: majority, judge_max_tokens: 9}", "judge_max_tokens"),
    ],
)
def test_an_option_the_chosen_rule_ignores_is_refused_at_load_naming_the_key(scaling: str, key: str) -> None:
    with pytest.raises(TaskFileError) as raised:
        parse_task_file(f"task: x\nscaling:\n  tools: {scaling}\n", source="task.yaml")
    message = str(raised.value)
    assert f"`{key}` has no effect here" in message
    assert "\n" not in message
    assert message.count("task.yaml") == 1  # one error, not the union's other alternatives too


def test_max_refinements_without_refine_is_refused() -> None:
    with pytest.raises(TaskFileError, match="`max_refinements` has no effect here"):
        parse_task_file("task: x\nplanner: {max_refinements: 3}\n")


# -- `agentdag plan` and `agentdag run` on the same replies ---------------------------------------------


TASK = "task: What is 2 + 3, and 4 + 5?\ntools: [agentdag.tools.calculator:TOOLS]\nplanner: {max_repairs: 1}\n"


async def _record(cassette: Path, task_file: Path, planner_replies: list[str]) -> None:
    """Record the replies the planner and the joiner give for the task file, as `run` and `plan` ask."""
    from agentdag.assembly import load_task_tools
    from agentdag.taskfile import load_task_file

    task = load_task_file(task_file)
    replies = iter(planner_replies * 2)

    def reply(request: ModelRequest) -> str:
        return finish("5 and 9") if is_joiner(request) else next(replies)

    recorder = CassetteModel.recording(FunctionModel(reply, name="scripted"), cassette)
    tools = load_task_tools(task, base_dir=task_file.parent, model=None)
    agent = Agent(tools=tools, model=recorder, planner=task.planner)
    await agent.draft(task.task)
    await agent.run(task.task)
    await recorder.aclose()


def test_plan_and_run_draft_the_same_plan_from_the_same_replies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    looping = plan(*(node(index, "calculate", expression="2 + 3") for index in range(1, 9)))
    task_file = tmp_path / "task.yaml"
    cassette = tmp_path / "calls.jsonl"
    task_file.write_text(TASK + f"model: {{replay: {cassette}}}\n")
    anyio.run(_record, cassette, task_file, [looping])
    assert main(["plan", str(task_file), "--format", "mermaid"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count('["') == 1  # one node: the repeats reused its output
    assert "repeated earlier nodes 3 times in a row" in captured.err
    assert main(["run", str(task_file), "--json", "--no-state", "--no-trace"]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert [item["id"] for item in ran["nodes"]] == [1]


def test_a_plan_that_stays_invalid_prints_no_chart_and_names_no_node_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    task_file = tmp_path / "task.yaml"
    cassette = tmp_path / "calls.jsonl"
    task_file.write_text(TASK + f"model: {{replay: {cassette}}}\n")
    anyio.run(_record, cassette, task_file, ["this is not a plan", "still not a plan"])
    assert main(["plan", str(task_file), "--format", "mermaid"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "the reply holds no JSON object" in captured.err
    assert "node 0" not in captured.err


# -- planner scaling, the plan stream closed early, and the meter -------------------------------------------


@tool
def append(item: str) -> int:
    """Append an item to a log (it has side effects)."""
    LOOKUPS.append(f"append {item}")
    return len(LOOKUPS)


@pytest.mark.asyncio
async def test_a_scaled_planner_whose_plan_loops_or_overflows_is_cut_short_cleanly() -> None:
    from agentdag.config import PlannerConfig

    looping = plan(*(node(index, "append", item="x") for index in range(1, 12)))
    wide = plan(*(node(index, "search", query=f"q{index}") for index in range(1, 5)))
    for reply, config in ((looping, PlannerConfig()), (wide, PlannerConfig(max_nodes=2))):
        LOOKUPS.clear()
        model = FunctionModel(Samples(reply))
        agent = Agent(
            tools=[search, append],
            model=model,
            planner_model=create_strategy(BestOfNConfig(n=3), model),
            planner=config,
        )
        with anyio.fail_after(10):
            result = await agent.run("x")
        assert result.status == "done", result.error
        assert len(LOOKUPS) in (1, 2)  # the loop ran its first append only; max_nodes ran two searches


@pytest.mark.asyncio
async def test_pruning_over_best_of_n_streams_and_stops_cleanly() -> None:
    from agentdag.scaling import PruneConfig

    model = FunctionModel(lambda request: "The answer is 4. " * 40)
    stacked = create_strategy([BestOfNConfig(n=2), PruneConfig(n=3, prefix_tokens=8)], model)
    with anyio.fail_after(10):
        response = await stacked.request(ModelRequest(messages=(Message("user", "2 + 2?"),)))
    assert "answer is 4" in response.text


@pytest.mark.asyncio
async def test_every_sample_of_a_planner_strategy_reaches_the_meter_as_it_ends() -> None:
    from agentdag.messages import Usage
    from agentdag.usage import RunMeter

    reports: list[tuple[str, Usage]] = []
    meter = RunMeter(listeners=(lambda role, usage: reports.append((role, usage)),))
    model = FunctionModel(Samples(OTHER, SAME_A, SAME_B, SAME_A))
    config = BestOfNConfig(n=4, selector="structure")  # decides only once every sample is in: all four run
    agent = Agent(tools=[search, calculate], model=model, planner_model=create_strategy(config, model))
    result = await agent.run("add the lengths of a and b", meter=meter)
    planner = [usage for role, usage in reports if role == "planner"]
    assert len(planner) == 4  # one report per sample, none for the strategy's reply on top
    assert result.usage["planner"].calls == 4
    assert result.usage["planner"].total_tokens == sum(usage.total_tokens for usage in planner)


@pytest.mark.asyncio
async def test_the_structure_selector_takes_a_replan_that_uses_earlier_results_for_valid() -> None:
    from agentdag.parsers import PlanReader
    from agentdag.scaling.plans import score_plan

    reader = PlanReader("json", {tool.name: tool for tool in (search, calculate)})
    reuse = plan(node(3, "calculate", expression="${1.length} + ${2.length}"))
    valid, *_ = score_plan(reader.read(reuse, known={1, 2}), "add the lengths of a and b")
    assert valid  # nodes 1 and 2 exist from the first round: referencing them is what a replan should do
    invalid, *_ = score_plan(reader.read(reuse), "add the lengths of a and b")
    assert not invalid


def test_the_structure_selector_counts_whole_numbers_and_marks_down_repeated_calls() -> None:
    from agentdag.parsers import PlanReader
    from agentdag.scaling.plans import score_plan

    reader = PlanReader("json", {tool.name: tool for tool in (search, calculate)})
    task = "What is (12 + 30) * 2, and what is 100 / 4?"
    repeated = plan(*(node(index, "calculate", expression="12 + 30") for index in (1, 2, 3, 4)))
    right = plan(node(1, "calculate", expression="(12 + 30) * 2"), node(2, "calculate", expression="100 / 4"))
    _, coverage, repeats, _ = score_plan(reader.read(repeated), task)
    assert (coverage, repeats) == (2 / 5, -3)  # 12 and 30; not 2 (inside 12) nor 4
    _, coverage, repeats, independent = score_plan(reader.read(right), task)
    assert (coverage, repeats, independent) == (1.0, 0, 2)
