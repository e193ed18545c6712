"""Converters of the SWE data sets: QuixBugs, Exercism Python (Aider's polyglot benchmark), HumanEvalFix.

Every harness record is `id`, `source`, `instructions`, `files` (path to content: the starting workspace),
`test_command`, `timeout_s` and `gold` (path to content of a correct fix). The files are copied verbatim
from the release; nothing downloaded is run here (see the README for how to check the records).

* QuixBugs: one record per program of `python_programs/` with a pytest file in `python_testcases/` and a
  corrected version in `correct_python_programs/` (the gold); the workspace holds the program, its tests,
  its JSON test cases or graph driver where the repository has them, and the shared `conftest.py`,
  `load_testdata.py` and `node.py` files.
* Exercism Python: one record per exercise of the polyglot benchmark's `python/exercises/practice/`; the
  instructions are `.docs/instructions.md` followed by `.docs/instructions.append.md` when there is one;
  the workspace is the stub and test files that `.meta/config.json` names, the gold its example solution.
* HumanEvalFix: `main.py` is the prompt, the buggy solution and the example tests; `test.py` imports it and
  runs the full tests; the gold is the prompt and the canonical solution.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from .convert_common import ConversionError, Converted, SourceRecord, read_archive, read_jsonl, validate

__all__ = ["convert_humanevalfix", "convert_polyglot", "convert_quixbugs"]


def _record(
    *,
    id: str,
    source: str,
    instructions: str,
    files: dict[str, str],
    test_command: str,
    timeout_s: int,
    gold: dict[str, str],
) -> dict[str, Any]:
    return {
        "id": id,
        "source": source,
        "instructions": instructions,
        "files": files,
        "test_command": test_command,
        "timeout_s": timeout_s,
        "gold": gold,
    }


def _texts(tree: Mapping[str, bytes]) -> dict[str, str]:
    """The files that are UTF-8 text, decoded (the others are left out; a record that needs one is skipped)."""
    texts = {}
    for path, content in tree.items():
        try:
            texts[path] = content.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


# -- QuixBugs -----------------------------------------------------------------------------------------

_QUIXBUGS_SUPPORT = (
    "conftest.py",
    "python_testcases/load_testdata.py",
    "python_testcases/node.py",
    "python_programs/node.py",
    "correct_python_programs/node.py",
)
_QUIXBUGS_FOLDERS = ("python_programs/", "correct_python_programs/", "python_testcases/", "json_testcases/")


def convert_quixbugs(files: Mapping[str, Path]) -> Converted:
    """The QuixBugs repository archive as one record per Python program."""
    tree = _texts(
        read_archive(files["archive"], lambda path: path in _QUIXBUGS_SUPPORT or path.startswith(_QUIXBUGS_FOLDERS))
    )
    missing = [path for path in _QUIXBUGS_SUPPORT if path not in tree]
    if missing:
        raise ConversionError(f"{files['archive'].name} lacks {', '.join(missing)}: not the QuixBugs repository")
    names = sorted(
        path.removeprefix("python_programs/").removesuffix(".py")
        for path in tree
        if path.startswith("python_programs/")
        and path.count("/") == 1
        and path.endswith(".py")
        and not path.endswith("_test.py")
        and path != "python_programs/node.py"
    )
    records, skipped = [], []
    for name in names:
        program, test = f"python_programs/{name}.py", f"python_testcases/test_{name}.py"
        correct = f"correct_python_programs/{name}.py"
        if test not in tree or correct not in tree:
            skipped.append(f"quixbugs/{name}: no {test if test not in tree else correct}")
            continue
        extras = [path for path in (f"python_programs/{name}_test.py", f"json_testcases/{name}.json") if path in tree]
        workspace = {path: tree[path] for path in (*_QUIXBUGS_SUPPORT, program, test, *extras)}
        records.append(
            _record(
                id=f"quixbugs/{name}",
                source="QuixBugs (MIT)",
                instructions=(
                    f"The function in {program} has a bug (its docstring is the spec). "
                    f"Fix it so that the tests in {test} pass."
                ),
                files=workspace,
                test_command=f"python -m pytest -q {test}",
                timeout_s=60,
                gold={program: tree[correct]},
            )
        )
    return Converted(records=tuple(records), skipped=tuple(skipped))


# -- Exercism Python, as in Aider's polyglot benchmark ------------------------------------------------

_PRACTICE = "python/exercises/practice/"


class _ExerciseFiles(SourceRecord):
    solution: list[str]
    test: list[str]
    example: list[str]
    editor: list[str] = Field(default_factory=list)


class _ExerciseConfig(SourceRecord):
    files: _ExerciseFiles


def convert_polyglot(files: Mapping[str, Path]) -> Converted:
    """The polyglot benchmark's archive as one record per Python practice exercise."""
    tree = _texts(read_archive(files["archive"], lambda path: path.startswith(_PRACTICE)))
    slugs = sorted({path.removeprefix(_PRACTICE).split("/", 1)[0] for path in tree if path.count("/") > 3})
    if not slugs:
        raise ConversionError(f"{files['archive'].name} has no {_PRACTICE}: not the polyglot benchmark")
    records, skipped = [], []
    for slug in slugs:
        try:
            prefix = f"{_PRACTICE}{slug}/"
            folder = {path.removeprefix(prefix): text for path, text in tree.items() if path.startswith(prefix)}
            records.append(_exercise(slug, folder))
        except ConversionError as error:
            skipped.append(f"polyglot/{slug}: {error}")
    return Converted(records=tuple(records), skipped=tuple(skipped))


def _exercise(slug: str, folder: Mapping[str, str]) -> dict[str, Any]:
    if ".meta/config.json" not in folder or ".docs/instructions.md" not in folder:
        raise ConversionError("no .meta/config.json or .docs/instructions.md")
    try:
        config = validate(_ExerciseConfig, json.loads(folder[".meta/config.json"]), where=".meta/config.json")
    except json.JSONDecodeError:
        raise ConversionError(".meta/config.json is not JSON") from None
    named = config.files
    if len(named.solution) != 1 or len(named.example) != 1 or not named.test:
        raise ConversionError("config.json names no single solution and example, or no test file")
    wanted = [*named.solution, *named.test, *named.editor, *named.example]
    absent = [path for path in wanted if path not in folder]
    if absent:
        raise ConversionError(f"{absent[0]} is missing")
    instructions = folder[".docs/instructions.md"]
    if ".docs/instructions.append.md" in folder:
        instructions = instructions.rstrip("\n") + "\n\n" + folder[".docs/instructions.append.md"]
    return _record(
        id=f"polyglot/{slug}",
        source="Exercism python track via Aider polyglot benchmark (MIT)",
        instructions=instructions,
        files={path: folder[path] for path in (*named.solution, *named.test, *named.editor)},
        test_command=shlex.join(["python", "-m", "pytest", "-q", *named.test]),
        timeout_s=120,
        gold={named.solution[0]: folder[named.example[0]]},
    )


# -- HumanEvalFix -------------------------------------------------------------------------------------


class _Problem(SourceRecord):
    task_id: str
    prompt: str
    canonical_solution: str
    buggy_solution: str
    entry_point: str
    test: str
    test_setup: str = ""
    example_test: str = ""


def convert_humanevalfix(files: Mapping[str, Path]) -> Converted:
    """HumanEvalPack's Python JSON Lines as one bug-fix record per problem."""
    records = []
    for number, value in enumerate(read_jsonl(files["data"]), start=1):
        problem = validate(_Problem, value, where=f"{files['data'].name}:{number}")
        records.append(
            _record(
                id=f"humanevalfix/{problem.task_id}",
                source="HumanEvalFix / HumanEvalPack (MIT)",
                instructions=f"The function {problem.entry_point} in main.py has a bug. Fix it so that test.py passes.",
                files={
                    "main.py": problem.prompt + problem.buggy_solution + problem.example_test,
                    "test.py": "from main import *\n" + problem.test_setup + problem.test,
                },
                test_command="python test.py",
                timeout_s=30,
                gold={"main.py": problem.prompt + problem.canonical_solution},
            )
        )
    return Converted(records=tuple(records))
