"""Converter of the Berkeley Function Calling Leaderboard (v4) categories the harness uses.

BFCL publishes each category as two JSON Lines files: the questions (`id`, `question`, `function`) and,
under `possible_answer/`, the ground truth (`id`, `ground_truth`). A harness record is the two joined by
`id`; a question without ground truth is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import JsonValue

from .convert_common import Converted, SourceRecord, read_jsonl, validate

__all__ = ["convert_bfcl"]


class _Question(SourceRecord):
    id: str
    question: JsonValue
    function: JsonValue


class _Answer(SourceRecord):
    id: str
    ground_truth: JsonValue


def convert_bfcl(files: Mapping[str, Path]) -> Converted:
    """One BFCL category: its questions joined with their ground truth."""
    questions = [
        validate(_Question, value, where=f"{files['questions'].name}:{number}")
        for number, value in enumerate(read_jsonl(files["questions"]), start=1)
    ]
    answers = {
        answer.id: answer.ground_truth
        for answer in (
            validate(_Answer, value, where=f"{files['answers'].name}:{number}")
            for number, value in enumerate(read_jsonl(files["answers"]), start=1)
        )
    }
    records = [
        {
            "id": question.id,
            "question": question.question,
            "function": question.function,
            "ground_truth": answers[question.id],
        }
        for question in questions
        if question.id in answers
    ]
    skipped = [f"{question.id}: no ground truth" for question in questions if question.id not in answers]
    return Converted(records=tuple(records), skipped=tuple(skipped))
