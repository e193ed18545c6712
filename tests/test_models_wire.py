"""The wire's pure parts: tool names the OpenAI API accepts, tool calls read back, finish reasons."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentdag.messages import Completion, Message, ModelSettings, ToolCall, ToolSpec
from agentdag.models._wire import (
    WireMessage,
    map_finish_reason,
    map_tool_names,
    parse_completion,
    to_tool_calls,
    tool_params,
)
from agentdag.tokens import estimate_completion_tokens, estimate_prompt_tokens, estimate_tokens

WIRE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
OBJECT = {"type": "object", "properties": {"radius": {"type": "number"}}, "required": ["radius"]}


def spec(name: str) -> ToolSpec:
    return ToolSpec(name=name, description=f"the {name} function", parameters=OBJECT)


def test_acceptable_names_are_kept_and_dotted_ones_are_mapped() -> None:
    names = map_tool_names(["get_weather", "area_circle.calculate", "math.factorial", "x-y_Z9"])
    assert names == {
        "get_weather": "get_weather",
        "area_circle.calculate": "area_circle_calculate",
        "math.factorial": "math_factorial",
        "x-y_Z9": "x-y_Z9",
    }


def test_a_mapped_name_never_takes_an_acceptable_one() -> None:
    # The dotted name comes first, but the name already acceptable keeps its spelling.
    names = map_tool_names(["a.b", "a_b", "a b"])
    assert names == {"a.b": "a_b_2", "a_b": "a_b", "a b": "a_b_3"}


def test_long_and_empty_names_are_cut_and_filled() -> None:
    long_name = "module." + "x" * 80
    names = map_tool_names([long_name, long_name + ".y", ""])
    assert names[long_name] == ("module_" + "x" * 80)[:64]
    assert names[long_name + ".y"] == ("module_" + "x" * 80)[:62] + "_2"
    assert names[""] == "function"
    assert all(WIRE_NAME.fullmatch(wire) for wire in names.values())


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="'f' appear more than once"):
        map_tool_names(["f", "g", "f"])


@given(st.lists(st.text(max_size=80), unique=True, max_size=12))
def test_every_mapping_is_acceptable_unique_and_reversible(names: list[str]) -> None:
    mapping = map_tool_names(names)
    assert set(mapping) == set(names)
    assert all(WIRE_NAME.fullmatch(wire) for wire in mapping.values())
    assert len(set(mapping.values())) == len(names)  # so the reply's names map back to one each


def test_tool_params_offer_functions_under_their_wire_names() -> None:
    assert tool_params(()) is None
    params = tool_params((spec("area_circle.calculate"), spec("get_weather")))
    assert params == [
        {
            "type": "function",
            "function": {"name": "area_circle_calculate", "description": "the area_circle.calculate function",
                         "parameters": OBJECT},
        },
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "the get_weather function", "parameters": OBJECT},
        },
    ]  # fmt: skip


def test_tool_calls_are_read_back_under_their_own_names() -> None:
    message = WireMessage.model_validate(
        {
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "area_circle_calculate", "arguments": "{}"}},
                {"type": "function", "function": {"name": "made_up", "arguments": '{"radius": '}},
                {"id": "c3", "function": {"name": "area_circle_calculate", "arguments": {"radius": 2}}},
                {"id": "c4", "function": {"name": "get_weather"}},
            ],
            "extra": "ignored",
        }
    )
    calls = to_tool_calls(message, (spec("area_circle.calculate"), spec("get_weather")))
    assert calls == (
        ToolCall(name="area_circle.calculate", arguments="{}", id="c1"),
        ToolCall(name="made_up", arguments='{"radius": '),  # unknown and malformed: kept as sent
        ToolCall(name="area_circle.calculate", arguments='{"radius": 2}', id="c3"),
        ToolCall(name="get_weather", arguments="", id="c4"),
    )
    assert to_tool_calls(WireMessage(content="hi"), (spec("f"),)) == ()


def test_a_reply_with_tool_calls_parses_and_finishes_as_stop() -> None:
    body = (
        '{"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", '
        '"tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}'
    )
    wire = parse_completion(body)
    assert wire.choices[0].message.tool_calls is not None
    assert map_finish_reason(wire.choices[0].finish_reason) == "stop"


def test_parsed_arguments_are_a_json_object_or_a_clear_error() -> None:
    assert ToolCall(name="f", arguments='{"radius": 3}').parsed_arguments() == {"radius": 3}
    with pytest.raises(ValueError, match="arguments of the call to 'f' are not JSON"):
        ToolCall(name="f", arguments='{"radius": ').parsed_arguments()
    with pytest.raises(ValueError, match="are a JSON list, not an object"):
        ToolCall(name="f", arguments="[1, 2]").parsed_arguments()
    with pytest.raises(ValueError, match="not JSON"):
        ToolCall(name="f", arguments="").parsed_arguments()


def test_settings_refuse_two_tools_with_one_name() -> None:
    with pytest.raises(ValueError, match="'f' appear more than once"):
        ModelSettings(tools=(spec("f"), spec("g"), spec("f")))


def test_estimates_count_the_tools_offered_and_the_calls_made() -> None:
    messages = (Message("user", "hi"),)
    assert estimate_prompt_tokens(messages) == 1
    with_tools = estimate_prompt_tokens(messages, tools=(spec("area_circle.calculate"),))
    assert with_tools > 1 + 20  # the JSON of one spec is about a hundred characters
    call = ToolCall(name="area_circle.calculate", arguments='{"radius": 3}')
    assert estimate_completion_tokens((Completion(text="", tool_calls=(call,)),)) == estimate_tokens(
        "area_circle.calculate" + '{"radius": 3}'
    )
    assert estimate_completion_tokens((Completion(text="abcd"), Completion(text="efgh"))) == 2
