"""Function-call benchmark data: BFCL's `parallel` and `parallel_multiple` records, and their tools.

A record (see `convert_calls`) holds the chat `question`, the `function` schemas offered, and the
`ground_truth`: one `{function name: {argument: [acceptable values]}}` per expected call. BFCL writes its
schemas in a dialect of JSON Schema (`dict`, `float`, `tuple`, `any`); `to_json_schema` translates it, so
the planner's plan schema, its argument validation and the native `tools` request all read standard JSON
Schema. The tools are offered to the planner and never run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from agentdag.messages import ToolSpec
from agentdag.toolsets import Tool, ToolPolicy

__all__ = [
    "DEFAULT_DATASETS",
    "CallsCase",
    "Expected",
    "OfferedTool",
    "create_tool_specs",
    "create_tools",
    "load_cases",
    "to_json_schema",
]

DEFAULT_DATASETS = ("bfcl_parallel.jsonl", "bfcl_parallel_multiple.jsonl")
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "int": "integer", "str": "string", "bool": "boolean"}


class _Function(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: str
    content: str


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    question: list[list[_Message]]
    function: list[_Function]
    ground_truth: list[dict[str, dict[str, list[JsonValue]]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """One expected call: the function and, per argument, its acceptable values (`""` marks it optional)."""

    tool: str
    arguments: Mapping[str, Sequence[JsonValue]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallsCase:
    """One BFCL question.

    Attributes:
        id: BFCL's id (`parallel_1`, `parallel_multiple_7`).
        category: `parallel` (one function, several calls) or `parallel_multiple` (several functions).
        task: the user's request, as the planner reads it.
        functions: each offered function's schema, translated to JSON Schema, by name.
        descriptions: each offered function's description, by name.
        expected: the calls a correct first plan makes, in any order.
    """

    id: str
    category: str
    task: str
    functions: Mapping[str, Mapping[str, Any]]
    descriptions: Mapping[str, str]
    expected: tuple[Expected, ...]


class OfferedTool(Tool):
    """A function offered to the planner by its schema; the benchmark scores plans and runs no tool."""

    def __init__(self, name: str, description: str, input_schema: Mapping[str, Any]) -> None:
        self.name = name
        self.description = description
        self.input_schema = dict(input_schema)
        self.policy = ToolPolicy()

    async def call(self, arguments: dict[str, JsonValue]) -> JsonValue:
        """Refuse: the function-call benchmark never runs a tool."""
        raise RuntimeError(f"{self.name} is offered for planning only; the calls benchmark runs no tool")


def to_json_schema(schema: object) -> Any:
    """BFCL's schema dialect as JSON Schema: `dict` → object, `float` → number, `tuple` → array, `any` → no type."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    translated: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            if value != "any":
                translated["type"] = _TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            translated["properties"] = {name: to_json_schema(item) for name, item in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf"):
            translated[key] = to_json_schema(value)
        else:
            translated[key] = value
    return translated


def load_cases(paths: Sequence[Path], *, limit: int | None = None) -> list[CallsCase]:
    """The cases of each file in turn, the first `limit` of each (None: all).

    Raises:
        ValueError: a line is not JSON or not a BFCL record; the message names the file and line.
    """
    cases: list[CallsCase] = []
    for path in paths:
        lines = [(number, line) for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
        records = [(number, line) for number, line in lines if line.strip()]
        for number, line in records[:limit] if limit is not None else records:
            try:
                record = _Record.model_validate(json.loads(line))
            except (ValueError, ValidationError) as error:
                first = str(error).splitlines()[0]
                raise ValueError(f"{path.name}:{number}: not a BFCL record ({first})") from None
            cases.append(_to_case(record))
    return cases


def create_tools(case: CallsCase) -> list[Tool]:
    """The case's functions as tools the planner may use (and that never run)."""
    return [OfferedTool(name, case.descriptions[name], schema) for name, schema in case.functions.items()]


def create_tool_specs(case: CallsCase) -> tuple[ToolSpec, ...]:
    """The case's functions as the native `tools` of a model request."""
    return tuple(
        ToolSpec(name=name, description=case.descriptions[name], parameters=dict(schema))
        for name, schema in case.functions.items()
    )


def _to_case(record: _Record) -> CallsCase:
    turn = record.question[0] if record.question else []
    task = "\n".join(message.content for message in turn)
    return CallsCase(
        id=record.id,
        category=record.id.rsplit("_", 1)[0],
        task=task,
        functions={function.name: to_json_schema(function.parameters) for function in record.function},
        descriptions={function.name: function.description for function in record.function},
        expected=tuple(
            Expected(tool=name, arguments=arguments) for call in record.ground_truth for name, arguments in call.items()
        ),
    )
