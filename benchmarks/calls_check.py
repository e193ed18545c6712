"""BFCL's AST rules: does a list of calls match the expected calls?

The rules of the Berkeley Function Calling Leaderboard's AST checker for its parallel categories:

* the same number of calls as expected, matched to the expected calls in any order. BFCL pairs first fit,
  so the order of the calls can decide its verdict (on `parallel_178`); here the pairing is a full
  bipartite matching, so a valid pairing is found wherever one exists;
* each matched call names the expected function, gives every required argument and no argument the
  expected call does not list, with a value of the schema's type (an integer passes for a number), or of
  the type of the first acceptable value where BFCL lists another (`null`, or a variable's name as a
  string). A list's items are not type-checked (BFCL checks them strictly: `[6, 2]` for a list of floats
  fails there and passes here, as `6 == 6.0`); they must equal an acceptable list's items;
* each value is one of the acceptable values: strings compare after BFCL's normalisation (lower case, with
  spaces and `,./-_*^` removed), lists item by item, objects key by key with the same rules (BFCL compares
  two kinds of strings exactly, variables' names and strings in lists inside objects; here they are
  normalised too, which can only pass more calls: about two records);
* an argument left out is fine only where its acceptable values include `""` (BFCL's mark of an optional
  argument).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from .calls_data import Expected
from .oracle import Call

__all__ = ["Verdict", "check_call", "check_calls", "normalize_text"]

_STRIPPED = re.compile(r"[ ,./\-_*^]")
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Whether the calls match; `reason` says why not (empty when they do)."""

    correct: bool
    reason: str = ""


def normalize_text(text: str) -> str:
    """BFCL's string normalisation: lower case, without spaces and `,./-_*^`, single quotes as double."""
    return _STRIPPED.sub("", text.lower()).replace("'", '"')


def check_calls(
    calls: Sequence[Call], expected: Sequence[Expected], schemas: Mapping[str, Mapping[str, Any]]
) -> Verdict:
    """Whether `calls` are exactly the `expected` calls, in any order, under BFCL's AST rules."""
    if len(calls) != len(expected):
        return Verdict(correct=False, reason=f"{len(calls)} call(s), expected {len(expected)}")
    fits = [[not check_call(call, want, schemas).reason for call in calls] for want in expected]
    if _has_perfect_matching(fits):
        return Verdict(correct=True)
    spare = [column for column in range(len(calls)) if not any(row[column] for row in fits)]
    for index, want in enumerate(expected):
        if not any(fits[index]):
            # A call that matches no expected call is the likelier culprit than one another call needs.
            order = spare + [column for column in range(len(calls)) if column not in spare]
            reasons = [check_call(calls[column], want, schemas).reason for column in order]
            return Verdict(correct=False, reason=f"no call matches {want.tool} ({_closest(reasons)})")
    return Verdict(correct=False, reason="the calls cannot be paired one to one with the expected calls")


def check_call(call: Call, expected: Expected, schemas: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """Whether one call matches one expected call."""
    if call.tool != expected.tool:
        return Verdict(correct=False, reason=f"calls {call.tool}, expected {expected.tool}")
    schema = schemas.get(expected.tool, {})
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in call.arguments:
            return Verdict(correct=False, reason=f"{call.tool}: required argument {name} is missing")
    for name, value in call.arguments.items():
        if name not in properties or name not in expected.arguments:
            return Verdict(correct=False, reason=f"{call.tool}: unexpected argument {name}")
        kind = properties[name].get("type")
        listed = [option for option in expected.arguments[name] if option != ""]
        if not _has_type(value, kind) and not (listed and type(value) is type(listed[0])):
            return Verdict(correct=False, reason=f"{call.tool}: {name}={value!r} is not of type {kind}")
        if not any(_equal(value, acceptable) for acceptable in expected.arguments[name]):
            return Verdict(correct=False, reason=f"{call.tool}: {name}={value!r} is not an acceptable value")
    for name, acceptable in expected.arguments.items():
        if name not in call.arguments and "" not in acceptable:
            return Verdict(correct=False, reason=f"{call.tool}: argument {name} is missing")
    return Verdict(correct=True)


def _has_type(value: JsonValue, kind: object) -> bool:
    if not isinstance(kind, str) or kind not in _PYTHON_TYPES:
        return True  # `any`, or a type JSON Schema does not name: BFCL checks nothing there either
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PYTHON_TYPES[kind])


def _equal(value: JsonValue, acceptable: JsonValue) -> bool:
    """BFCL's value comparison: normalised strings, lists item by item, objects key by key."""
    if isinstance(value, str) and isinstance(acceptable, str):
        return normalize_text(value) == normalize_text(acceptable)
    if isinstance(value, list) and isinstance(acceptable, list):
        return len(value) == len(acceptable) and all(_equal(a, b) for a, b in zip(value, acceptable, strict=True))
    if isinstance(value, dict) and isinstance(acceptable, dict):
        return _equal_object(value, acceptable)
    if value is None or acceptable is None:
        return value is acceptable
    if isinstance(value, bool) or isinstance(acceptable, bool):
        return value is acceptable
    if isinstance(value, int | float) and isinstance(acceptable, int | float):
        return value == acceptable
    return False


def _equal_object(value: Mapping[str, JsonValue], acceptable: Mapping[str, JsonValue]) -> bool:
    """An object against BFCL's nested form: each key's acceptable values as a list, `""` for optional."""
    for key, item in value.items():
        options = acceptable.get(key)
        if options is None:
            return False
        choices = options if isinstance(options, list) else [options]
        if not any(_equal(item, choice) for choice in choices):
            return False
    return all(key in value or (isinstance(options, list) and "" in options) for key, options in acceptable.items())


def _has_perfect_matching(fits: Sequence[Sequence[bool]]) -> bool:
    """Whether every expected call (row) pairs with its own call (column): Kuhn's augmenting paths."""
    owner: dict[int, int] = {}

    def assign(row: int, seen: set[int]) -> bool:
        for column, fit in enumerate(fits[row]):
            if fit and column not in seen:
                seen.add(column)
                if column not in owner or assign(owner[column], seen):
                    owner[column] = row
                    return True
        return False

    return all(assign(row, set()) for row in range(len(fits)))


def _closest(reasons: Sequence[str]) -> str:
    """The reason of the call that got furthest: one that names the right function, if any does."""
    named = [reason for reason in reasons if not reason.startswith("calls ")]
    return (named or list(reasons) or ["no calls"])[0]
