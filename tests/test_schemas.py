"""The schemas replies are constrained to: references as objects, no string patterns, `$defs` inlined."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from agentdag import tool
from agentdag.react import create_step_schema
from agentdag.schemas import JOINER_SCHEMA, create_plan_schema, create_refine_schema, inline_definitions
from agentdag.toolsets.registry import ToolRegistry


class Point(BaseModel):
    x: float
    y: float


class Tree(BaseModel):
    children: list[Tree] = []


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@tool
def echo(text: str) -> str:
    """Repeat text."""
    return text


@tool
def move(points: list[Point], origin: Point) -> int:
    """Move points."""
    return len(points)


@tool
def grow(tree: Tree) -> int:
    """A recursive argument."""
    return len(tree.children)


TOOLS = [add, echo, move, grow]


def keys(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


def plan_with(**arguments: object) -> dict[str, Any]:
    return {"thought": "", "nodes": [{"id": 1, "tool": "add", "arguments": arguments, "depends_on": []}]}


@pytest.mark.parametrize(
    "schema",
    [
        create_plan_schema(TOOLS),
        create_refine_schema(TOOLS),
        JOINER_SCHEMA,
        create_step_schema(ToolRegistry(TOOLS)),
    ],
    ids=["plan", "refine", "joiner", "react"],
)
def test_no_schema_sent_to_a_server_has_a_string_pattern_or_a_local_reference(schema: dict[str, Any]) -> None:
    """llama.cpp's grammar enforces neither faithfully (see tests/test_schemas_embedded.py)."""
    found = set(keys(schema))
    assert "pattern" not in found
    assert "$defs" not in found and "definitions" not in found
    assert not any(isinstance(value, str) for value in _values_of(schema, "$ref"))


def _values_of(value: object, key: str) -> Iterator[object]:
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key:
                yield item
            yield from _values_of(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from _values_of(item, key)


def test_a_reference_is_an_object_in_any_argument_and_text_may_hold_dollar_n() -> None:
    schema = create_plan_schema(TOOLS)
    jsonschema.validate(plan_with(a={"$ref": 2}, b={"$ref": 3, "path": "items.0"}), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(plan_with(a="$2", b=1), schema)  # a number argument takes no patterned string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(plan_with(a={"$ref": 2, "extra": 1}, b=1), schema)
    text = {"thought": "", "nodes": [{"id": 2, "tool": "echo", "arguments": {"text": "sum: $1"}, "depends_on": [1]}]}
    jsonschema.validate(text, schema)


def test_a_tool_with_defs_is_constrained_in_plans_and_react_steps() -> None:
    plan = create_plan_schema(TOOLS)
    node = {"id": 1, "tool": "move", "arguments": {"points": [{"x": 1, "y": 2}], "origin": {"x": 0, "y": 0}}}
    jsonschema.validate({"thought": "", "nodes": [node | {"depends_on": []}]}, plan)
    bad = node | {"arguments": {"points": [{"x": 1}], "origin": {"x": 0, "y": 0}}, "depends_on": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"thought": "", "nodes": [bad]}, plan)
    step = create_step_schema(ToolRegistry(TOOLS))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"thought": "", "action": "call", "tool": "move", "arguments": bad["arguments"]}, step)


def test_inlining_keeps_a_description_beside_a_reference_and_refuses_recursion() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P", "description": "a point"}, "$ref": {"type": "integer"}},
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    assert inline_definitions(schema) == {
        "type": "object",
        "properties": {
            "p": {"type": "object", "properties": {"x": {"type": "number"}}, "description": "a point"},
            "$ref": {"type": "integer"},  # a property named "$ref" is data, not a reference
        },
    }
    assert inline_definitions(Tree.model_json_schema()) is None
    assert inline_definitions({"$ref": "https://example.com/schema"}) is None
    grow_arguments = create_plan_schema(TOOLS)["properties"]["nodes"]["items"]["anyOf"][3]["properties"]["arguments"]
    assert grow_arguments == {"type": "object"}  # the executor still validates its arguments


def test_inlining_gives_up_on_a_schema_that_would_explode_or_nests_too_deeply() -> None:
    # Each definition uses the next twice: inlined, 2**30 objects.
    definitions = {
        f"D{level}": {"type": "array", "items": [{"$ref": f"#/$defs/D{level + 1}"}] * 2} for level in range(30)
    }
    definitions["D30"] = {"type": "integer"}
    assert inline_definitions({"$ref": "#/$defs/D0", "$defs": definitions}) is None
    deep: dict[str, Any] = {"type": "integer"}
    for _ in range(5_000):
        deep = {"type": "array", "items": deep}
    assert inline_definitions(deep) is None
