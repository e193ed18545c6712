"""The search benchmark's fairness: the oracles' rounds, equal calls, the physical limit, stated costs."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from agentdag.benchmarks.data_paths import DataNotFoundError, find_data_file
from agentdag.benchmarks.oracle import (
    PROMPT_TOKEN_S,
    GenerationTiming,
    Observation,
    OracleDagModel,
    OracleReActModel,
    Served,
)
from agentdag.benchmarks.oracle_prompts import read_observations
from agentdag.benchmarks.search import create_search_table, run_search_bench
from agentdag.benchmarks.search_bound import create_dag_bound, create_react_bound
from agentdag.benchmarks.search_data import SearchCase, SubQuestion, create_tools, load_cases
from agentdag.benchmarks.search_oracle import StepScript, create_script, find_phrase, plan_oracle
from agentdag.tools.search_index import SearchIndex, SimulatedLatency
from rich.console import Console

from agentdag import Agent, PlannerConfig
from agentdag.executor import NodeRecord
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.plan import Node
from agentdag.react import ReActAgent
from agentdag.result import RunResult

FAST = GenerationTiming(first_token_s=0.001, token_s=0.0002, prompt_token_s=0.0)
NO_LATENCY = SimulatedLatency(mean_ms=0)


def search_data(name: str) -> Path:
    try:
        return find_data_file(f"search/{name}")
    except DataNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def hotpot_corpus() -> SearchIndex:
    return SearchIndex.from_hotpotqa(search_data("hotpotqa_distractor.jsonl"))


def tools_of(case: SearchCase, corpus: SearchIndex | None = None) -> dict[str, object]:
    return {tool.name: tool for tool in create_tools(case, NO_LATENCY, corpus=corpus)}


def executed(result: RunResult) -> Counter[str]:
    return Counter(
        json.dumps([record.node.tool, record.arguments], sort_keys=True)
        for record in result.records.values()
        if record.started_at is not None
    )


def queries(result: RunResult) -> list[str]:
    return [str((record.arguments or {})["query"]) for record in result.records.values()]


async def run_both(case: SearchCase, corpus: SearchIndex | None = None) -> tuple[RunResult, RunResult, list[Served]]:
    """The DAG agent and the ReAct agent on one case, each with its oracle; and the DAG oracle's replies."""
    dag_tools = create_tools(case, NO_LATENCY, corpus=corpus)
    dag_model = OracleDagModel(script=create_script(case, tools_of(case, corpus)), answer=case.answer, timing=FAST)
    planner = PlannerConfig(style="llmcompiler", max_replans=4)
    dag = await Agent(tools=dag_tools, model=dag_model, planner=planner).run(case.question)
    react_model = OracleReActModel(script=create_script(case, tools_of(case, corpus)), answer=case.answer, timing=FAST)
    react = await ReActAgent(tools=create_tools(case, NO_LATENCY, corpus=corpus), model=react_model, max_steps=40).run(
        case.question
    )
    return dag, react, dag_model.served


# -- reading what the run observed ----------------------------------------------------------------------


def test_find_phrase_ignores_case_accents_articles_and_near_spellings() -> None:
    text = '["Jim Kenney", "The Attack of the Clones", "Chichén Itzá", "Kiss and Tell (1945 film): a film"]'
    assert text[slice(*find_phrase(text, "jim kenny"))] == "Jim Kenney"  # type: ignore[misc]
    assert text[slice(*find_phrase(text, "Attack of the Clones"))] == "Attack of the Clones"  # type: ignore[misc]
    assert text[slice(*find_phrase(text, "Chichen Itza"))] == "Chichén Itzá"  # type: ignore[misc]
    assert text[slice(*find_phrase(text, "Kiss and Tell (1945 film)"))] == "Kiss and Tell (1945 film)"  # type: ignore[misc]
    assert find_phrase(text, "Jim Kenneth") is None
    assert find_phrase("Jimmy Kenney", "Jim Kenney") is None  # whole words; short ones exactly


def test_observations_are_read_from_the_dag_prompt_lines_whatever_the_outputs_hold() -> None:
    block = (
        '[1] search({"query": "a"}) -> A: one.\n\nB: two.\n'
        '[2] search({"query": "b"}) -> FAILED: the search timed out\n'
        '[3] search({"query": "c"}) -> ["x", "y"]'
    )
    observed = [(item.arguments["query"], item.output) for item in read_observations(block)]
    assert observed == [("a", "A: one.\n\nB: two."), ("b", None), ("c", '["x", "y"]')]
    assert read_observations("(no tool was called)") == []


# -- FanOutQA: rounds from the decomposition, texts from the observations --------------------------------

PICKS = ["Pat Burrell", "Mark Mulder", "Corey Patterson"]
DRAFT = SearchCase(
    id="draft",
    kind="fanoutqa",
    question="What is the batting hand of each of the first three picks in the 1998 MLB draft?",
    answer={"Pat Burrell": "Right", "Mark Mulder": "Left", "Corey Patterson": "Left"},
    plan_text="",
    decomposition=(
        SubQuestion(id="picks", question="Who were the first 3 picks in the 1998 MLB Draft?", answer=PICKS),
        *(
            SubQuestion(id=name, question=f"What is the batting hand of {name}?", answer="?", depends_on=("picks",))
            for name in PICKS
        ),
    ),
    tool_table={
        # The tool answers with other spellings than the record's decomposition: the oracle must follow it.
        "Who were the first 3 picks in the 1998 MLB Draft?": ["Pat Burrel", "Mark Mulder"],
        "What is the batting hand of Pat Burrel?": "Right",
        "What is the batting hand of Mark Mulder?": "Left",
    },
)


def independent(level: tuple[SubQuestion, ...], inherited: bool = False) -> set[str]:
    """The sub-questions that depend on nothing, themselves or through a sub-question they are part of."""
    found: set[str] = set()
    for sub in level:
        needs = inherited or bool(sub.depends_on)
        found |= independent(sub.parts, needs)
        if not needs:
            found.add(sub.question)
    return found


def test_fanoutqa_round_zero_asks_only_sub_questions_that_need_no_earlier_answer() -> None:
    for case in load_cases(search_data("fanoutqa_dev.jsonl"), limit=40):
        first = [str(call.arguments["query"]) for call in create_script(case, tools_of(case)).next_calls([])]
        assert first and set(first) <= independent(case.decomposition), case.id
    (case,) = load_cases(search_data("fanoutqa_dev.jsonl"), limit=1)
    assert [call.arguments for call in create_script(case, tools_of(case)).next_calls([])] == [
        {"query": "Who were the first 5 picks in the 1998 MLB Draft?"}
    ]


def test_fanoutqa_later_calls_are_written_from_the_observed_output() -> None:
    script = create_script(DRAFT, tools_of(DRAFT))
    first = Observation(tool="search", arguments={"query": DRAFT.decomposition[0].question}, output="")

    def second_round(output: str | None) -> list[str]:
        observed = [Observation(tool=first.tool, arguments=first.arguments, output=output)]
        return [str(call.arguments["query"]) for call in script.next_calls(observed)]

    assert second_round(json.dumps(PICKS)) == [f"What is the batting hand of {name}?" for name in PICKS]
    # A name spelled otherwise is written as the output spells it; a name the output lacks is not asked.
    assert second_round('["Pat Burrel", "Mark Mulder"]') == [
        "What is the batting hand of Pat Burrel?",
        "What is the batting hand of Mark Mulder?",
    ]
    assert second_round("No result") == []
    assert second_round(None) == []  # the first call failed
    assert isinstance(script, StepScript)
    assert script.tally([first])["unknowable"] == 3


@pytest.mark.asyncio
async def test_both_oracles_follow_what_the_tools_returned_not_the_records_answers() -> None:
    dag, react, served = await run_both(DRAFT)
    assert dag.status == react.status == "done"
    expected = [
        "Who were the first 3 picks in the 1998 MLB Draft?",
        "What is the batting hand of Pat Burrel?",
        "What is the batting hand of Mark Mulder?",
    ]
    assert queries(dag) == queries(react) == expected  # Corey Patterson never appeared in an output
    plans = [reply.text for reply in served if reply.role == "plan"]
    assert len(plans) == 2 and "Burrel" not in plans[0]  # round 0 cannot name a pick
    assert plans[1].startswith("2. search(query='What is the batting hand of Pat Burrel?')")
    assert dag.model_calls == 4 and len(dag.replans) == 1  # plan, join (replan), plan, join (finish)
    assert react.model_calls == 4  # three calls, then the answer


# -- HotpotQA: comparison in one round, bridge in two ------------------------------------------------------


@pytest.mark.asyncio
async def test_hotpotqa_bridge_takes_a_second_round_from_the_first_output(hotpot_corpus: SearchIndex) -> None:
    comparison, bridge = load_cases(search_data("hotpotqa_distractor.jsonl"), limit=2)
    assert (comparison.hop_type, bridge.hop_type) == ("comparison", "bridge")
    tools = tools_of(comparison, hotpot_corpus)
    one = await plan_oracle(create_script(comparison, tools), tools)
    assert [[call.arguments["query"] for call in calls] for calls in one.rounds] == [["Scott Derrickson", "Ed Wood"]]

    script = create_script(bridge, tools)
    two = await plan_oracle(script, tools)
    # The question names the film as "Kiss and Tell"; only the film's paragraph names Shirley Temple.
    rounds = [[call.arguments["query"] for call in calls] for calls in two.rounds]
    assert rounds == [["Kiss and Tell"], ["Shirley Temple"]]
    # An output that does not name her: the oracle cannot know her, and searches the question instead.
    searched = Observation(tool="search", arguments={"query": "Kiss and Tell"}, output="Kiss and Tell: a 1945 film.")
    assert [call.arguments["query"] for call in script.next_calls([searched])] == [bridge.question]


# -- equal calls -------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_repeated_gold_call_is_planned_once_and_both_agents_make_it_once() -> None:
    case = load_cases(search_data("fanoutqa_dev.jsonl"), limit=36)[35]
    gold = case.plan_text.count('search("Who are the founders of YouTube?"')
    plan = await plan_oracle(create_script(case, tools_of(case)), tools_of(case))
    texts = [call.arguments["query"] for call in plan.calls]
    assert gold == 2 and texts.count("Who are the founders of YouTube?") == 1 and len(texts) == len(set(texts))
    dag, react, _ = await run_both(case)
    assert executed(dag) == executed(react) and sum(executed(dag).values()) == len(plan.calls)
    assert not any("reused" in note for note in dag.notes)


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "limit"), [("fanoutqa_dev.jsonl", 4), ("hotpotqa_distractor.jsonl", 5)])
async def test_dag_and_react_execute_the_same_calls_on_a_data_slice(name: str, limit: int) -> None:
    reports = {
        agent: await run_search_bench(
            dataset=search_data(name), agent=agent, model="oracle", limit=limit, latency_ms=0, timing=FAST
        )
        for agent in ("dag", "react")
    }
    for report in reports.values():
        assert report["summary"]["calls_differ"] == 0 and report["summary"]["errors"] == 0
        assert all(item["calls_equal"] is True and item["calls_diff"] is None for item in report["items"])
    dag, react = reports["dag"]["items"], reports["react"]["items"]
    assert [item["planned_calls"] for item in dag] == [item["planned_calls"] for item in react]
    assert [item["tool_calls"] for item in dag] == [item["planned_calls"] for item in dag]
    # The DAG agent needed more than one round somewhere: the oracle is not handed the second hop up front.
    assert any(item["oracle"]["rounds"] > 1 and item["replans"] >= 1 for item in dag)


@pytest.mark.asyncio
async def test_an_observation_the_dag_prompt_cuts_short_shows_as_a_call_difference(tmp_path: Path) -> None:
    # Sixteen long names: listed in full they fit ReAct's 4,000-character observations, not the DAG
    # agent's 1,500 (the middle of a longer output is omitted), so the DAG oracle cannot ask about some.
    society = "of the Extraordinarily Long Named Society of Reading, its Villages, Hamlets, Farms and Meadows"
    names = [f"Member {index:02d} {society}" for index in range(16)]
    members = "Who are the members of the society?"
    asked = {name: f"Where was {name} born?" for name in names}
    record = {
        "id": "long",
        "question": "Where was each member of the society born?",
        "answer": "here",
        "oracle_plan_text": "",
        "decomposition": [
            {"id": "all", "question": members, "answer": names, "depends_on": []},
            *({"id": name, "question": born, "answer": "?", "depends_on": ["all"]} for name, born in asked.items()),
        ],
        "tool_table": {members: names} | dict.fromkeys(asked.values(), "here"),
    }
    assert 1500 < len(json.dumps(names)) < 4000
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    dag = await run_search_bench(dataset=path, agent="dag", latency_ms=0, timing=FAST)
    react = await run_search_bench(dataset=path, agent="react", latency_ms=0, timing=FAST)
    assert react["summary"]["calls_differ"] == 0
    assert dag["summary"]["calls_differ"] == 1
    (item,) = dag["items"]
    assert item["calls_equal"] is False and item["calls_diff"]["extra"] == []
    assert item["calls_diff"]["missing"] and all("born?" in call for call in item["calls_diff"]["missing"])


# -- the physical limit ------------------------------------------------------------------------------------


def record(node_id: int, query: str, *, after: frozenset[int] = frozenset()) -> NodeRecord:
    node = Node(id=node_id, tool="search", arguments={"query": query})
    return NodeRecord(node=node, dependencies=after, arguments={"query": query}, started_at=0.0)


def test_the_dag_bound_lets_tools_run_while_the_plan_streams() -> None:
    timing = GenerationTiming(first_token_s=0.5, token_s=0.1, prompt_token_s=0.001)
    plan = "1. search(query='a')\n2. search(query='b')\n3. join()"  # 51 characters: 13 tokens
    served = [Served(role="plan", prompt_tokens=100, text=plan), Served(role="join", prompt_tokens=0, text="x" * 40)]
    delays = {"a": 1.0, "b": 0.1, "later": 9.0}

    def delay(item: NodeRecord) -> float:
        return delays[str((item.arguments or {})["query"])]

    # Node 1 is complete with token 6 (at 0.6 + 0.5 s) and ends at 2.1 s; node 2 ends at 1.6 + 0.1 s; the
    # stream ends at 0.6 + 1.2 s; the joiner takes 0.5 + 0.9 s.
    # Node 3 is a later round's, not the `3. join()` of this plan: it is no part of this round.
    bound = create_dag_bound(served, {1: record(1, "a"), 2: record(2, "b"), 3: record(3, "later")}, timing, delay)
    assert bound.lower_bound_s == pytest.approx(2.1 + 1.4)
    assert bound.model_s == pytest.approx(1.8 + 1.4) and bound.tools_s == pytest.approx(0.3)
    (only,) = bound.rounds
    assert (only.prompt_tokens, only.plan_tokens) == (100, 13) and only.tools_s == pytest.approx(0.3)
    # A node that waits for another starts when that one ends.
    chained = create_dag_bound(served, {1: record(1, "a"), 2: record(2, "b", after=frozenset({1}))}, timing, delay)
    assert chained.lower_bound_s == pytest.approx(2.2 + 1.4)
    react = create_react_bound(served, {1: record(1, "a"), 2: record(2, "b")}, timing, delay)
    assert react.lower_bound_s == pytest.approx(1.8 + 1.4 + 1.1)


@pytest.mark.asyncio
@pytest.mark.parametrize("agent", ["dag", "react"])
async def test_the_lower_bound_never_exceeds_the_measured_wall_time(agent: str) -> None:
    timing = GenerationTiming(first_token_s=0.01, token_s=0.0005, prompt_token_s=0.00001)
    slices = (("fanoutqa_dev.jsonl", 2), ("hotpotqa_distractor.jsonl", 2), ("llmcompiler_parallelqa.jsonl", 1))
    for name, limit in slices:
        report = await run_search_bench(
            dataset=search_data(name),
            agent=agent,
            limit=limit,
            latency_ms=10,
            timing=timing,  # type: ignore[arg-type]
        )
        for item in report["items"]:
            assert 0 < item["lower_bound_s"] <= item["wall_s"], item
            assert 0 < item["efficiency"] <= 1
            parts = item["bound"]["model_s"] + item["bound"]["tools_s"]
            assert parts == pytest.approx(item["lower_bound_s"], abs=1e-3)
        assert 0 < report["summary"]["min_efficiency"] <= report["summary"]["efficiency"] + 1e-3 <= 1 + 1e-3


# -- stated costs ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_prompt_processing_costs_time_by_default_and_the_report_says_how_tokens_count() -> None:
    timing = GenerationTiming()
    assert timing.prompt_token_s == PROMPT_TOKEN_S > 0
    assert timing.reply_s(2000, 11) == pytest.approx(0.3 + 2000 * PROMPT_TOKEN_S + 10 * 0.02)
    report = await run_search_bench(dataset=search_data("fanoutqa_dev.jsonl"), limit=1, latency_ms=0, timing=FAST)
    assert "characters ÷ 4" in report["config"]["tokens"]
    assert report["config"]["generation"]["prompt_token_s"] == 0.0
    assert report["config"]["generation"]["prompt_token_source"] == "given"  # FAST states its own
    printed = io.StringIO()
    Console(file=printed, width=200).print(create_search_table(report))
    assert "characters ÷ 4" in printed.getvalue()


@pytest.mark.asyncio
async def test_the_oracle_cuts_its_reply_at_max_tokens_like_a_server() -> None:
    oracle = OracleDagModel(plan_text="1. search('a long enough plan')\n2. join()", answer="x", timing=FAST)
    request = ModelRequest(messages=(Message("user", "plan"),), settings=ModelSettings(max_tokens=3))
    response = await oracle.request(request)
    assert response.text == "1. search('a" and response.completions[0].finish_reason == "length"
    assert oracle.served[-1].text == response.text
