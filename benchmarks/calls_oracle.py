"""The calls benchmark's controls: an oracle that writes the expected calls, and a model that calls nothing.

Both answer in whatever form the request asks for, as a real model would: a JSON plan when the request
carries the plan's JSON schema, a native tool-call reply when it offers `tools`, and LLMCompiler's numbered
plan otherwise. The oracle writes, for every expected call, the first acceptable value of each argument
the function's schema has, other than `""` (BFCL's mark of an argument that may be absent) and `null`, and
leaves out an optional argument where no other value is listed. Optional arguments are written because they may be
what tells two calls apart (`stock_price(..., data_type="Open")` and `data_type="Close"`); an argument the
schema does not have is written only where the expected call requires it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import jsonschema
from pydantic import JsonValue

from agentdag.messages import Completion, ModelRequest, ToolCall
from agentdag.models import FunctionModel, Model

from .calls_data import CallsCase
from .oracle import Call

__all__ = ["create_control_model", "create_oracle_calls", "find_schema_conflicts", "python_arguments"]

_NO_CALL = "No function needs to be called."


def create_oracle_calls(case: CallsCase) -> list[Call]:
    """The calls the oracle makes: each expected call with the first acceptable value of its arguments."""
    calls = []
    for want in case.expected:
        known = case.functions.get(want.tool, {}).get("properties", {})
        arguments = {
            name: [value for value in acceptable if value is not None or "" not in acceptable]
            for name, acceptable in want.arguments.items()
            if name in known or "" not in acceptable
        }
        calls.append(Call(tool=want.tool, arguments=_first_values(arguments)))
    return calls


def find_schema_conflicts(case: CallsCase) -> list[str]:
    """Where the expected calls break their own schema: no plan the planner accepts can then be right.

    The planner validates every call against its tool's schema (and repairs or drops what fails), while
    the native tool calls are scored as the server returns them; so a record whose ground truth fails its
    schema (BFCL has a few, e.g. strings for an array of numbers) cannot be matched by a planned call.
    """
    conflicts = []
    for call in create_oracle_calls(case):
        schema = case.functions.get(call.tool, {})
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
        conflicts += [f"{call.tool}: {error.message}" for error in validator.iter_errors(dict(call.arguments))]
    return conflicts


def create_control_model(kind: str, case: CallsCase) -> Model:
    """The scripted model of one case: `oracle` makes the expected calls, `noop` makes none."""
    calls = create_oracle_calls(case) if kind == "oracle" else []

    thought = "Each call is independent." if calls else _NO_CALL

    def reply(request: ModelRequest) -> str | Completion:
        settings = request.settings
        if settings.tools:
            return _tool_call_completion(calls)
        if settings.json_schema is not None:
            nodes = [
                {"id": index, "tool": call.tool, "arguments": dict(call.arguments), "depends_on": []}
                for index, call in enumerate(calls, start=1)
            ]
            return json.dumps({"thought": thought, "nodes": nodes})
        lines = [f"{index}. {call.tool}({python_arguments(call.arguments)})" for index, call in enumerate(calls, 1)]
        lines.append(f"{len(calls) + 1}. join()<END_OF_PLAN>")
        return "\n".join([f"Thought: {thought}", *lines])

    return FunctionModel(reply, name=kind)


def _tool_call_completion(calls: Sequence[Call]) -> Completion:
    """A native reply making `calls`; `FunctionModel` estimates its tokens, tool specs and calls included."""
    tool_calls = tuple(
        ToolCall(name=call.tool, arguments=json.dumps(dict(call.arguments)), id=f"call_{index}")
        for index, call in enumerate(calls, start=1)
    )
    return Completion(text="" if calls else _NO_CALL, tool_calls=tool_calls)


def _first_values(arguments: Mapping[str, Sequence[JsonValue]]) -> dict[str, JsonValue]:
    """Each argument's first acceptable value other than `""`."""
    values: dict[str, JsonValue] = {}
    for name, acceptable in arguments.items():
        given = [value for value in acceptable if value != ""]
        if given:
            values[name] = _first_nested(given[0])
    return values


def _first_nested(value: JsonValue) -> JsonValue:
    """An object value in BFCL's nested form (each key's acceptable values as a list) as one object."""
    if not isinstance(value, dict):
        return value
    needed = {key: options if isinstance(options, list) else [options] for key, options in value.items()}
    return _first_values({key: options for key, options in needed.items() if "" not in options})


def python_arguments(arguments: Mapping[str, JsonValue]) -> str:
    """Keyword arguments as Python literals, which LLMCompiler's plan format reads."""
    return ", ".join(f"{name}={value!r}" for name, value in arguments.items())
