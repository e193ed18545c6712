from __future__ import annotations

import pytest
from agentdag.tools.calculator import evaluate
from hypothesis import given
from hypothesis import strategies as st

from agentdag.errors import ToolError


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2 + 3 * 4", 14), ("2 ** 10", 1024), ("10 / 4", 2.5), ("sqrt(16) + 1", 5), ("1,000 * 3", 3000), ("2^3", 8)],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "open('x')",
        "(1).__class__",
        "9 ** 9 ** 9",
        "1 / 0",
        "x + 1",
        "-" * 3000 + "1",
        "lambda: 1",
    ],
)
def test_anything_but_arithmetic_is_refused(expression: str) -> None:
    with pytest.raises(ToolError):
        evaluate(expression)


@given(st.text(max_size=60))
def test_any_text_gives_a_number_or_a_tool_error(text: str) -> None:
    try:
        value = evaluate(text)
    except ToolError as error:
        value = str(error)
    assert isinstance(value, int | float | str)
