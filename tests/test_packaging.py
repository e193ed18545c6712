"""The wheel must contain every package directory, or imports silently become namespace packages."""

from __future__ import annotations

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
