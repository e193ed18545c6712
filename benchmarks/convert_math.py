"""Converter of GSM8K's test split.

The release's `answer` is the worked solution, ending in `#### NUMBER`. A harness record keeps it as
`solution` and takes `answer` from after the last `####`, without thousands separators; `id` is
`gsm8k/test/INDEX`, the record's 0-based position in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .convert_common import Converted, SourceRecord, read_jsonl, validate

__all__ = ["convert_gsm8k"]


class _Problem(SourceRecord):
    question: str
    answer: str


def convert_gsm8k(files: Mapping[str, Path]) -> Converted:
    """GSM8K's `test.jsonl` as harness records: `id`, `question`, `solution` and the final `answer`."""
    records, skipped = [], []
    for index, value in enumerate(read_jsonl(files["test"])):
        problem = validate(_Problem, value, where=f"{files['test'].name}:{index + 1}")
        if "####" not in problem.answer:
            skipped.append(f"gsm8k/test/{index}: the solution has no '#### answer' line")
            continue
        final = problem.answer.rsplit("####", 1)[1].strip().replace(",", "")
        records.append(
            {"id": f"gsm8k/test/{index}", "question": problem.question, "solution": problem.answer, "answer": final}
        )
    return Converted(records=tuple(records), skipped=tuple(skipped))
