"""The SWE judge: what counts as a test, the restored tree, gamed trees that pass in place and fail it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from agentdag.benchmarks.swe import TAMPER_HOOK, TAMPERED_TEST
from agentdag.benchmarks.swe_data import SweCase, load_swe_cases
from agentdag.benchmarks.swe_judge import (
    changed_tests,
    check_test_runners,
    is_test_path,
    judge_snapshot,
    judged_files,
    named_paths,
    snapshot_files,
    source_changes,
    write_files,
)
from agentdag.tools.confine import run_command

DATA = Path(__file__).parent.parent.parent / "shared" / "data" / "swe"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="the SWE data sets live in ../shared/data/swe")


def first_case(name: str) -> SweCase:
    """The first case of a data set; for QuixBugs the third (bucketsort fails fast; bitcount loops forever)."""
    cases = load_swe_cases(DATA / f"{name}.jsonl", limit=3)
    return cases[2] if name == "quixbugs" else cases[0]


def make_case(files: dict[str, str], test_command: str = "python test.py") -> SweCase:
    return SweCase(id="made", instructions="fix", files=files, test_command=test_command, timeout_s=60, gold={})


@pytest.mark.parametrize(
    ("path", "command", "test"),
    [
        ("test.py", "python test.py", True),  # named by the command
        ("main.py", "python test.py", False),
        ("book_store_test.py", "python -m pytest -q book_store_test.py", True),
        ("book_store.py", "python -m pytest -q book_store_test.py", False),
        ("python_testcases/test_bitcount.py", "python -m pytest -q python_testcases/test_bitcount.py", True),
        ("python_testcases/load_testdata.py", "python -m pytest -q", True),  # in a test folder
        ("json_testcases/bitcount.json", "python -m pytest -q", True),  # test data
        ("python_programs/bitcount.py", "python -m pytest -q", False),
        ("correct_python_programs/node.py", "python -m pytest -q", False),
        ("conftest.py", "python test.py", True),
        ("pkg/sub/conftest.py", "python test.py", True),
        ("pytest.ini", "python test.py", True),
        ("pyproject.toml", "python test.py", True),
        ("setup.cfg", "python test.py", True),
        ("tox.ini", "python test.py", True),
        ("tests/helpers.py", "python -m pytest -q", True),
        ("suite/cases.txt", "python -m pytest -q suite", True),  # under a folder the command names
        ("attestation/sign.py", "python -m pytest -q", False),  # "test" inside a word is no test folder
        ("pytest/__init__.py", "python -m pytest -q", False),  # the module after -m names no path
        ("src/app.py", "python -m pytest -q .", False),  # "." names the root, not a test path
        ("test_x.py", "python -m pytest -q test_x.py::test_one", True),
    ],
)
def test_which_paths_are_tests(path: str, command: str, test: bool) -> None:
    assert is_test_path(path, named_paths(command)) is test


def test_the_judged_tree_restores_the_tests_and_keeps_the_source_changes() -> None:
    case = make_case({"main.py": "old\n", "helper.py": "help\n", "test.py": "check\n", "testdata/in.txt": "1\n"})
    snapshot = {
        "main.py": b"fixed\n",  # changed source: kept
        "new_module.py": b"added\n",  # added source: kept
        "test.py": b"pass\n",  # changed test: restored
        "conftest.py": b"hook\n",  # added conftest: dropped
        "pytest.ini": b"[pytest]\n",  # added configuration: dropped
        "test_mine.py": b"def test(): pass\n",  # added test module: dropped
        # helper.py deleted (a source change: stays deleted); testdata/in.txt deleted (test data: restored)
    }
    assert judged_files(case, snapshot) == {
        "main.py": b"fixed\n",
        "new_module.py": b"added\n",
        "test.py": b"check\n",
        "testdata/in.txt": b"1\n",
    }
    assert source_changes(case, snapshot) == {"helper.py": None, "main.py": b"fixed\n", "new_module.py": b"added\n"}
    assert changed_tests(case, snapshot) == ["conftest.py", "pytest.ini", "test.py", "testdata/in.txt"]


def tamper_test_module(case: SweCase, root: Path) -> None:
    """Rewrite every test module the command names so that it checks nothing."""
    names = named_paths(case.test_command)
    write_files(root, {path: TAMPERED_TEST for path in case.files if path in names})


def tamper_conftest(case: SweCase, root: Path) -> None:
    """Append the hook that makes every collected test pass without running."""
    write_files(root, {"conftest.py": case.files.get("conftest.py", "") + TAMPER_HOOK})


def tamper_config(case: SweCase, root: Path) -> None:
    """A pytest.ini that only collects: pytest exits 0 without running a test."""
    write_files(root, {"pytest.ini": "[pytest]\naddopts = --collect-only\n"})


def tamper_data(case: SweCase, root: Path) -> None:
    """Empty the QuixBugs test data: the parametrized test is skipped and pytest exits 0."""
    write_files(root, {path: "" for path in case.files if path.startswith("json_testcases/")})


@needs_data
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("dataset", "tamper"),
    [
        ("humanevalfix", tamper_test_module),
        ("polyglot_python", tamper_conftest),
        ("polyglot_python", tamper_config),
        ("quixbugs", tamper_data),
    ],
)
async def test_a_gamed_tree_passes_in_place_and_fails_the_judge(
    dataset: str, tamper: Callable[[SweCase, Path], None], tmp_path: Path
) -> None:
    case = first_case(dataset)
    write_files(tmp_path, case.files)
    tamper(case, tmp_path)
    # What the harness used to do: run the test command in the agent's own tree. The gamed tree passes.
    in_place = await run_command(shlex.split(case.test_command), cwd=tmp_path, timeout_s=case.timeout_s)
    assert in_place.passed, in_place.output
    verdict = await judge_snapshot(case, snapshot_files(tmp_path))
    assert not verdict.passed


@needs_data
@pytest.mark.asyncio
async def test_the_judge_passes_a_fix_whose_agent_broke_its_own_copy_of_the_tests(tmp_path: Path) -> None:
    case = first_case("humanevalfix")
    write_files(tmp_path, {**case.files, **case.gold, "test.py": "raise SystemExit(1)\n"})
    assert not (await run_command(shlex.split(case.test_command), cwd=tmp_path, timeout_s=30)).passed
    assert (await judge_snapshot(case, snapshot_files(tmp_path))).passed


def test_a_snapshot_skips_caches_and_symlinks(tmp_path: Path) -> None:
    write_files(tmp_path, {"a.py": "x\n", "__pycache__/a.cpython-311.pyc": "junk", "pkg/b.py": "y\n"})
    (tmp_path / "outside.txt").symlink_to("/etc/hostname")
    assert snapshot_files(tmp_path) == {"a.py": b"x\n", "pkg/b.py": b"y\n"}


def test_files_cannot_be_written_outside_the_tree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the workspace"):
        write_files(tmp_path / "root", {"../escape.py": "x"})
    assert not (tmp_path / "escape.py").exists()


@pytest.mark.asyncio
async def test_a_missing_runner_module_is_named_with_how_to_install_it() -> None:
    case = make_case({"t.py": ""}, "python -m agentdag_no_such_runner -q t.py")
    with pytest.raises(FileNotFoundError, match=r"cannot import agentdag_no_such_runner; install it there") as caught:
        await check_test_runners([case])
    assert "-m pip install agentdag_no_such_runner" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.asyncio
async def test_a_missing_runner_program_is_named() -> None:
    case = make_case({"t.py": ""}, "agentdag-no-such-runner t.py")
    with pytest.raises(FileNotFoundError, match=r"the test runner 'agentdag-no-such-runner' .* is not on PATH"):
        await check_test_runners([case])


@pytest.mark.asyncio
async def test_runners_that_are_there_pass_the_check() -> None:
    cases = [
        make_case({"t.py": ""}, "python -m pytest -q t.py"),  # installed in this interpreter
        make_case({"runner.py": "", "t.py": ""}, "python -m runner t.py"),  # shipped with the case
        make_case({"run.sh": ""}, "./run.sh"),  # one of the case's files
        make_case({"test.py": ""}, "python test.py"),  # a script: the interpreter is the runner
    ]
    await check_test_runners(cases)


def test_a_case_with_a_path_out_of_the_workspace_is_refused(tmp_path: Path) -> None:
    record = {"id": "x", "instructions": "", "files": {"../x.py": ""}, "test_command": "python x.py", "gold": {}}
    dataset = tmp_path / "bad.jsonl"
    dataset.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a SWE case .*'../x.py' is not a plain relative path"):
        load_swe_cases(dataset)


@pytest.mark.asyncio
async def test_the_judge_runs_in_the_environment_the_workspace_server_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The MCP SDK starts the server with a short list of inherited variables; the judge uses the same list.
    monkeypatch.setenv("AGENTDAG_HARNESS_ONLY", "1")
    case = make_case({"test.py": "import os, sys\nsys.exit(1 if 'AGENTDAG_HARNESS_ONLY' in os.environ else 0)\n"})
    write_files(tmp_path, case.files)
    assert not (await run_command(["python", "test.py"], cwd=tmp_path, timeout_s=30)).passed
    assert (await judge_snapshot(case, snapshot_files(tmp_path))).passed
