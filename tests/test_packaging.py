"""The wheel must contain every package directory, or imports silently become namespace packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, directory in mapping.items():
        for init in (ROOT / directory).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / directory).parts
            found.add(".".join([name, *relative]))
    assert found == listed


def test_agentdag_is_a_regular_package() -> None:
    import agentdag

    assert agentdag.__file__ is not None
    assert agentdag.__file__.endswith("__init__.py")


def test_a_checkout_that_is_not_installed_can_plan(tmp_path: Path) -> None:
    """From a source tree on sys.path (no install, so no `agentdag.planners` package), drafting still works."""
    script = f"""
import sys
editable = [finder for finder in sys.meta_path if str(getattr(finder, "__module__", "")).startswith("__editable__")]
sys.meta_path[:] = [finder for finder in sys.meta_path if finder not in editable]
sys.path.insert(0, {str(ROOT)!r})
import json, anyio
import agentdag
assert agentdag.__file__.startswith({str(ROOT)!r}), agentdag.__file__
from agentdag import Agent, FunctionModel, tool

@tool(read_only=True)
def echo(text: str) -> str:
    '''Echo the text.'''
    return text

node = {{"id": 1, "tool": "echo", "arguments": {{"text": "x"}}, "depends_on": []}}
plan = json.dumps({{"thought": "t", "nodes": [node]}})
draft = anyio.run(Agent(tools=[echo], model=FunctionModel(lambda request: plan)).draft, "say x")
print(len(draft.nodes), len(draft.problems))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1", "0"]
