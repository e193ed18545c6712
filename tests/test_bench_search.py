from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentdag.benchmarks.data_paths import DataNotFoundError, find_data_file
from agentdag.benchmarks.oracle import (
    GenerationTiming,
    OracleDagModel,
    answer_text,
    parse_plan_calls,
)
from agentdag.benchmarks.search import create_search_table, run_search_bench
from agentdag.benchmarks.search_data import (
    SearchCase,
    create_tools,
    load_cases,
    lookup_table,
    normalize_answer,
    parse_number,
    score_answer,
)
from agentdag.tools.search_index import Document, SearchIndex, SimulatedLatency
from rich.console import Console

from agentdag.messages import Message, ModelRequest, ModelResponse, ModelSettings

FAST = GenerationTiming(first_token_s=0.001, token_s=0.0002, prompt_token_s=0.0)
LATENCY = SimulatedLatency(mean_ms=3, seed=0)


def search_data(name: str) -> Path:
    try:
        return find_data_file(f"search/{name}")
    except DataNotFoundError as error:
        pytest.skip(str(error))


# -- scoring ------------------------------------------------------------------------------------------


def test_normalize_answer_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("  The Eiffel-Tower, of  course! ") == "eiffeltower of course"
    assert normalize_answer("An apple a day") == "apple day"


@pytest.mark.parametrize(
    ("prediction", "gold", "score"),
    [
        ("The Statue of Unity", "Statue of Unity", 1.0),
        ("statue of liberty", "Statue of Unity", 0.0),
        ("110", 100, 1.0),  # within +10%
        ("90", 100, 1.0),  # within -10%
        ("111", 100, 0.0),
        ("89", 100, 0.0),
        ("1,590,152", 1590152, 1.0),
        ("$1.03 billion", "$1.027 billion", 1.0),
        ("1027 million", "$1.027 billion", 1.0),
        ("about 50 minutes", "49.667 minutes", 0.0),  # a phrase around a number is not a number
        ("50 minutes", "49.667 minutes", 1.0),
        ("no", False, 1.0),
        ("False", False, 1.0),
        ("yes", False, 0.0),
        (None, "x", 0.0),
        (["Spain"], "Spain", 0.0),
    ],
)
def test_scalar_answers_match_exactly_or_within_ten_percent(prediction: object, gold: object, score: float) -> None:
    assert score_answer(prediction, gold) == score


def test_parse_number_reads_short_numeric_answers_only() -> None:
    assert parse_number("$2.071 billion") == pytest.approx(2.071e9)
    assert parse_number("42%") == 42
    assert parse_number("75.35 square kilometers") == pytest.approx(75.35)
    assert parse_number("There were 4 of them in 2019") is None
    assert parse_number("Spain") is None


def test_list_answers_score_the_fraction_of_gold_items_found() -> None:
    gold = ["Brown University", "Columbia University", "Cornell University", "Dartmouth College"]
    assert score_answer("Brown University and Cornell University", gold) == 0.5
    assert score_answer(json.dumps(gold), gold) == 1.0
    assert score_answer(["Spain", "France"], ["Spain", "France", "Italy", "Spain"]) == 0.75
    assert score_answer(["2006"], [2006, 1995]) == 1.0  # numbers match within 10%, years too
    assert score_answer("", gold) == 0.0


def test_dict_answers_score_values_stated_for_their_keys() -> None:
    gold = {"Pat Burrell": "Right", "Mark Mulder": "Left", "Corey Patterson": "Left", "JD Drew": "Left"}
    assert score_answer(json.dumps(gold), gold) == 1.0
    assert score_answer("Pat Burrell bats right, Mark Mulder left; Corey Patterson: left, JD Drew: left", gold) == 1.0
    # Each value must follow its own key: a value stated for another key does not count.
    swapped = '{"Pat Burrell": "Left", "Mark Mulder": "Right"}'
    assert score_answer(swapped, {"Pat Burrell": "Right", "Mark Mulder": "Left"}) == 0.0
    assert score_answer('{"Pat Burrell": "Right", "Mark Mulder": "Right"}', gold) == 0.25
    # Values that contain other keys or commas, and numbers within 10%.
    tricky = {"Spanish": "Signed Spanish", "English": "Manually coded English", "Tokyo": "2,017 m"}
    assert score_answer(json.dumps(tricky), tricky) == 1.0
    assert score_answer("Macau: 690,000; Maldives: 900,000", {"Macau": 680000, "Maldives": 521000}) == 0.5
    # A value stated without its key does not count.
    box_office = {"The Phantom Menace": "$1.027 billion", "The Rise of Skywalker": "$1.077 billion"}
    assert score_answer("The films made $1.05 billion each.", box_office) == 0.0


def test_every_gold_answer_scores_one_against_itself() -> None:
    for name in ("fanoutqa_dev.jsonl", "hotpotqa_distractor.jsonl"):
        for case in load_cases(search_data(name), limit=60):
            assert score_answer(answer_text(case.answer), case.answer) == 1.0, case.id


# -- tools ----------------------------------------------------------------------------------------------

TABLE = {
    "Who were the first 5 picks in the 1998 MLB Draft?": ["Pat Burrell", "Mark Mulder"],
    "What is the batting hand of Pat Burrell?": "Right",
    "What is the batting hand of Mark Mulder?": "Left",
}


def test_table_lookup_is_exact_then_fuzzy() -> None:
    assert lookup_table(TABLE, "what is the batting hand of pat burrell") == (
        "What is the batting hand of Pat Burrell?",
        "Right",
    )
    assert lookup_table(TABLE, "batting hand of Mark Mulder") == ("What is the batting hand of Mark Mulder?", "Left")
    assert lookup_table(TABLE, "first five picks of the 1998 MLB draft")[1] == ["Pat Burrell", "Mark Mulder"]  # type: ignore[index]
    assert lookup_table(TABLE, "capital of France") is None
    assert lookup_table(TABLE, "What is the batting hand of JD Drew?") is None  # a sibling is not a match


@pytest.mark.asyncio
async def test_fanoutqa_search_tool_answers_from_the_table() -> None:
    case = SearchCase(id="x", kind="fanoutqa", question="?", answer="", plan_text="", tool_table=TABLE)
    (search,) = create_tools(case, LATENCY)
    assert await search.call({"query": "What is the batting hand of Mark Mulder?"}) == "Left"
    assert await search.call({"query": "Pat Burrell batting hand"}) == "Right"
    assert "No result" in await search.call({"query": "the weather tomorrow"})


def test_simulated_latency_is_deterministic_per_call_and_seed() -> None:
    latency = SimulatedLatency(mean_ms=200, seed=1)
    delays = [latency.delay_s(f"query {index}") for index in range(400)]
    assert delays == [SimulatedLatency(mean_ms=200, seed=1).delay_s(f"query {index}") for index in range(400)]
    assert delays != [SimulatedLatency(mean_ms=200, seed=2).delay_s(f"query {index}") for index in range(400)]
    assert all(0.1 <= delay < 0.3 for delay in delays)
    assert sum(delays) / len(delays) == pytest.approx(0.2, rel=0.05)
    assert SimulatedLatency(mean_ms=0).delay_s("x") == 0.0


def test_fts5_ranks_paragraphs_by_bm25_and_looks_titles_up() -> None:
    corpus = SearchIndex.build(
        [
            Document("Scott Derrickson", "Scott Derrickson (born 1966) is an American director and screenwriter."),
            Document("Ed Wood", "Edward Davis Wood Jr. was an American filmmaker, actor and writer."),
            Document("Woodson, Arkansas", "Woodson is a census-designated place in Pulaski County, Arkansas."),
            Document("Ed Wood", "a duplicate title is indexed once"),
        ]
    )
    try:
        assert len(corpus) == 3
        assert corpus.search("American filmmaker Wood")[0].title == "Ed Wood"
        assert corpus.get("scott derrickson") == Document(
            "Scott Derrickson",
            "Scott Derrickson (born 1966) is an American director and screenwriter.",
        )
        assert len(corpus.search('"American" OR NEAR(')) == 2  # FTS5 syntax in a query is taken as words
        assert corpus.search("...") == []
    finally:
        corpus.close()


@pytest.mark.asyncio
async def test_hotpotqa_search_finds_the_gold_paragraph_in_the_whole_file() -> None:
    path = search_data("hotpotqa_distractor.jsonl")
    corpus = SearchIndex.from_hotpotqa(path)
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:3]]
        (case,) = load_cases(path, limit=1)
        (search,) = create_tools(case, LATENCY, corpus=corpus)
        for record in records:
            titles = [hit.title for hit in corpus.search(record["question"], limit=3)]
            assert set(record["gold_titles"]) & set(titles), record["question"]
        # Title lookup returns exactly that article; the gold plans search by title.
        text = await search.call({"query": "Scott Derrickson"})
        assert text.startswith("Scott Derrickson: Scott Derrickson (born July 16, 1966) is an American director")
        assert "\n\n" not in text
    finally:
        corpus.close()


# -- oracle models -----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_oracle_streams_the_plan_token_by_token_and_stops_like_a_server() -> None:
    oracle = OracleDagModel(plan_text='1. search("x")\n2. join()<END_OF_PLAN>', answer=["a"], timing=FAST)
    request = ModelRequest(messages=(Message("user", "plan"),), settings=ModelSettings(stop=("<END_OF_PLAN>",)))
    chunks = [chunk async for chunk in oracle.stream(request)]
    *texts, final = chunks
    assert isinstance(final, ModelResponse)
    assert all(isinstance(text, str) and len(text) <= 4 for text in texts)
    assert "".join(str(text) for text in texts) == final.text == '1. search("x")\n2. join()'
    assert final.usage.calls == 1 and final.usage.completion_tokens == len(texts)

    joiner = await oracle.request(
        ModelRequest(messages=(Message("user", "join"),), settings=ModelSettings(json_schema={"type": "object"}))
    )
    assert json.loads(joiner.text) == {
        "thought": "The observations answer the question.",
        "action": "finish",
        "answer": '["a"]',
        "reason": "",
    }
    assert joiner.usage.calls == 1


@pytest.mark.asyncio
async def test_oracle_plan_calls_map_context_lists_like_the_planner() -> None:
    (case,) = load_cases(search_data("llmcompiler_parallelqa.jsonl"), limit=1)
    tools = {tool.name: tool for tool in create_tools(case, LATENCY)}
    nodes = parse_plan_calls(case.plan_text, tools)
    assert [node.tool for node in nodes] == ["search", "search", "math"]
    assert nodes[2].arguments == {"problem": case.question, "context": ["$1", "$2"]}
    with pytest.raises(ValueError, match="takes 1 argument"):
        parse_plan_calls('1. search("a", "b")', tools)


# -- the harness -----------------------------------------------------------------------------------------

SUMMARY_FIELDS = {
    "cases",
    "accuracy",
    "correct",
    "errors",
    "wall_s",
    "mean_wall_s",
    "model_calls",
    "prompt_tokens",
    "completion_tokens",
    "tool_calls",
    "replans",
    "planned_calls",
    "calls_differ",
    "lower_bound_s",
    "efficiency",
    "min_efficiency",
    "oracle",
}
ITEM_FIELDS = {
    "id",
    "correct",
    "score",
    "wall_s",
    "tool_calls",
    "model_calls",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
    "replans",
    "status",
    "answer",
    "error",
    "planned_calls",
    "calls_equal",
    "calls_diff",
    "oracle",
    "lower_bound_s",
    "efficiency",
    "bound",
}


@pytest.mark.asyncio
@pytest.mark.parametrize("agent", ["dag", "react"])
async def test_run_search_bench_reports_summary_and_items(agent: str) -> None:
    seen: list[str] = []
    report = await run_search_bench(
        dataset=search_data("fanoutqa_dev.jsonl"),
        agent=agent,  # type: ignore[arg-type]
        model="oracle",
        limit=2,
        latency_ms=2,
        timing=FAST,
        on_case=lambda item: seen.append(item["id"]),
    )
    json.dumps(report)  # JSON-able
    assert set(report["summary"]) == SUMMARY_FIELDS
    assert report["summary"]["accuracy"] == 1.0 and report["summary"]["errors"] == 0
    assert report["summary"]["cases"] == 2 == len(report["items"])
    assert all(set(item) == ITEM_FIELDS for item in report["items"])
    assert seen == [item["id"] for item in report["items"]]
    assert report["config"]["agent"] == agent and report["config"]["dataset"] == "fanoutqa_dev.jsonl"
    Console(file=None, width=120, record=True, quiet=True).print(create_search_table(report))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name", ["hotpotqa_distractor.jsonl", "llmcompiler_parallelqa.jsonl", "llmcompiler_movie.jsonl"]
)
async def test_oracle_runs_every_data_set(name: str) -> None:
    for agent in ("dag", "react"):
        report = await run_search_bench(
            dataset=search_data(name), agent=agent, model="oracle", limit=2, latency_ms=1, timing=FAST
        )
        assert report["summary"]["accuracy"] == 1.0, report["items"]
        assert report["summary"]["tool_calls"] >= 4


@pytest.mark.asyncio
async def test_a_case_past_its_timeout_is_an_error_row_not_a_crash() -> None:
    report = await run_search_bench(
        dataset=search_data("fanoutqa_dev.jsonl"),
        agent="react",
        model="oracle",
        limit=2,
        latency_ms=1,
        timing=GenerationTiming(first_token_s=5.0, token_s=0.0),
        case_timeout_s=0.05,
    )
    assert report["summary"]["errors"] == 2 and report["summary"]["accuracy"] == 0.0
    assert all(item["error"] == "timed out after 0.05 s" and not item["correct"] for item in report["items"])


@pytest.mark.asyncio
async def test_a_timed_out_case_still_reports_the_model_calls_it_made() -> None:
    report = await run_search_bench(
        dataset=search_data("fanoutqa_dev.jsonl"),
        agent="react",
        model="oracle",
        limit=1,
        latency_ms=60_000,  # the first tool call never returns in time
        timing=GenerationTiming(first_token_s=0.0, token_s=0.0),
        case_timeout_s=0.3,
    )
    (item,) = report["items"]
    assert item["error"] == "timed out after 0.3 s"
    assert item["model_calls"] == 1 and item["tokens"] > 0


@pytest.mark.asyncio
async def test_unknown_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="oracle, local or an http"):
        await run_search_bench(dataset=search_data("fanoutqa_dev.jsonl"), model="gpt-5", limit=1, latency_ms=0)
