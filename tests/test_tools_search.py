from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agentdag.benchmarks.data_paths import DataNotFoundError, find_data_file
from agentdag.tools.search import create_server, main
from agentdag.tools.search_index import (
    Document,
    SearchIndex,
    SimulatedLatency,
    read_hotpotqa_paragraphs,
    read_jsonl_documents,
    to_match_expression,
)
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

DOCUMENTS = [
    Document("AT&T", "AT&T Inc. is an American multinational telecommunications holding company."),
    Document("Ada Lovelace", "Ada Lovelace was an English mathematician, known for the Analytical Engine."),
    Document("Charles Babbage", "Charles Babbage designed the Analytical Engine, a mechanical computer."),
    Document("ada lovelace", "A duplicate title, ignoring case: the first one wins."),
    Document("Python (programming language)", "Python is a high-level programming language."),
]
HOSTILE_QUERIES = [
    '"AT&T" OR (',
    "NEAR(ada",
    "*",
    'a"b',
    "title:ada",
    "-babbage ^engine",
    "AND OR NOT",
    "",
    "   ",
    "(((",
    "'; DROP TABLE documents; --",
    "x" * 5000,
    " ".join(f"word{number}" for number in range(500)),
    "ünïcödé 日本語",
]


def hotpotqa_file() -> Path:
    try:
        return find_data_file("search/hotpotqa_distractor.jsonl")
    except DataNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture
def index() -> Any:
    built = SearchIndex.build(DOCUMENTS)
    yield built
    built.close()


def test_index_deduplicates_titles_ignoring_case(index: SearchIndex) -> None:
    assert len(index) == 4
    assert index.titles == ["AT&T", "Ada Lovelace", "Charles Babbage", "Python (programming language)"]
    found = index.get("ADA LOVELACE ")
    assert found is not None
    assert found.text.startswith("Ada Lovelace was")


def test_search_ranks_by_bm25(index: SearchIndex) -> None:
    hits = index.search("analytical engine babbage", limit=5)
    assert [hit.title for hit in hits][:2] == ["Charles Babbage", "Ada Lovelace"]
    assert hits[0].score > hits[1].score >= 0  # a word in half the corpus weighs almost nothing
    assert index.search("engines", limit=1)[0].title in {"Charles Babbage", "Ada Lovelace"}  # porter stemming


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_queries_never_error(index: SearchIndex, query: str) -> None:
    assert isinstance(index.search(query), list)


def test_match_expression_quotes_every_word() -> None:
    assert to_match_expression('"AT&T" OR (') == '"at" OR "t" OR "or"'
    assert to_match_expression("?!") is None


def test_readers(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        json.dumps({"name": "A", "body": ["one.", "two."]}) + "\n\n" + json.dumps({"name": "B", "body": "x"}) + "\n"
    )
    assert list(read_jsonl_documents(corpus, title_field="name", text_field="body")) == [
        Document("A", "one. two."),
        Document("B", "x"),
    ]
    with pytest.raises(ValueError, match=r"docs.jsonl:1: .*'title'"):
        list(read_jsonl_documents(corpus))
    hotpot = tmp_path / "hotpot.jsonl"
    hotpot.write_text(json.dumps({"context": [["T", ["First.", " Second."]]]}) + "\n")
    assert list(read_hotpotqa_paragraphs(hotpot)) == [Document("T", "First. Second.")]


def test_index_file_is_reused_while_the_corpus_is_unchanged(tmp_path: Path) -> None:
    corpus, cache = tmp_path / "docs.jsonl", tmp_path / "index.sqlite"
    corpus.write_text(json.dumps({"title": "A", "text": "alpha"}) + "\n")
    SearchIndex.from_jsonl(corpus, cache=cache).close()
    assert cache.exists()
    stamp = cache.stat().st_mtime_ns
    reopened = SearchIndex.from_jsonl(corpus, cache=cache)
    assert reopened.titles == ["A"]
    reopened.close()
    assert cache.stat().st_mtime_ns == stamp
    corpus.write_text(json.dumps({"title": "B", "text": "beta gamma"}) + "\n")
    rebuilt = SearchIndex.from_jsonl(corpus, cache=cache)
    assert rebuilt.titles == ["B"]
    rebuilt.close()
    assert SearchIndex.open(cache, fingerprint="something else") is None
    cache.write_text("not a database")
    assert SearchIndex.open(cache) is None


def test_simulated_latency_is_seeded_per_call() -> None:
    latency = SimulatedLatency(mean_ms=100, seed=1)
    assert latency.delay_s("a") == SimulatedLatency(mean_ms=100, seed=1).delay_s("a")
    assert latency.delay_s("a") != SimulatedLatency(mean_ms=100, seed=2).delay_s("a")
    assert all(0.05 <= latency.delay_s(str(key)) < 0.15 for key in range(50))
    assert SimulatedLatency(mean_ms=0).delay_s("a") == 0


# -- the MCP server, in process -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_server_lists_read_only_tools(index: SearchIndex) -> None:
    async with Client(create_server(index)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"search", "lookup"}
    for tool in tools.values():
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.idempotent_hint is True
    assert tools["search"].input_schema["properties"]["k"]["default"] == 5


@pytest.mark.asyncio
async def test_search_and_lookup_tools(index: SearchIndex) -> None:
    async with Client(create_server(index)) as client:
        result = await client.call_tool("search", {"query": "analytical engine", "k": 1})
        assert not result.is_error
        assert result.structured_content is not None
        (hit,) = result.structured_content["result"]
        assert set(hit) == {"title", "text", "score"}
        for query in HOSTILE_QUERIES:
            result = await client.call_tool("search", {"query": query})
            assert not result.is_error, query
        assert (await client.call_tool("search", {"query": "x", "k": 0})).is_error
        exact = await client.call_tool("lookup", {"title": "AT&T"})
        assert exact.structured_content == {"title": "AT&T", "text": DOCUMENTS[0].text}
        folded = await client.call_tool("lookup", {"title": "charles babbage"})
        assert folded.structured_content is not None
        assert folded.structured_content["title"] == "Charles Babbage"
        fuzzy = await client.call_tool("lookup", {"title": "Charles Babage"})
        assert fuzzy.structured_content is not None
        assert fuzzy.structured_content["title"] == "Charles Babbage"
        missing = await client.call_tool("lookup", {"title": "Ada Lovelaces mother"})
    assert missing.is_error
    message = missing.content[0].text  # type: ignore[union-attr]
    assert "no document titled 'Ada Lovelaces mother'" in message
    assert "'Ada Lovelace'" in message


@pytest.mark.asyncio
async def test_hotpotqa_search_finds_the_gold_paragraphs() -> None:
    path = hotpotqa_file()
    started = time.perf_counter()
    index = SearchIndex.from_hotpotqa(path)
    assert time.perf_counter() - started < 5
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:5]]
    try:
        async with Client(create_server(index)) as client:
            for record in records:
                result = await client.call_tool("search", {"query": record["question"], "k": 5})
                assert result.structured_content is not None
                titles = {hit["title"] for hit in result.structured_content["result"]}
                assert titles & set(record["gold_titles"]), record["question"]
            lookup = await client.call_tool("lookup", {"title": "scott derickson"})
            assert lookup.structured_content is not None
            assert lookup.structured_content["title"] == "Scott Derrickson"
    finally:
        index.close()


@pytest.mark.asyncio
async def test_latency_delays_calls(index: SearchIndex) -> None:
    latency = SimulatedLatency(mean_ms=40, seed=0)
    async with Client(create_server(index, latency=latency)) as client:
        started = time.perf_counter()
        await client.call_tool("search", {"query": "ada"})
        elapsed = time.perf_counter() - started
    assert elapsed >= latency.delay_s("search\x00ada")


# -- the real server, over stdio ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stdio_server_with_an_index_file(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"name": doc.title, "body": doc.text}) + "\n" for doc in DOCUMENTS))
    parameters = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "agentdag.tools.search",
            "--corpus",
            str(corpus),
            "--title-field",
            "name",
            "--text-field",
            "body",
            "--index",
            str(tmp_path / "index.sqlite"),
            "--latency-ms",
            "5",
            "--seed",
            "3",
        ],
    )
    async with Client(parameters) as client:
        result = await client.call_tool("search", {"query": '"AT&T" OR (', "k": 2})
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["result"][0]["title"] == "AT&T"
        missing = await client.call_tool("lookup", {"title": "Grace Hopper"})
        assert missing.is_error
    assert (tmp_path / "index.sqlite").exists()


def test_command_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert "--corpus" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="cannot index the corpus"):
        main(["--corpus", str(tmp_path / "missing.jsonl")])
