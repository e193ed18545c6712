"""SWE benchmark data: the cases of `../shared/data/swe/` (QuixBugs, Exercism Python, HumanEvalFix).

Each record holds the starting files of a workspace, the instructions, the test command (run in the
workspace root), its timeout and a gold fix; see `shared/data/README.md`. QuixBugs (MIT), Exercism Python
(MIT), HumanEvalFix/HumanEval (MIT).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["DEFAULT_DATASET", "SweCase", "load_swe_cases"]

DEFAULT_DATASET = "quixbugs.jsonl"


@dataclass(frozen=True, slots=True, kw_only=True)
class SweCase:
    """One code task: starting files, instructions, the test command, and a gold fix.

    Attributes:
        id: the record's id.
        instructions: what the agent is asked to do.
        files: relative path -> content of the starting workspace (the case's own tests among them).
        test_command: run in the workspace root, split like a shell would but run without one.
        timeout_s: the test run's time limit.
        gold: relative path -> content of a correct fix.
    """

    id: str
    instructions: str
    files: Mapping[str, str]
    test_command: str
    timeout_s: float
    gold: Mapping[str, str]


def load_swe_cases(path: Path, *, limit: int | None = None) -> list[SweCase]:
    """Read the cases of a JSON Lines file (the first `limit`).

    Raises:
        ValueError: a line is not a SWE case (missing field, empty test command, a path that leaves the
            workspace).
    """
    cases: list[SweCase] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if limit is not None and len(cases) >= limit:
                break
            if not line.strip():
                continue
            try:
                cases.append(_to_case(json.loads(line)))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a SWE case ({error})") from None
    return cases


def _to_case(record: dict[str, Any]) -> SweCase:
    case = SweCase(
        id=str(record["id"]),
        instructions=str(record["instructions"]),
        files={_relative(path): str(content) for path, content in dict(record["files"]).items()},
        test_command=str(record["test_command"]),
        timeout_s=float(record.get("timeout_s", 60)),
        gold={_relative(path): str(content) for path, content in dict(record["gold"]).items()},
    )
    if not shlex.split(case.test_command):
        raise ValueError("the test command is empty")
    return case


def _relative(path: str) -> str:
    """`path` in its plain form (`a/b.py`), refused when it is absolute or climbs out of the workspace."""
    pure = PurePosixPath(path)
    if not pure.parts or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ValueError(f"the path {path!r} is not a plain relative path inside the workspace")
    return pure.as_posix()
