from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentdag.errors import InvalidReferenceError
from agentdag.references import Reference, find_references, is_whole_reference, parse_path, resolve_references

OUTPUTS = {1: {"items": [{"title": "Dune", "year": 1965}], "count": 1}, 2: [10, 20, 30], 3: "text"}


def test_structured_reference_keeps_the_type() -> None:
    assert resolve_references({"x": {"$ref": 1}}, OUTPUTS) == {"x": OUTPUTS[1]}
    assert resolve_references({"$ref": 1, "path": "items.0.year"}, OUTPUTS) == 1965
    assert resolve_references({"$ref": 2, "path": [2]}, OUTPUTS) == 30


def test_whole_string_reference_returns_the_structured_value() -> None:
    assert resolve_references("$2", OUTPUTS) == [10, 20, 30]
    assert resolve_references("${1.items.0}", OUTPUTS) == {"title": "Dune", "year": 1965}


def test_references_inside_text_are_spliced_as_text() -> None:
    text = "Book ${1.items.0.title} ($3) has counts $2 and costs $100"
    assert resolve_references(text, OUTPUTS) == "Book Dune (text) has counts [10,20,30] and costs $100"


def test_llmcompiler_style_multiple_references_in_one_string() -> None:
    assert resolve_references("${1.count}+${2.0}", OUTPUTS) == "1+10"
    assert resolve_references("$3$3", OUTPUTS) == "texttext"


def test_missing_paths_name_the_node_and_the_available_fields() -> None:
    with pytest.raises(InvalidReferenceError, match=r"no field 'items.0.author' \(fields: title, year\)"):
        resolve_references({"$ref": 1, "path": "items.0.author"}, OUTPUTS)
    with pytest.raises(InvalidReferenceError, match=r"no item 'items\.5'"):
        resolve_references({"$ref": 1, "path": "items.5"}, OUTPUTS)
    with pytest.raises(InvalidReferenceError, match="is a str, not a container"):
        resolve_references("${3.x}", OUTPUTS)


def test_braced_reference_to_an_unavailable_node_is_an_error_but_bare_is_text() -> None:
    with pytest.raises(InvalidReferenceError, match="node 9"):
        resolve_references("${9}", OUTPUTS)
    assert resolve_references("$9 fee", OUTPUTS) == "$9 fee"


def test_malformed_reference_objects_are_errors() -> None:
    with pytest.raises(InvalidReferenceError, match=r"only .\$ref. and .path."):
        list(find_references({"$ref": 1, "paths": "x"}))
    with pytest.raises(InvalidReferenceError, match="node id"):
        list(find_references({"$ref": "one"}))
    with pytest.raises(InvalidReferenceError, match="path"):
        parse_path({"a": 1})


def test_find_references_walks_nested_values() -> None:
    value = {"a": ["$1", {"b": {"$ref": 2, "path": "0"}}], "c": "${3.x.y} and $4"}
    assert list(find_references(value)) == [
        Reference(1, (), explicit=False),
        Reference(2, (0,), explicit=True),
        Reference(3, ("x", "y"), explicit=True),
        Reference(4, (), explicit=False),
    ]


def test_string_reference_with_ref_id_as_string_is_accepted() -> None:
    assert resolve_references({"$ref": "$2"}, OUTPUTS) == [10, 20, 30]


def test_is_whole_reference() -> None:
    assert is_whole_reference("$1", {1})
    assert not is_whole_reference("$1", set())
    assert is_whole_reference("${1.a}", set())
    assert not is_whole_reference("x $1", {1})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(value=json_values)
def test_values_without_references_pass_through_unchanged(value: object) -> None:
    try:
        references = list(find_references(value))
    except InvalidReferenceError:
        return
    if not references:
        assert resolve_references(value, {}) == value


@given(value=json_values, outputs=st.dictionaries(st.integers(0, 5), json_values, max_size=4))
def test_resolution_raises_only_the_documented_error(value: object, outputs: dict[int, object]) -> None:
    with contextlib.suppress(InvalidReferenceError):
        resolve_references(value, outputs)
