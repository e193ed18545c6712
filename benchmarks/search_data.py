"""Search benchmark data: loading the four data sets, scoring answers, and the offline `search` tools.

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
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentdag.tools.search_index import SearchIndex, SimulatedLatency

from agentdag.toolsets import FunctionTool, JsonValue, Tool, tool

from .convert_common import format_plan_text
from .data_paths import find_data_file

__all__ = [
    "DEFAULT_DATASET",
    "DatasetKind",
    "SearchCase",
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
class SearchCase:
    """One benchmark question.

    Attributes:
        kind: which data set the record comes from (decides the tools and the oracle plan).
        answer: the gold answer: a string, number, bool, list or dict (FanOutQA).
        plan_text: the gold plan in LLMCompiler's numbered format (built for ParallelQA and Movie).
        tool_table: FanOutQA's sub-question -> answer table (empty for the other sets).
    """

    id: str
    kind: DatasetKind
    question: str
    answer: JsonValue
    plan_text: str
    tool_table: Mapping[str, JsonValue] = field(default_factory=dict)


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
        )
    if "context" in record:
        return SearchCase(
            id=str(record["_id"]),
            kind="hotpotqa",
            question=question,
            answer=record["answer"],
            plan_text=record["oracle_plan_text"],
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


def parallel_query(question: str, index: int, branch: int) -> str:
    """The scripted search query of ParallelQA's branch `index` (the data set names no entities to search)."""
    return f"fact {index} of {branch} for: {question[:80]}"


def movies_of(question: str) -> list[str]:
    """The movies a Movie Recommendation question lists before its options."""
    first_line = question.split("\n", 1)[0]
    listed = first_line.split("similar to", 1)[-1]
    return [movie.strip() for movie in listed.split(", ") if movie.strip()]


# -- scoring ----------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9, "trillion": 1e12}
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?[$€£]?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(%|thousand|million|billion|trillion|bn|k|m)?(?![\w])",
    re.IGNORECASE,
)
_WHOLE_NUMBER = re.compile(r"\s*[-+]?[$€£]?\s?[\d,]*\d(\.\d+)?\s*(%|[a-z]+)?(\s+[a-z]+){0,2}\s*\.?\s*", re.IGNORECASE)
_TOLERANCE = 0.10


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse white space (LLMCompiler's and HotpotQA's rule)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def parse_number(text: str) -> float | None:
    """The number a short answer states (`"$1.2 billion"`, `"1,590,152"`, `"49.7 minutes"`), or None.

    Only answers that are a number, optionally with a currency, a scale word and up to two unit words,
    count; a sentence that mentions a number is not a number.
    """
    if not _WHOLE_NUMBER.fullmatch(text):
        return None
    numbers = _numbers_in(text)
    return numbers[0] if len(numbers) == 1 else None


def _numbers_in(text: str) -> list[float]:
    return [value for value, _ in _number_spans(text)]


def _number_spans(text: str) -> list[tuple[float, tuple[int, int]]]:
    found = []
    for match in _NUMBER.finditer(text):
        digits, fraction, scale = match.group(1), match.group(2) or "", (match.group(3) or "").lower()
        value = float(digits.replace(",", "") + fraction)
        if match.group(0).lstrip().startswith("-"):
            value = -value
        found.append((value * _SCALES.get(scale, 1.0), match.span()))
    return found


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _TOLERANCE * abs(b) if b else abs(a) <= _TOLERANCE


def _to_text(value: JsonValue) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(f"{key}: {_to_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "\n".join(_to_text(item) for item in value)
    return json.dumps(value)


def _parse_prediction(prediction: JsonValue) -> JsonValue:
    """A string that holds JSON (as a joiner's answer often does) is scored as the JSON value."""
    if isinstance(prediction, str) and prediction.strip()[:1] in ("{", "["):
        try:
            parsed: JsonValue = json.loads(prediction)
        except ValueError:
            return prediction
        return parsed
    return prediction


def _matches(prediction: str, gold: JsonValue) -> bool:
    """Exact match after normalisation; numbers within ±10%; booleans as yes/no or true/false."""
    if isinstance(gold, bool):
        return normalize_answer(prediction) in (("yes", "true") if gold else ("no", "false"))
    gold_number = float(gold) if isinstance(gold, int | float) else parse_number(str(gold))
    if gold_number is not None:
        predicted = parse_number(prediction)
        if predicted is not None:
            return _close(predicted, gold_number)
    return normalize_answer(prediction) == normalize_answer(_to_text(gold))


def _found_in(text: str, gold: JsonValue) -> bool:
    """Whether `text` states the gold item: as a phrase, or as a number within ±10%."""
    return bool(_spans_of(text, gold))


def _spans_of(text: str, gold: JsonValue) -> list[tuple[int, int]]:
    """Where `text` states the gold item: its words in order (case, punctuation and articles aside), a
    number within ±10% of a numeric item, or yes/true (no/false) for a boolean."""
    if isinstance(gold, bool):
        words = r"\b(yes|true)\b" if gold else r"\b(no|false)\b"
        return [match.span() for match in re.finditer(words, text, re.IGNORECASE)]
    gold_number = float(gold) if isinstance(gold, int | float) else parse_number(str(gold))
    spans = []
    if gold_number is not None:
        spans = [span for value, span in _number_spans(text) if _close(value, gold_number)]
    return spans + [match.span() for match in _phrase_pattern(_to_text(gold)).finditer(text)]


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [word for word in re.findall(r"[^\W_]+", phrase) if word.lower() not in ("a", "an", "the")]
    if not words:
        return re.compile(r"(?!x)x")  # matches nothing
    separator = r"[\W_]*(?:(?:a|an|the)[\W_]+)?"
    return re.compile(r"(?<![^\W_])" + separator.join(map(re.escape, words)) + r"(?![^\W_])", re.IGNORECASE)


def score_answer(prediction: JsonValue, gold: JsonValue) -> float:
    """Score a prediction against the gold answer, from 0 to 1.

    A scalar gold answer scores 1 on an exact match after normalisation (lower-case, no punctuation, no
    articles), numbers matching within ±10%. A list or dict gold answer (FanOutQA) scores the fraction of its
    items the prediction states: a list item anywhere in it; a dict value only after a mention of its key, with
    no other gold key mentioned in between (a value stated without its key does not count). A prediction that is a JSON
    string is read as JSON first.
    """
    if prediction is None:
        return 0.0
    predicted = _parse_prediction(prediction)
    if isinstance(gold, list):
        text = _to_text(predicted)
        return sum(_found_in(text, item) for item in gold) / len(gold) if gold else float(not text.strip())
    if isinstance(gold, Mapping):
        return _score_mapping(_to_text(predicted), gold)
    if isinstance(predicted, list | Mapping):
        return 0.0
    return float(_matches(_to_text(predicted), gold))


def _score_mapping(text: str, gold: Mapping[str, JsonValue]) -> float:
    if not gold:
        return 1.0
    mentions = {key: [match.span() for match in _phrase_pattern(key).finditer(text)] for key in gold}
    found = 0
    for key, value in gold.items():
        values = _spans_of(text, value)
        others = [span for other, spans in mentions.items() if other != key for span in spans]
        found += any(_stated_for(mention, stated, others) for mention in mentions[key] for stated in values)
    return found / len(gold)


def _stated_for(mention: tuple[int, int], value: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    """Whether a value follows a key's mention with no other key mentioned in between (outside the value)."""
    if value[0] < mention[0]:
        return False
    return not any(mention[1] <= start < value[0] for start, _ in others)


# -- simulated latency ------------------------------------------------------------------------------


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
        await latency.wait(f"search\x00{query}")
        found = lookup_table(table, query)
        if found is None:
            return f"No result for {query!r}; ask one simple factual question per search."
        return found[1]

    return search


def _hotpot_search(corpus: SearchIndex, latency: SimulatedLatency) -> FunctionTool:
    @tool(name="search", read_only=True)
    async def search(query: str) -> str:
        """Search Wikipedia: an exact article title returns that article; other text returns the best 3 matches."""
        await latency.wait(f"search\x00{query}")
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
        await latency.wait(f"search\x00{query}")
        return scripted_answer("search", query)

    return search


def _scripted_math(latency: SimulatedLatency) -> FunctionTool:
    @tool(name="math", read_only=True)
    async def math(problem: str, context: list[str] | None = None) -> str:
        """Solve a math problem stated in words, using the facts in `context` (earlier results)."""
        await latency.wait(f"math\x00{problem}\x00{json.dumps(context)}")
        return scripted_answer("math", f"{problem} | {json.dumps(context)}")

    return math
