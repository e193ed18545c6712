"""A set of tools by name, and loading Python tools named in task files (`module:attribute`)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from agentdag.errors import AgentdagError
from agentdag.toolsets.base import Tool

__all__ = ["ToolRegistry", "import_tools"]


class ToolRegistry(Mapping[str, Tool]):
    """An immutable mapping from tool name to tool; names must be unique."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            if item.name in self._tools:
                raise AgentdagError(f"two tools are named {item.name!r}; tool names must be unique")
            self._tools[item.name] = item

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({sorted(self._tools)})"

    def merge(self, other: Iterable[Tool]) -> ToolRegistry:
        """A new registry with the tools of both; a name in both is an error."""
        return ToolRegistry([*self._tools.values(), *other])

    def restrict(self, names: Iterable[str]) -> ToolRegistry:
        """A new registry with only the named tools (an allow-list); an unknown name is an error."""
        wanted = list(names)
        unknown = sorted(set(wanted) - set(self._tools))
        if unknown:
            raise AgentdagError(f"allow-list names unknown tools: {', '.join(unknown)}")
        return ToolRegistry(self._tools[name] for name in wanted)

    def describe(self) -> list[dict[str, Any]]:
        """Name, description and argument schema of every tool, as the planner sees them."""
        return [
            {"name": item.name, "description": item.description, "input_schema": item.input_schema}
            for item in self._tools.values()
        ]


def import_tools(reference: str) -> list[Tool]:
    """Import the tool(s) named by `module:attribute`.

    The attribute may be a `Tool` or an iterable of tools (e.g. a module-level `TOOLS` list).

    Raises:
        AgentdagError: the reference is malformed, the import fails, or the attribute holds no tools.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute or module_name.startswith("."):
        raise AgentdagError(f"tool reference {reference!r} must look like 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AgentdagError(f"cannot import module {module_name!r} for tool {reference!r}: {error}") from None
    except (Exception, SystemExit) as error:  # the module's own code failed: a syntax error, a raise, an exit
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise AgentdagError(f"cannot import module {module_name!r} for tool {reference!r}: {reason}") from None
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise AgentdagError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        items = list(value)
        if items and all(isinstance(item, Tool) for item in items):
            return items
    raise AgentdagError(f"{reference!r} is neither a tool nor a list of tools (decorate functions with @tool)")
