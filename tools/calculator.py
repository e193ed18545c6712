"""Safe arithmetic: expressions are parsed and evaluated node by node, never passed to `eval`.

Use the Python tools (`agentdag.tools.calculator:TOOLS`) directly, or run the MCP server with
`python -m agentdag.tools.calculator`.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from agentdag.errors import ToolError
from agentdag.toolsets import FunctionTool, tool

__all__ = ["TOOLS", "calculate", "evaluate"]

MAX_EXPRESSION_CHARS = 2_000
MAX_EXPONENT = 1_000
MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, a few math functions.

    Raises:
        ToolError: the expression is not arithmetic, too long, or its value is undefined or too large.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    cleaned = expression.replace(",", "").replace("^", "**").strip()
    try:
        tree = ast.parse(cleaned, mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value: int | float = _evaluate(tree.body)
    except RecursionError:
        raise ToolError(f"expression is nested too deeply: {expression[:40]!r}...") from None
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as error:
        raise ToolError(f"cannot evaluate {expression!r}: {error}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is larger than {MAX_EXPONENT}")
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and 1 <= len(node.args) <= 8
    ):
        return _checked(_FUNCTIONS[node.func.id](*(_evaluate(argument) for argument in node.args)))
    raise ValueError(f"{ast.unparse(node)!r} is not allowed (only numbers, operators and {sorted(_FUNCTIONS)})")


def _checked(value: Any) -> Any:
    if isinstance(value, complex) or (isinstance(value, int | float) and abs(value) > MAX_MAGNITUDE):
        raise ValueError("the result is too large or not a real number")
    return value


@tool
def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression such as "(3 + 4) * 2 / sqrt(16)"."""
    return evaluate(expression)


TOOLS: list[FunctionTool] = [calculate]
