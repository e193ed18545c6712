"""Selecting a SWE candidate without the judge: the evidence a run leaves, and the ranking rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agentdag.benchmarks.swe_data import SweCase
from agentdag.benchmarks.swe_select import CandidateEvidence, agreement, gather_evidence, select_candidate

from agentdag.executor import NodeRecord
from agentdag.plan import Node
from agentdag.result import RunResult

CASE = SweCase(
    id="made",
    instructions="fix",
    files={"main.py": "a = 1\nb = 2\n", "test.py": "check\n"},
    test_command="python test.py",
    timeout_s=30,
    gold={},
)
BASE = CandidateEvidence(index=0, own_tests="passed", checks_passed=0, tests_changed=(), fix="f", lines_changed=2)


def record(node_id: int, tool: str, started: float, finished: float, **fields: Any) -> NodeRecord:
    arguments = fields.pop("arguments", {})
    return NodeRecord(
        node=Node(id=node_id, tool=tool, arguments=arguments),
        dependencies=frozenset(),
        status=fields.pop("status", "done"),
        arguments=arguments,
        output=fields.pop("output", None),
        started_at=started,
        finished_at=finished,
    )


def run_of(*records: NodeRecord) -> RunResult:
    return RunResult(status="done", answer="done", records={item.id: item for item in records})


def finished_run(passed: bool, command: str | None = None) -> dict[str, Any]:
    """The fields of a finished `run_tests` record."""
    return {"arguments": {"command": command} if command else {}, "output": {"passed": passed, "exit_code": 0}}


def test_the_last_run_of_the_case_tests_is_the_own_verdict() -> None:
    result = run_of(
        record(1, "run_tests", 0.0, 1.0, **finished_run(False)),
        record(2, "write_file", 1.0, 1.5, arguments={"path": "main.py"}),
        record(3, "run_tests", 2.0, 3.0, **finished_run(True, "python3 test.py")),  # python3 reads as python
    )
    evidence = gather_evidence(CASE, 0, result, {"main.py": b"a = 1\nb = 3\n", "test.py": b"check\n"})
    assert evidence.own_tests == "passed"
    assert evidence.lines_changed == 2  # one line removed, one added
    assert evidence.tests_changed == ()
    assert evidence.fix is not None


def test_an_edit_that_finishes_after_the_run_started_makes_it_stale() -> None:
    result = run_of(
        record(1, "run_tests", 1.0, 2.0, **finished_run(True)),
        record(2, "patch_file", 0.5, 1.5),  # ran alongside the tests (a parallel DAG can do that)
        record(3, "patch_file", 0.2, 3.0, status="failed"),  # a failed edit changed nothing
    )
    assert gather_evidence(CASE, 0, result, dict.fromkeys(CASE.files, b"")).own_tests == "stale"


def test_checks_are_the_other_commands_the_model_ran() -> None:
    result = run_of(
        record(1, "run_tests", 0.0, 1.0, **finished_run(False, "python my_check.py")),
        record(2, "run_tests", 1.0, 2.0, **finished_run(True, "python my_check.py")),  # the last run counts
        record(3, "run_tests", 2.0, 3.0, **finished_run(False, "python other.py")),
        record(4, "run_tests", 3.0, 4.0, **finished_run(True, "python -c pass")),
    )
    evidence = gather_evidence(CASE, 0, result, None)
    assert evidence.own_tests == "not run"
    assert evidence.checks_passed == 2


def test_a_failed_attempt_has_no_evidence() -> None:
    evidence = gather_evidence(CASE, 3, None, None)
    assert (evidence.index, evidence.own_tests, evidence.checks_passed, evidence.fix) == (3, "not run", 0, None)


def test_changed_tests_are_reported_and_new_test_modules_are_not() -> None:
    snapshot = {"main.py": b"a = 1\nb = 3\n", "test.py": b"pass\n", "test_mine.py": b"", "conftest.py": b""}
    evidence = gather_evidence(CASE, 0, None, snapshot)
    assert evidence.tests_changed == ("conftest.py", "test.py")


def candidates(*changes: dict[str, Any]) -> list[CandidateEvidence]:
    return [replace(BASE, index=index, **change) for index, change in enumerate(changes)]


def test_a_candidate_whose_own_tests_pass_wins_over_every_other_signal() -> None:
    pool = candidates(
        {"own_tests": "failed", "checks_passed": 5},
        {"own_tests": "stale"},
        {"own_tests": "passed", "tests_changed": ("test.py",), "fix": None, "lines_changed": 0},
    )
    assert select_candidate(pool) == 2


def test_then_checks_then_intact_tests_then_agreement_then_size_then_index() -> None:
    assert select_candidate(candidates({}, {"checks_passed": 1})) == 1
    assert select_candidate(candidates({"tests_changed": ("conftest.py",)}, {})) == 1
    assert select_candidate(candidates({"fix": "x"}, {"fix": "y"}, {"fix": "y"})) == 1
    assert select_candidate(candidates({"fix": None, "lines_changed": 0}, {"lines_changed": 40})) == 1
    assert select_candidate(candidates({"fix": "x", "lines_changed": 8}, {"fix": "y", "lines_changed": 3})) == 1
    assert select_candidate(candidates({"fix": "x"}, {"fix": "y"})) == 0


def test_no_change_gets_no_vote() -> None:
    pool = candidates({"fix": None, "lines_changed": 0}, {"fix": None, "lines_changed": 0}, {"fix": "x"})
    assert agreement(pool) == {0: 0, 1: 0, 2: 1}
    assert select_candidate(pool) == 2
