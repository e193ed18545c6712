"""BFCL's AST rules (`benchmarks/calls_check.py`) and the BFCL data and controls they score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentdag.benchmarks.calls_check import check_call, check_calls, normalize_text
from agentdag.benchmarks.calls_data import Expected, load_cases, to_json_schema
from agentdag.benchmarks.calls_oracle import create_oracle_calls
from agentdag.benchmarks.data_paths import DataNotFoundError, find_data_file
from agentdag.benchmarks.oracle import Call

SCHEMAS: dict[str, dict[str, Any]] = {
    "area": {
        "type": "object",
        "properties": {
            "shape": {"type": "string"},
            "size": {"type": "number"},
            "count": {"type": "integer"},
            "exact": {"type": "boolean"},
            "tags": {"type": "array"},
            "where": {"type": "object"},
        },
        "required": ["shape", "size"],
    },
    "other": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
}
AREA = Expected(
    tool="area",
    arguments={
        "shape": ["circle", "round"],
        "size": [5.0],
        "count": ["", 1],
        "exact": ["", True],
        "tags": ["", ["big", "red"]],
        "where": ["", {"city": ["New York"], "state": ["", "NY"]}],
    },
)


def verdict_of(arguments: dict[str, Any], expected: Expected = AREA) -> str:
    return check_call(Call(tool=expected.tool, arguments=arguments), expected, SCHEMAS).reason


def test_a_call_with_acceptable_values_passes_and_optional_arguments_may_be_absent() -> None:
    assert verdict_of({"shape": "circle", "size": 5.0}) == ""
    assert verdict_of({"shape": "round", "size": 5, "count": 1, "exact": True, "tags": ["big", "red"]}) == ""


def test_strings_compare_after_bfcl_normalisation() -> None:
    assert normalize_text("New York, N.Y.") == "newyorkny"
    assert verdict_of({"shape": " Circle.", "size": 5.0}) == ""
    assert verdict_of({"shape": "circle", "size": 5.0, "where": {"city": "new-york"}}) == ""


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"shape": "square", "size": 5.0}, "shape='square' is not an acceptable value"),
        ({"shape": "circle"}, "required argument size is missing"),
        ({"shape": "circle", "size": 5.0, "colour": "red"}, "unexpected argument colour"),
        ({"shape": "circle", "size": "5"}, "size='5' is not of type number"),
        ({"shape": "circle", "size": 5.0, "count": 1.0}, "count=1.0 is not of type integer"),
        ({"shape": "circle", "size": 5.0, "count": True}, "count=True is not of type integer"),
        ({"shape": "circle", "size": 5.0, "exact": False}, "exact=False is not an acceptable value"),
        ({"shape": "circle", "size": 5.0, "tags": ["red", "big"]}, "is not an acceptable value"),
        ({"shape": "circle", "size": 5.0, "where": {"city": "Boston"}}, "is not an acceptable value"),
        ({"shape": "circle", "size": 5.0, "where": {"state": "NY"}}, "is not an acceptable value"),
    ],
)
def test_a_call_outside_the_rules_fails_and_says_why(arguments: dict[str, Any], reason: str) -> None:
    assert reason in verdict_of(arguments)


def test_an_argument_without_the_optional_mark_must_be_given() -> None:
    expected = Expected(tool="other", arguments={"x": [3]})
    assert verdict_of({}, expected) == "other: required argument x is missing"
    relaxed = {"other": {"type": "object", "properties": {"x": {"type": "integer"}}}}
    call = Call(tool="other", arguments={})
    assert check_call(call, expected, relaxed).reason == "other: argument x is missing"


def test_calls_match_in_any_order_with_multiplicity() -> None:
    first = Expected(tool="other", arguments={"x": [1]})
    second = Expected(tool="other", arguments={"x": [2]})
    calls = [Call(tool="other", arguments={"x": 2}), Call(tool="other", arguments={"x": 1})]
    assert check_calls(calls, [first, second], SCHEMAS).correct
    twice = [Call(tool="other", arguments={"x": 1}), Call(tool="other", arguments={"x": 1})]
    assert (
        check_calls(twice, [first, second], SCHEMAS).reason
        == "no call matches other (other: x=1 is not an acceptable value)"
    )
    assert check_calls(calls[:1], [first, second], SCHEMAS).reason == "1 call(s), expected 2"
    assert not check_calls([*calls, calls[0]], [first, second], SCHEMAS).correct


def test_pairing_is_a_full_matching_not_first_fit() -> None:
    loose = Expected(tool="other", arguments={"x": [1, 2]})
    strict = Expected(tool="other", arguments={"x": [1]})
    calls = [Call(tool="other", arguments={"x": 1}), Call(tool="other", arguments={"x": 2})]
    # First fit pairs `loose` with x=1 and leaves x=2 for `strict`, which refuses it.
    assert check_calls(calls, [loose, strict], SCHEMAS).correct
    crossed = [Call(tool="other", arguments={"x": 2}), Call(tool="other", arguments={"x": 2})]
    assert check_calls(crossed, [loose, strict], SCHEMAS).reason.startswith("no call matches other")


def test_bfcl_schemas_become_json_schema() -> None:
    schema = {
        "type": "dict",
        "properties": {
            "a": {"type": "float"},
            "b": {"type": "tuple", "items": {"type": "dict", "properties": {"type": {"type": "string"}}}},
            "c": {"type": "any", "description": "anything"},
        },
        "required": ["a"],
    }
    assert to_json_schema(schema) == {
        "type": "object",
        "properties": {
            "a": {"type": "number"},
            "b": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
            "c": {"description": "anything"},
        },
        "required": ["a"],
    }


def bfcl_files() -> list[Path]:
    try:
        return [find_data_file(f"calls/{name}") for name in ("bfcl_parallel.jsonl", "bfcl_parallel_multiple.jsonl")]
    except DataNotFoundError as error:
        pytest.skip(str(error))


def test_the_oracle_passes_and_no_call_fails_on_every_bfcl_record() -> None:
    cases = load_cases(bfcl_files())
    assert len(cases) == 298
    for case in cases:
        oracle = create_oracle_calls(case)
        assert check_calls(oracle, case.expected, case.functions).correct, case.id
        assert check_calls(list(reversed(oracle)), case.expected, case.functions).correct, case.id
        assert not check_calls([], case.expected, case.functions).correct
        assert not check_calls(oracle[:-1], case.expected, case.functions).correct


def test_a_file_that_is_not_bfcl_records_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bfcl_parallel.jsonl"
    path.write_text('{"id": "parallel_0", "question": "no"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bfcl_parallel.jsonl:1: not a BFCL record"):
        load_cases([path])


def test_a_value_of_the_type_bfcl_lists_passes_where_it_differs_from_the_schema() -> None:
    schemas = {"fit": {"type": "object", "properties": {"x": {"type": "array"}, "mod": {"type": "integer"}}}}
    expected = Expected(tool="fit", arguments={"x": ["data['sales']"], "mod": ["", None]})
    assert check_call(Call(tool="fit", arguments={"x": "data['sales']", "mod": None}), expected, schemas).correct
    assert not check_call(Call(tool="fit", arguments={"x": "data", "mod": None}), expected, schemas).correct
    assert "is not of type integer" in check_call(Call(tool="fit", arguments={"mod": "3"}), expected, schemas).reason
