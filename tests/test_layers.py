"""Pins the layer order: every module imports only from its own layer or the layers below it.

The layers, lowest first, are the README's "Architecture" section. The import graph is read from the
sources (every `import` and `from ... import`, lazy ones inside functions included; imports under
`TYPE_CHECKING` are left out, since they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("data", (
        "agentdag.errors", "agentdag.messages", "agentdag.tokens", "agentdag.hashing", "agentdag.events",
        "agentdag.config", "agentdag.usage", "agentdag.fanout", "agentdag.toolsets.base", "agentdag.references",
    )),
    ("plans", (
        "agentdag.plan", "agentdag.canonical", "agentdag.records", "agentdag.templates", "agentdag.schemas",
        "agentdag.parsers", "agentdag.result",
    )),
    ("models and tools", ("agentdag.models", "agentdag.toolsets", "agentdag.scaling", "agentdag.tools")),
    ("execution", (
        "agentdag.backends", "agentdag.scheduling", "agentdag.executor", "agentdag.store", "agentdag.saving",
    )),
    ("task files", ("agentdag.taskfile",)),
    ("agents", ("agentdag.planning", "agentdag.react", "agentdag.agent")),
    ("assembly", ("agentdag.assembly",)),
    ("presentation", (
        "agentdag.summary", "agentdag.view", "agentdag.trace", "agentdag.telemetry", "agentdag.pictures",
    )),
    ("entry points", ("agentdag.cli", "agentdag.benchmarks", "agentdag.__main__")),
]  # fmt: skip
TOP_PACKAGE = "agentdag"  # its __init__ re-exports the public names of every layer


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and to the README's Architecture")


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] in ("tools", "benchmarks"):  # installed as agentdag.tools and agentdag.benchmarks
        parts.insert(0, "agentdag")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(path for folder in ("agentdag", "tools", "benchmarks") for path in (ROOT / folder).rglob("*.py"))


def imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(child) for child in ast.walk(node))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
    return {name for name in found if name == TOP_PACKAGE or name.startswith(TOP_PACKAGE + ".")}


def test_every_module_belongs_to_a_layer() -> None:
    for path in sources():
        module = module_name(path)
        if module != TOP_PACKAGE:
            layer_of(module)


@pytest.mark.parametrize("path", sources(), ids=lambda path: str(path.relative_to(ROOT)))
def test_imports_point_down_the_layers(path: Path) -> None:
    module = module_name(path)
    if module == TOP_PACKAGE:
        return
    mine = layer_of(module)
    for imported in imports(path, module):
        if imported == TOP_PACKAGE:  # the public API re-exports every layer: for the entry points only
            assert mine == len(LAYERS) - 1, f"{module} imports the top package; import from the module itself"
            continue
        theirs = layer_of(imported)
        assert theirs <= mine, f"{module} ({LAYERS[mine][0]}) imports {imported} ({LAYERS[theirs][0]}), a higher layer"
