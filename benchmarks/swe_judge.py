"""The SWE judge: every candidate is judged on a fresh tree that the agent could not change.

The judged tree starts from the case's own files. The agent's final versions of the *source* files are
copied in (changed, added and deleted ones alike); the case's *test* files are restored to what the case
gave, and every test file the agent added is left out. A path is a test path (`is_test_path`) when

* the test command names it, or a folder that holds it (`python test.py`, `pytest -q tests/`);
* its name is a test module or a pytest plugin file: `test_*.py`, `*_test.py`, `test.py`, `tests.py`,
  `conftest.py`;
* its name is a file pytest reads its configuration from: `pytest.ini`, `.pytest.ini`, `pyproject.toml`,
  `setup.cfg`, `tox.ini`;
* one of its folders is a test folder: a word of the folder's name (split at `_`, `-`, `.`) starts with
  "test" (`tests/`, `testing/`, `python_testcases/`, `json_testcases/`, `test_data/`).

The case's test command then runs in that tree with the workspace server's confined runner
(`agentdag.tools.confine.run_command`), in the environment the server itself gets (the MCP SDK's
default inherited environment), with the server's memory limit and the case's timeout.

The agent's workspace is read once, when its run ends (`snapshot_files`), and never judged. Code in the
kept source files still runs inside the test process: a "fix" that exits early, patches the test
framework or returns objects equal to anything can pass; only reading the diff catches that.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from agentdag.tools.confine import TestRun, confine, run_command
from agentdag.tools.workspace import DEFAULT_MEMORY_MB, SKIPPED_FOLDERS
from mcp.client.stdio import get_default_environment

from .swe_data import SweCase

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "TEST_CONFIG_FILES",
    "TEST_FILE_PATTERNS",
    "changed_tests",
    "check_test_runners",
    "is_test_path",
    "judge_snapshot",
    "judged_files",
    "named_paths",
    "snapshot_files",
    "source_changes",
    "write_files",
]

TEST_FILE_PATTERNS = ("test_*.py", "*_test.py", "test.py", "tests.py", "conftest.py")
TEST_CONFIG_FILES = frozenset({"pytest.ini", ".pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini"})
MAX_SNAPSHOT_BYTES = 16 * 2**20
_MEMORY_BYTES = DEFAULT_MEMORY_MB * 2**20  # the workspace server's default limit
_PROBE_TIMEOUT_S = 30.0
_MISSING = 3  # the probe's exit code for a module that is not importable
_PROBE = """\
import importlib.util, sys
try:
    found = importlib.util.find_spec(sys.argv[1]) is not None
except ImportError:
    found = False
sys.exit(0 if found else 3)
"""


def named_paths(command: str) -> frozenset[str]:
    """The paths a test command names (`python test.py` names `test.py`), `::test_id` parts cut off.

    Options, the module after `-m`, and `.` (the whole root) are not names of test paths.
    """
    names: set[str] = set()
    words = shlex.split(command)[1:]
    for previous, word in zip(["", *words], words, strict=False):
        if word.startswith("-") or previous == "-m":
            continue
        pure = PurePosixPath(word.split("::", 1)[0])
        if pure.parts and not pure.is_absolute():
            names.add(pure.as_posix())
    return frozenset(names)


def is_test_path(path: str, named: Collection[str]) -> bool:
    """Whether a workspace path is one of the tests or their data (see the module docstring for the rule).

    Args:
        path: a relative POSIX path.
        named: the paths the test command names (`named_paths`).
    """
    if any(path == name or path.startswith(f"{name}/") for name in named):
        return True
    pure = PurePosixPath(path)
    if pure.name in TEST_CONFIG_FILES or any(fnmatch.fnmatchcase(pure.name, pattern) for pattern in TEST_FILE_PATTERNS):
        return True
    return any(_is_test_folder(folder) for folder in pure.parts[:-1])


def _is_test_folder(name: str) -> bool:
    return any(word.startswith("test") for word in re.split(r"[_.\-]", name.lower()))


def snapshot_files(root: Path) -> dict[str, bytes]:
    """The regular files under `root` (relative POSIX path -> bytes), skipping caches and symlinks.

    Raises:
        ValueError: the files hold more than `MAX_SNAPSHOT_BYTES`.
    """
    files: dict[str, bytes] = {}
    total = 0
    for folder, folders, names in os.walk(root):  # does not follow symlinked folders
        folders[:] = sorted(name for name in folders if name not in SKIPPED_FOLDERS)
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            content = path.read_bytes()
            total += len(content)
            if total > MAX_SNAPSHOT_BYTES:
                raise ValueError(f"the workspace holds more than {MAX_SNAPSHOT_BYTES // 2**20} MiB of files")
            files[path.relative_to(root).as_posix()] = content
    return files


def judged_files(case: SweCase, snapshot: Mapping[str, bytes]) -> dict[str, bytes]:
    """The tree the judge runs the tests in: the case's test files as given, the agent's source files."""
    named = named_paths(case.test_command)
    kept = {path: content for path, content in snapshot.items() if not is_test_path(path, named)}
    tests = {path: content.encode() for path, content in case.files.items() if is_test_path(path, named)}
    return {**kept, **tests}


def source_changes(case: SweCase, snapshot: Mapping[str, bytes]) -> dict[str, bytes | None]:
    """The agent's fix: every source path whose final content differs from the case's (None: deleted)."""
    named = named_paths(case.test_command)
    changes: dict[str, bytes | None] = {}
    for path in sorted(set(case.files) | set(snapshot)):
        if is_test_path(path, named):
            continue
        original = case.files.get(path)
        final = snapshot.get(path)
        if final != (original.encode() if original is not None else None):
            changes[path] = final
    return changes


def changed_tests(case: SweCase, snapshot: Mapping[str, bytes]) -> list[str]:
    """How the agent changed the case's tests: test files it changed or deleted, conftest/config files it added.

    New test modules (tests the model wrote itself) are not changes to the case's tests.
    """
    named = named_paths(case.test_command)
    changed = [
        path
        for path, content in case.files.items()
        if is_test_path(path, named) and snapshot.get(path) != content.encode()
    ]
    added = [
        path
        for path in snapshot
        if path not in case.files and PurePosixPath(path).name in {"conftest.py", *TEST_CONFIG_FILES}
    ]
    return sorted([*changed, *added])


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write files (relative path -> content) under `root`, creating folders; no path may leave `root`.

    Raises:
        ValueError: a path leaves `root` (`agentdag.tools.confine.PathEscapeError`).
    """
    resolved = root.resolve()
    for path, content in files.items():
        target: Path = confine(resolved, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")


async def judge_snapshot(case: SweCase, snapshot: Mapping[str, bytes]) -> Any:
    """Run the case's test command in a fresh temporary tree of `judged_files(case, snapshot)`.

    Returns the `agentdag.tools.confine.TestRun` (`passed` is the verdict); a program that cannot start is a
    failed run (exit code 127).
    """
    with tempfile.TemporaryDirectory(prefix="agentdag-swe-judge-") as folder:
        root = Path(folder)
        write_files(root, judged_files(case, snapshot))
        try:
            return await run_command(
                shlex.split(case.test_command),
                cwd=root,
                timeout_s=case.timeout_s,
                memory_bytes=_MEMORY_BYTES,
                env=get_default_environment(),
            )
        except OSError as error:
            output = f"cannot run {case.test_command!r}: {error}"
            return TestRun(exit_code=127, passed=False, timed_out=False, output=output)


async def check_test_runners(cases: Sequence[SweCase]) -> None:
    """Check, before the first case, that every case's test runner is there.

    The program the test command starts must be on PATH (or be one of the case's files); for
    `python -m MODULE ...`, MODULE must be importable in the interpreter the workspace server runs
    (this one), in the environment the server gets.

    Raises:
        FileNotFoundError: a runner is missing; the message names it and how to install it.
    """
    modules: dict[str, str] = {}
    for case in cases:
        argv = shlex.split(case.test_command)
        if argv[0] not in ("python", "python3"):
            if shutil.which(argv[0]) is None and PurePosixPath(argv[0]).as_posix() not in case.files:
                raise FileNotFoundError(
                    f"the test runner {argv[0]!r} of {case.test_command!r} (case {case.id}) is not on PATH: "
                    "install it, or put it on PATH, and run again"
                )
            continue
        module = _module_of(argv)
        if module is not None and not _provided_by(case, module):
            modules.setdefault(module, case.test_command)
    for module, command in modules.items():
        with tempfile.TemporaryDirectory(prefix="agentdag-swe-probe-") as folder:
            probe = await run_command(
                ["python", "-c", _PROBE, module],
                cwd=Path(folder),
                timeout_s=_PROBE_TIMEOUT_S,
                env=get_default_environment(),
            )
        # Any other outcome (a probe that timed out on a busy machine) proves nothing: go on.
        if probe.exit_code == _MISSING:
            package = module.split(".")[0]
            raise FileNotFoundError(
                f"the test runner of {command!r} is missing: {sys.executable} cannot import {module}; "
                f"install it there ({sys.executable} -m pip install {package}) and run again"
            )


def _module_of(argv: Sequence[str]) -> str | None:
    """The module of `python [options] -m MODULE ...`, None when the interpreter runs a script."""
    for index, word in enumerate(argv[1:], 1):
        if word == "-m":
            return argv[index + 1] if index + 1 < len(argv) else None
        if not word.startswith("-"):
            return None
    return None


def _provided_by(case: SweCase, module: str) -> bool:
    """Whether the case's own files hold the module (the test run's working directory is on its path)."""
    top = module.split(".")[0]
    return any(path == f"{top}.py" or path.startswith(f"{top}/") for path in case.files)
