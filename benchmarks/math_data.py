"""The scaling benchmark's questions: a JSON Lines file of `question` and `answer`, or generated arithmetic.

GSM8K's test split (`math/gsm8k_test.jsonl` of a data folder, MIT) is the default; `data_paths` finds it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MathQuestion", "load_questions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MathQuestion:
    """A question with its correct answer."""

    question: str
    answer: str


def load_questions(source: Path | str, *, limit: int, seed: int = 0) -> list[MathQuestion]:
    """The first `limit` questions of a JSON Lines file, or `limit` generated ones for "arithmetic"."""
    if source == "arithmetic":
        return _arithmetic(limit, seed)
    questions: list[MathQuestion] = []
    with Path(source).open(encoding="utf-8") as lines:
        for line in lines:
            if len(questions) >= limit:
                break
            if line.strip():
                record = json.loads(line)
                questions.append(MathQuestion(question=str(record["question"]), answer=str(record["answer"]).strip()))
    return questions


def _arithmetic(count: int, seed: int) -> list[MathQuestion]:
    rng = random.Random(f"arithmetic|{seed}")
    questions: list[MathQuestion] = []
    for _ in range(count):
        kind = rng.choice(("+", "-", "*"))
        a, b = (rng.randint(2, 12), rng.randint(2, 9)) if kind == "*" else (rng.randint(10, 60), rng.randint(2, 30))
        value = a + b if kind == "+" else a - b if kind == "-" else a * b
        questions.append(MathQuestion(question=f"What is {a} {kind} {b}?", answer=str(value)))
    return questions
