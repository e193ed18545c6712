"""Selecting one candidate of a SWE case without the judge.

The selector knows only what the agent side knows: each candidate's run (its `run_tests` calls, their
results in its own workspace, when its edits finished) and its final files. It never runs the case's
tests on a judged tree. Candidates are ranked by, in order:

1. its own verdict: its last run of the case's test command, in its own workspace, passed, and no edit
   finished after that run started (a later edit makes the run stale);
2. its own checks: how many distinct other commands it ran through `run_tests` (tests the model wrote
   and ran, as CodeMonkeys' candidates do) passed on their last run, none of them stale;
3. the case's tests left as given: no test file of the case changed or deleted and no conftest.py or
   pytest configuration added (`changed_tests`), since a pass on changed tests is weaker evidence;
4. agreement: how many candidates made exactly the same source change (a vote over identical fixes);
   a candidate that changed no source file gets no vote;
5. a source change over none (a candidate that changed no source file fixed nothing), then the
   smaller change in lines;
6. the lower index.

The rule reads nothing the judge produces, so a candidate that games its own tests can be selected (and
is then judged unresolved): selection can lose a fix that another candidate had (`pass_at_n` above
`resolved`), never invent one.
"""

from __future__ import annotations

import difflib
import hashlib
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agentdag.records import NodeRecord
from agentdag.result import RunResult

from .swe_data import SweCase
from .swe_judge import changed_tests, source_changes

__all__ = ["CandidateEvidence", "OwnVerdict", "gather_evidence", "select_candidate"]

OwnVerdict = Literal["passed", "failed", "stale", "not run"]
_EDITS = frozenset({"write_file", "patch_file"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateEvidence:
    """What the agent side knows about one candidate of a case.

    Attributes:
        index: the candidate's position (0-based).
        own_tests: its last run of the case's test command in its own workspace: "passed", "failed",
            "stale" (an edit finished after the run started) or "not run".
        checks_passed: distinct other commands it ran through `run_tests` whose last run passed, fresh.
        tests_changed: the case's test files it changed or deleted, conftest/config files it added.
        fix: a digest of its source change; None when it changed no source file.
        lines_changed: lines added or removed across its source change.
    """

    index: int
    own_tests: OwnVerdict
    checks_passed: int
    tests_changed: tuple[str, ...]
    fix: str | None
    lines_changed: int


def gather_evidence(
    case: SweCase, index: int, result: RunResult | None, snapshot: Mapping[str, bytes] | None
) -> CandidateEvidence:
    """The evidence of one candidate from its run (None if it failed to start) and its final files.

    Args:
        case: the case.
        index: the candidate's position.
        result: its agent run, or None when the run raised.
        snapshot: its workspace's files when its run ended, or None when they could not be read.
    """
    records = list(result.records.values()) if result is not None else []
    edits_done = [
        record.finished_at
        for record in records
        if record.node.tool in _EDITS and record.status == "done" and record.finished_at is not None
    ]
    last_runs: dict[tuple[str, ...], NodeRecord] = {}
    for record in sorted(_test_runs(records), key=lambda record: record.started_at or 0.0):
        command = (record.arguments or {}).get("command")
        last_runs[_command_key(command if isinstance(command, str) else case.test_command)] = record

    def verdict(record: NodeRecord) -> OwnVerdict:
        if any(finished > (record.started_at or 0.0) for finished in edits_done):
            return "stale"
        passed = isinstance(record.output, dict) and record.output.get("passed") is True
        return "passed" if passed else "failed"

    own_key = _command_key(case.test_command)
    own = last_runs.get(own_key)
    checks = [verdict(record) for key, record in last_runs.items() if key != own_key]
    changes = source_changes(case, snapshot) if snapshot is not None else {}
    return CandidateEvidence(
        index=index,
        own_tests=verdict(own) if own is not None else "not run",
        checks_passed=checks.count("passed"),
        tests_changed=tuple(changed_tests(case, snapshot)) if snapshot is not None else (),
        fix=_digest(changes) if changes else None,
        lines_changed=sum(_lines_changed(case.files.get(path), final) for path, final in changes.items()),
    )


def select_candidate(candidates: Sequence[CandidateEvidence]) -> int:
    """The index of the candidate the rule of the module docstring ranks first.

    Raises:
        ValueError: there are no candidates.
    """
    if not candidates:
        raise ValueError("no candidates to select from")
    votes = agreement(candidates)

    def rank(candidate: CandidateEvidence) -> tuple[bool, int, bool, int, bool, int, int]:
        return (
            candidate.own_tests != "passed",
            -candidate.checks_passed,
            bool(candidate.tests_changed),
            -votes[candidate.index],
            candidate.fix is None,
            candidate.lines_changed,
            candidate.index,
        )

    return min(candidates, key=rank).index


def agreement(candidates: Sequence[CandidateEvidence]) -> dict[int, int]:
    """Candidate index -> how many candidates made its source change (0 for no change)."""
    counts = Counter(candidate.fix for candidate in candidates if candidate.fix is not None)
    return {candidate.index: counts[candidate.fix] if candidate.fix else 0 for candidate in candidates}


def _test_runs(records: Sequence[NodeRecord]) -> list[NodeRecord]:
    return [
        record
        for record in records
        if record.node.tool == "run_tests" and record.status == "done" and record.started_at is not None
    ]


def _command_key(command: str) -> tuple[str, ...]:
    """A command as words, `python3` read as `python` (the workspace server runs both with its interpreter)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return (command,)
    return ("python", *words[1:]) if words[:1] == ["python3"] else tuple(words)


def _digest(changes: Mapping[str, bytes | None]) -> str:
    digest = hashlib.sha256()
    for path, content in sorted(changes.items()):
        size = -1 if content is None else len(content)  # -1: deleted
        digest.update(f"{path}\0{size}\0".encode() + (content or b""))
    return digest.hexdigest()


def _lines_changed(original: str | None, final: bytes | None) -> int:
    before = (original or "").splitlines()
    after = final.decode("utf-8", errors="replace").splitlines() if final is not None else []
    body = list(difflib.unified_diff(before, after, n=0, lineterm=""))[2:]  # past the ---/+++ header
    return sum(line.startswith(("+", "-")) for line in body)
