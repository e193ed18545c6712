"""Converters of the search data sets: FanOutQA, HotpotQA, and LLMCompiler's ParallelQA and Movie.

Two harness fields are derived here, not published by the sources; the rules reproduce the shared files:

* FanOutQA `oracle_plan_text`: the gold decomposition walked depth first, each sub-question's own
  sub-questions before it; every sub-question becomes `search("QUESTION")`, with `["$N", ...]` naming (in
  ascending order) the steps of the sub-questions it `depends_on` and of its own sub-questions. FanOutQA
  `tool_table`: every sub-question of the walk mapped to its answer (a question asked twice keeps its
  first position and its later answer).
* HotpotQA `gold_titles`: the titles of `supporting_facts`, each once, in order of appearance;
  `oracle_plan_text`: `search("TITLE")` for each gold title, where a bridge question's later titles take
  `["$1"]` (they need the first hop) and a comparison's are independent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, JsonValue

from .convert_common import ConversionError, Converted, SourceRecord, format_plan_text, read_json, validate

__all__ = ["convert_fanoutqa", "convert_hotpotqa", "convert_movie", "convert_parallelqa"]


def _dumps(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- FanOutQA -----------------------------------------------------------------------------------------


class _SubQuestion(SourceRecord):
    id: str
    question: str
    decomposition: list[_SubQuestion]
    answer: JsonValue
    depends_on: list[str]
    evidence: dict[str, JsonValue] | None


class _FanOutQuestion(SourceRecord):
    id: str
    question: str
    decomposition: list[_SubQuestion]
    answer: JsonValue
    categories: list[str]


def convert_fanoutqa(files: Mapping[str, Path]) -> Converted:
    """FanOutQA's dev JSON (a list of questions) as harness records, with the gold plan and tool table."""
    records, skipped = [], []
    for index, value in enumerate(_json_list(files["dev"])):
        question = validate(_FanOutQuestion, value, where=f"question {index}")
        try:
            plan_text, table = _fanout_plan(question.decomposition)
        except ConversionError as error:
            skipped.append(f"{question.id}: {error}")
            continue
        records.append(
            {
                "id": question.id,
                "question": question.question,
                "decomposition": [_dump_sub(sub) for sub in question.decomposition],
                "answer": question.answer,
                "categories": question.categories,
                "oracle_plan_text": plan_text,
                "tool_table": table,
            }
        )
    return Converted(records=tuple(records), skipped=tuple(skipped))


def _fanout_plan(decomposition: Sequence[_SubQuestion]) -> tuple[str, dict[str, JsonValue]]:
    calls: list[str] = []
    table: dict[str, JsonValue] = {}
    steps: dict[str, int] = {}

    def walk(level: Sequence[_SubQuestion]) -> None:
        for sub in level:
            walk(sub.decomposition)
            unknown = [name for name in sub.depends_on if name not in steps]
            if unknown:
                raise ConversionError(f"sub-question {sub.id} depends on {unknown[0]}, which is not asked before it")
            references = {steps[name] for name in sub.depends_on} | {steps[child.id] for child in sub.decomposition}
            call = f"search({_dumps(sub.question)}"
            if references:
                call += ", " + _dumps_list([f"${step}" for step in sorted(references)])
            calls.append(call + ")")
            steps[sub.id] = len(calls)
            table[sub.question] = sub.answer

    walk(decomposition)
    if not calls:
        raise ConversionError("the question has no decomposition")
    return format_plan_text(calls), table


def _dumps_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_dumps(item) for item in items) + "]"


def _dump_sub(sub: _SubQuestion) -> dict[str, Any]:
    return {
        "id": sub.id,
        "question": sub.question,
        "decomposition": [_dump_sub(child) for child in sub.decomposition],
        "answer": sub.answer,
        "depends_on": sub.depends_on,
        "evidence": sub.evidence,
    }


# -- HotpotQA -----------------------------------------------------------------------------------------


class _HotpotQuestion(SourceRecord):
    id: str = Field(alias="_id")
    answer: str
    question: str
    supporting_facts: list[tuple[str, int]]
    context: list[tuple[str, list[str]]]
    type: str
    level: str


def convert_hotpotqa(files: Mapping[str, Path]) -> Converted:
    """HotpotQA's dev distractor JSON as harness records, with the gold titles and the gold plan."""
    records, skipped = [], []
    for index, value in enumerate(_json_list(files["dev"])):
        question = validate(_HotpotQuestion, value, where=f"question {index}")
        titles = list(dict.fromkeys(title for title, _ in question.supporting_facts))
        if not titles or question.type not in ("bridge", "comparison"):
            skipped.append(
                f"{question.id}: no supporting facts" if not titles else f"{question.id}: type {question.type!r}"
            )
            continue
        calls = [
            f'search({_dumps(title)}, ["$1"])' if question.type == "bridge" and step > 1 else f"search({_dumps(title)})"
            for step, title in enumerate(titles, start=1)
        ]
        records.append(
            {
                "_id": question.id,
                "answer": question.answer,
                "question": question.question,
                "supporting_facts": [list(fact) for fact in question.supporting_facts],
                "context": [[title, sentences] for title, sentences in question.context],
                "type": question.type,
                "level": question.level,
                "oracle_plan_text": format_plan_text(calls),
                "gold_titles": titles,
            }
        )
    return Converted(records=tuple(records), skipped=tuple(skipped))


# -- LLMCompiler --------------------------------------------------------------------------------------


class _ParallelQuestion(SourceRecord):
    id: str
    question: str
    answer: str
    branch: int


class _MovieQuestion(SourceRecord):
    id: str
    question: str
    answer: str


def convert_parallelqa(files: Mapping[str, Path]) -> Converted:
    """LLMCompiler's ParallelQA JSON (id, question, answer, branch) as JSON Lines records."""
    records = [
        validate(_ParallelQuestion, value, where=f"question {index}").model_dump()
        for index, value in enumerate(_json_list(files["data"]))
    ]
    return Converted(records=tuple(records))


def convert_movie(files: Mapping[str, Path]) -> Converted:
    """LLMCompiler's Movie Recommendation JSON (id, question, answer) as JSON Lines records."""
    records = [
        validate(_MovieQuestion, value, where=f"question {index}").model_dump()
        for index, value in enumerate(_json_list(files["data"]))
    ]
    return Converted(records=tuple(records))


def _json_list(path: Path) -> list[Any]:
    document = read_json(path)
    if not isinstance(document, list):
        raise ConversionError(f"{path.name} is not a JSON list of questions")
    return document
