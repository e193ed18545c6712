"""The JSON schemas planner, joiner and refinement replies are constrained to, and readers for the replies.

Every reader returns None for a reply it cannot use, so the caller can say what happened instead of
failing.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentdag.toolsets.base import Tool

__all__ = [
    "JOINER_SCHEMA",
    "REFERENCE_SCHEMA",
    "Decision",
    "Refinement",
    "create_plan_schema",
    "create_refine_schema",
    "inline_definitions",
    "parse_decision",
    "parse_refinement",
]


THOUGHT_CHARS = 600
"""Thoughts are bounded in every schema, so a rambling model cannot spend its whole reply on one."""

JOINER_THOUGHT_CHARS = 300
ANSWER_CHARS = 400
REASON_CHARS = 200
"""The joiner's fields are bounded too: SmolLM2 at temperature 0 repeated "The final answer is N." in its
thought and answer until the reply ran out of tokens, so no decision came back; bounded, the grammar closes
each field and the decision is complete."""

JOINER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "thought": {"type": "string", "maxLength": JOINER_THOUGHT_CHARS},
        "answer": {"type": "string", "maxLength": ANSWER_CHARS},
        "action": {"type": "string", "enum": ["finish", "replan"]},
        "reason": {"type": "string", "maxLength": REASON_CHARS},
    },
    "required": ["thought", "answer", "action", "reason"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The joiner's verdict: finish with `answer`, or replan because of `reason`."""

    action: Literal["finish", "replan"]
    answer: str
    reason: str = ""


PATH_CHARS = 200
"""A reference's field path is bounded too."""

REFERENCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"$ref": {"type": "integer"}, "path": {"type": "string", "maxLength": PATH_CHARS}},
    "required": ["$ref"],
    "additionalProperties": False,
}
"""A reference to an earlier node's output, as the grammar allows it in any argument.

Written as an object with no string pattern: llama.cpp turns patterned strings into grammars that do not
enforce them (it dropped the `$` of `^\\$\\{?[0-9]+[^ ]*$` and let `[^ ]*` run past the closing quote). A
string argument may still hold `$N` text, which its own string type allows.
"""


def create_plan_schema(tools: Sequence[Tool], *, max_nodes: int = 16) -> dict[str, Any]:
    """The JSON schema that constrains a JSON plan: one node variant per tool, references allowed."""
    variants = [
        {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "tool": {"const": tool.name},
                "arguments": _loosen(tool.input_schema),
                "depends_on": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["id", "tool", "arguments", "depends_on"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": THOUGHT_CHARS},
            "nodes": {"type": "array", "items": {"anyOf": variants}, "maxItems": max_nodes},
        },
        "required": ["thought", "nodes"],
        "additionalProperties": False,
    }


def create_refine_schema(tools: Sequence[Tool], *, max_nodes: int = 16) -> dict[str, Any]:
    """The JSON schema of a mid-run refinement: pending nodes to cancel and new nodes to add."""
    plan = create_plan_schema(tools, max_nodes=max_nodes)
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": THOUGHT_CHARS},
            "cancel": {"type": "array", "items": {"type": "integer"}},
            "add": plan["properties"]["nodes"],
        },
        "required": ["thought", "cancel", "add"],
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class Refinement:
    """A mid-run change to the plan: ids of pending nodes to cancel and raw new nodes to add."""

    cancel: tuple[int, ...]
    add: tuple[object, ...]


def parse_refinement(text: str) -> Refinement | None:
    """Read a refinement reply; None if it is not the expected JSON object."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except (ValueError, RecursionError):  # not JSON, a number too long to convert, nested too deeply
        return None
    if not isinstance(data, dict):
        return None
    cancel = data.get("cancel", [])
    add = data.get("add", [])
    if not isinstance(cancel, list) or not isinstance(add, list):
        return None
    return Refinement(
        tuple(item for item in cancel if isinstance(item, int) and not isinstance(item, bool)), tuple(add)
    )


def _loosen(schema: dict[str, Any]) -> dict[str, Any]:
    """Let each top-level argument be a reference as well as a literal of its own type."""
    inlined = inline_definitions(schema)
    if inlined is None or inlined.get("type") != "object":
        return {"type": "object"}
    properties = {
        name: {"anyOf": [_without_title(item), REFERENCE_SCHEMA]}
        for name, item in inlined.get("properties", {}).items()
    }
    loosened: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if schema.get("required"):
        loosened["required"] = list(schema["required"])
    return loosened


def _without_title(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "title"}


_DEFINITIONS = ("$defs", "definitions")
_MAX_INLINED_DEPTH = 32
_MAX_INLINED_OBJECTS = 10_000


def inline_definitions(schema: dict[str, Any]) -> dict[str, Any] | None:
    """`schema` with its local references (`#/$defs/Name`, `#/definitions/Name`) replaced by what they name.

    A tool's argument schema sits inside a larger schema (a plan, a ReAct step), where its own `#/$defs/...`
    would point at the wrong root; inlined, the grammar constrains those arguments too. None when the schema
    cannot be inlined: a recursive definition, a reference that is not local or names nothing, references
    nested deeper than 32, or an inlined schema of more than 10,000 objects (definitions that each use the
    next twice double at every level). The caller then falls back to a plain object (the executor still
    validates).
    """
    definitions: dict[str, Any] = {}
    for key in _DEFINITIONS:
        found = schema.get(key)
        if isinstance(found, dict):
            definitions.update({f"#/{key}/{name}": value for name, value in found.items()})
    try:
        inlined = _Inliner(definitions).inline(schema, ())
    except (_NotInlinable, RecursionError):
        return None
    return inlined if isinstance(inlined, dict) else None


class _NotInlinable(Exception):
    pass


class _Inliner:
    """Replaces local references by their definitions, counting the objects it makes."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self.objects = 0

    def inline(self, value: object, seen: tuple[str, ...]) -> object:
        if isinstance(value, list):
            return [self.inline(item, seen) for item in value]
        if not isinstance(value, dict):
            return value
        self.objects += 1
        if self.objects > _MAX_INLINED_OBJECTS:
            raise _NotInlinable("too large")
        reference = value.get("$ref")
        if isinstance(reference, str):
            if reference in seen or reference not in self.definitions or len(seen) >= _MAX_INLINED_DEPTH:
                raise _NotInlinable(reference)
            target = self.inline(self.definitions[reference], (*seen, reference))
            siblings = self.inline({key: item for key, item in value.items() if key != "$ref"}, seen)
            if isinstance(target, dict) and isinstance(siblings, dict) and target.keys().isdisjoint(siblings):
                # e.g. a description beside the reference: both apply, as they would under allOf
                return target | siblings
            return {"allOf": [target, siblings]}
        return {key: self._member(key, item, seen) for key, item in value.items() if key not in _DEFINITIONS}

    def _member(self, key: str, item: object, seen: tuple[str, ...]) -> object:
        if key == "properties" and isinstance(item, dict):  # property names are data, not schema keywords
            return {name: self.inline(schema, seen) for name, schema in item.items()}
        if key in ("const", "enum", "default", "examples"):  # values, not schemas
            return item
        return self.inline(item, seen)


_ANSWER_FIELD = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)"')


def parse_decision(text: str) -> Decision | None:
    """Read the joiner's JSON decision, or LLMCompiler's `Finish(answer)` / `Replan(reason)`; None if neither.

    A finish without an answer is no decision; a JSON reply cut off before its end keeps the answer it got to
    write, if it wrote one. A reply that starts as JSON is never read as `Finish(...)` text.
    """
    stripped = text.strip()
    start = stripped.find("{")
    if start >= 0:
        try:
            data, _ = json.JSONDecoder().raw_decode(stripped[start:])
        except (ValueError, RecursionError):  # not JSON, a number too long to convert, nested too deeply
            data = None
        if isinstance(data, dict) and data.get("action") in ("finish", "replan"):
            answer = data.get("answer")
            if answer is None and data["action"] == "finish":
                return None
            return Decision(
                data["action"],
                "" if answer is None else answer if isinstance(answer, str) else json.dumps(answer),
                str(data.get("reason") or ""),
            )
        salvaged = _ANSWER_FIELD.search(stripped[start:])
        if salvaged is not None:  # a truncated JSON decision: keep the answer it got to write
            with contextlib.suppress(json.JSONDecodeError):
                return Decision("finish", json.loads(f'"{salvaged.group(1)}"'), "the decision was cut off")
        if start == 0:
            return None  # JSON that holds no decision, not LLMCompiler's text
    for action in ("Finish", "Replan"):
        marker = stripped.rfind(f"{action}(")
        if marker >= 0:
            inner = stripped[marker + len(action) + 1 :]
            inner = inner[: inner.rfind(")")] if ")" in inner else inner
            kind: Literal["finish", "replan"] = "finish" if action == "Finish" else "replan"
            return Decision(kind, inner.strip() if kind == "finish" else "", inner.strip() if kind == "replan" else "")
    return None
