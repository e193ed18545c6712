"""Search benchmark data: loading the four data sets and the offline `search` tools (scoring: `search_scoring`).

The data sets live outside the repository, in a data folder's `search/` (`--data DIR`, `$AGENTDAG_DATA`,
`../shared/data`, or the cache `agentdag data fetch` fills; see `data_paths`). FanOutQA (CC BY-SA 4.0),
HotpotQA (CC BY-SA 4.0), and LLMCompiler's ParallelQA and Movie Recommendation (MIT; Movie derives from
BIG-bench, Apache-2.0).

Every tool answers from the data alone, with a seeded simulated latency standing in for a web API:

* FanOutQA: the record's `tool_table` (sub-question -> answer), exact then fuzzy lookup;
* HotpotQA: title lookup, else BM25 full-text search over the paragraphs of the whole file, with the
  index of the `search` MCP server (`agentdag.tools.search_index`, SQLite FTS5);
* ParallelQA and Movie ship no corpus: the tools return a deterministic string derived from the query, so
  these sets measure orchestration only.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentdag.tools.search_index import SearchIndex, SimulatedLatency

from agentdag.toolsets import FunctionTool, JsonValue, Tool, tool

from .convert_common import format_plan_text
from .data_paths import find_data_file
from .search_scoring import normalize_answer, parse_number, score_answer

__all__ = [
    "DEFAULT_DATASET",
    "DatasetKind",
    "SearchCase",
    "SubQuestion",
    "call_key",
    "create_tools",
    "default_dataset",
    "load_cases",
    "lookup_table",
    "normalize_answer",
    "parse_number",
    "score_answer",
    "scripted_answer",
]

DatasetKind = Literal["fanoutqa", "hotpotqa", "parallelqa", "movie"]
DEFAULT_DATASET = "fanoutqa_dev.jsonl"


# -- data -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SubQuestion:
    """One sub-question of FanOutQA's gold decomposition.

    Attributes:
        id: its id in the record.
        question: its wording.
        answer: its gold answer.
        depends_on: ids of the sub-questions whose answers it needs.
        parts: its own sub-questions (FanOutQA nests them).
    """

    id: str
    question: str
    answer: JsonValue
    depends_on: tuple[str, ...] = ()
    parts: tuple[SubQuestion, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchCase:
    """One benchmark question.

    Attributes:
        kind: which data set the record comes from (decides the tools and the oracle).
        answer: the gold answer: a string, number, bool, list or dict (FanOutQA).
        plan_text: the record's gold plan in LLMCompiler's numbered format (built for ParallelQA and Movie).
        tool_table: FanOutQA's sub-question -> answer table (empty for the other sets).
        decomposition: FanOutQA's gold sub-questions (empty for the other sets).
        hop_type: HotpotQA's question type, "bridge" or "comparison" (None for the other sets).
        gold_titles: HotpotQA's supporting paragraphs' titles, in the order of `supporting_facts`.
    """

    id: str
    kind: DatasetKind
    question: str
    answer: JsonValue
    plan_text: str
    tool_table: Mapping[str, JsonValue] = field(default_factory=dict)
    decomposition: tuple[SubQuestion, ...] = ()
    hop_type: Literal["bridge", "comparison"] | None = None
    gold_titles: tuple[str, ...] = ()


def default_dataset(data_dir: Path | None = None) -> Path:
    """The default search data set, FanOutQA's dev split, from the data folders (see `data_paths`).

    Raises:
        DataNotFoundError: no data folder has it.
    """
    return find_data_file(f"search/{DEFAULT_DATASET}", data_dir=data_dir)


def load_cases(path: Path, *, limit: int | None = None) -> list[SearchCase]:
    """Read the first `limit` records of a search data set (JSON Lines) as cases.

    Raises:
        ValueError: a record matches none of the four data sets.
    """
    cases: list[SearchCase] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if limit is not None and len(cases) >= limit:
                break
            if line.strip():
                cases.append(_to_case(json.loads(line), where=f"{path.name}:{number}"))
    return cases


def _to_case(record: dict[str, Any], *, where: str) -> SearchCase:
    question = str(record["question"])
    if "tool_table" in record:
        return SearchCase(
            id=str(record["id"]),
            kind="fanoutqa",
            question=question,
            answer=record["answer"],
            plan_text=record["oracle_plan_text"],
            tool_table=record["tool_table"],
            decomposition=tuple(_sub_question(item) for item in record.get("decomposition", [])),
        )
    if "context" in record:
        return SearchCase(
            id=str(record["_id"]),
            kind="hotpotqa",
            question=question,
            answer=record["answer"],
            plan_text=record["oracle_plan_text"],
            hop_type="comparison" if record.get("type") == "comparison" else "bridge",
            gold_titles=tuple(record.get("gold_titles", [])),
        )
    if "branch" in record:
        branch = int(record["branch"])
        queries = [parallel_query(question, index, branch) for index in range(1, branch + 1)]
        final = f"math({json.dumps(question)}, {json.dumps([f'${index}' for index in range(1, branch + 1)])})"
        return SearchCase(
            id=str(record["id"]),
            kind="parallelqa",
            question=question,
            answer=record["answer"],
            plan_text=format_plan_text([f"search({json.dumps(query)})" for query in queries] + [final]),
        )
    if "Options:" in question:
        movies = movies_of(question)
        return SearchCase(
            id=str(record["id"]),
            kind="movie",
            question=question,
            answer=record["answer"],
            plan_text=format_plan_text([f"search({json.dumps(movie)})" for movie in movies]),
        )
    raise ValueError(f"{where}: the record matches none of FanOutQA, HotpotQA, ParallelQA or Movie")


def _sub_question(record: dict[str, Any]) -> SubQuestion:
    return SubQuestion(
        id=str(record["id"]),
        question=str(record["question"]),
        answer=record["answer"],
        depends_on=tuple(str(item) for item in record.get("depends_on", [])),
        parts=tuple(_sub_question(item) for item in record.get("decomposition", [])),
    )


def parallel_query(question: str, index: int, branch: int) -> str:
    """The scripted search query of ParallelQA's branch `index` (the data set names no entities to search)."""
    return f"fact {index} of {branch} for: {question[:80]}"


def movies_of(question: str) -> list[str]:
    """The movies a Movie Recommendation question lists before its options."""
    first_line = question.split("\n", 1)[0]
    listed = first_line.split("similar to", 1)[-1]
    return [movie.strip() for movie in listed.split(", ") if movie.strip()]


# -- FanOutQA lookup --------------------------------------------------------------------------------

_FUZZY_CUTOFF = 0.6
_QUESTION_WORDS = frozenset(
    {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was", "were"}
    | {"do", "does", "did", "of", "in", "on", "to", "for", "by", "many", "much"}
)


def lookup_table(table: Mapping[str, JsonValue], query: str) -> tuple[str, JsonValue] | None:
    """The table entry for `query`: exact (ignoring case and punctuation), else the closest question, else None.

    Closeness is the Dice overlap of content words (question words such as "what is ... of" aside), a word
    matching a near-identical spelling; below 0.6 nothing matches. Whole-string similarity is not used: sibling
    questions share their wording ("What is the batting hand of X?") and differ only in the entity.
    """
    wanted = normalize_answer(query)
    keys = {normalize_answer(key): key for key in table}
    if wanted in keys:
        key = keys[wanted]
        return key, table[key]
    best_key, best = None, 0.0
    wanted_words = _content_words(wanted)
    for normal, key in keys.items():
        words = _content_words(normal)
        total = len(words) + len(wanted_words)
        matched = sum(any(_same_word(word, other) for other in words) for word in wanted_words)
        score = 2 * min(matched, len(words)) / total if total else 0.0
        if score > best:
            best_key, best = key, score
    if best_key is None or best < _FUZZY_CUTOFF:
        return None
    return best_key, table[best_key]


def _content_words(normalized: str) -> set[str]:
    return {word for word in normalized.split() if word not in _QUESTION_WORDS}


def _same_word(left: str, right: str) -> bool:
    return left == right or (
        min(len(left), len(right)) >= 4 and difflib.SequenceMatcher(None, left, right).ratio() >= 0.85
    )


# -- tools ------------------------------------------------------------------------------------------


def call_key(tool_name: str, arguments: Mapping[str, JsonValue]) -> str:
    """What a tool's simulated latency is keyed on: its name and its (resolved) arguments.

    The tools wait `latency.delay_s(call_key(...))`, so the delay of any call is known from the call alone
    (the search benchmark's lower bound reads it from there).
    """
    if tool_name == "math":
        return f"math\x00{arguments.get('problem')}\x00{json.dumps(arguments.get('context'))}"
    return f"{tool_name}\x00{arguments.get('query')}"


def scripted_answer(tool_name: str, query: str) -> str:
    """The deterministic reply of a scripted tool (ParallelQA, Movie) to `query`."""
    digest = hashlib.sha256(f"{tool_name}\x00{query}".encode()).hexdigest()[:8]
    return f"{tool_name} result {digest} for {query!r}"


def create_tools(case: SearchCase, latency: SimulatedLatency, *, corpus: SearchIndex | None = None) -> list[Tool]:
    """The tools for one case: `search` (and `math` for ParallelQA), answering offline after a simulated delay.

    Raises:
        ValueError: a HotpotQA case without a corpus.
    """
    if case.kind == "fanoutqa":
        return [_fanout_search(case.tool_table, latency)]
    if case.kind == "hotpotqa":
        if corpus is None:
            raise ValueError("HotpotQA cases need the corpus of the whole file")
        return [_hotpot_search(corpus, latency)]
    tools: list[Tool] = [_scripted_search(latency)]
    if case.kind == "parallelqa":
        tools.append(_scripted_math(latency))
    return tools


def _fanout_search(table: Mapping[str, JsonValue], latency: SimulatedLatency) -> FunctionTool:
    @tool(name="search", read_only=True)
    async def search(query: str) -> JsonValue:
        """Look up the answer to one short factual question (one entity, one fact); returns the answer."""
        await latency.wait(call_key("search", {"query": query}))
        found = lookup_table(table, query)
        if found is None:
            return f"No result for {query!r}; ask one simple factual question per search."
        return found[1]

    return search


def _hotpot_search(corpus: SearchIndex, latency: SimulatedLatency) -> FunctionTool:
    @tool(name="search", read_only=True)
    async def search(query: str) -> str:
        """Search Wikipedia: an exact article title returns that article; other text returns the best 3 matches."""
        await latency.wait(call_key("search", {"query": query}))
        exact = corpus.get(query)
        hits = (
            [(exact.title, exact.text)]
            if exact is not None
            else [(hit.title, hit.text) for hit in corpus.search(query, limit=3)]
        )
        if not hits:
            return f"No result for {query!r}."
        return "\n\n".join(f"{title}: {body}" for title, body in hits)

    return search


def _scripted_search(latency: SimulatedLatency) -> FunctionTool:
    @tool(name="search", read_only=True)
    async def search(query: str) -> str:
        """Search the web for `query` and return the top result."""
        await latency.wait(call_key("search", {"query": query}))
        return scripted_answer("search", query)

    return search


def _scripted_math(latency: SimulatedLatency) -> FunctionTool:
    @tool(name="math", read_only=True)
    async def math(problem: str, context: list[str] | None = None) -> str:
        """Solve a math problem stated in words, using the facts in `context` (earlier results)."""
        await latency.wait(call_key("math", {"problem": problem, "context": context}))
        return scripted_answer("math", f"{problem} | {json.dumps(context)}")

    return math
