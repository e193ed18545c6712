"""Safe arithmetic: expressions are parsed and evaluated node by node, never passed to `eval`.

Use the Python tools (`agentdag.tools.calculator:TOOLS`) directly, or run the MCP server with
`python -m agentdag.tools.calculator`.
"""

from __future__ import annotations

import argparse
import ast
import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agentdag.errors import ToolError
from agentdag.toolsets import FunctionTool, tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["TOOLS", "calculate", "create_server", "evaluate", "main"]

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


@tool(read_only=True)
def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression such as "(3 + 4) * 2 / sqrt(16)"."""
    return evaluate(expression)


TOOLS: list[FunctionTool] = [calculate]


def create_server() -> MCPServer[Any]:
    """An MCP server with one read-only tool, `calculate(expression) -> number`; bad expressions are tool errors."""
    # Imported here: the Python tools above should not pay for importing the MCP server stack.
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
    from mcp_types import ToolAnnotations

    server: MCPServer[Any] = MCPServer(
        "agentdag-calculator", instructions="Exact arithmetic on expressions.", log_level="WARNING"
    )
    annotations = ToolAnnotations(
        read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False
    )

    @server.tool(name="calculate", annotations=annotations, structured_output=True)
    def calculate_tool(expression: str) -> int | float:
        """Evaluate an arithmetic expression such as "(3 + 4) * 2 / sqrt(16)".

        Numbers, + - * / // % ** (or ^), parentheses, pi, e and abs, round, min, max, sqrt, log, exp, floor, ceil.
        """
        try:
            return evaluate(expression)
        except ToolError as error:
            raise MCPToolError(str(error)) from None

    return server


def main(argv: Sequence[str] | None = None) -> None:
    """Serve `calculate` over stdio (or streamable HTTP on 127.0.0.1 with `--http PORT`)."""
    parser = argparse.ArgumentParser(
        prog="python -m agentdag.tools.calculator",
        description="MCP server with one tool, calculate(expression) -> number: safe arithmetic, never eval.",
    )
    from .transport import add_transport_arguments, serve  # the MCP SDK only for the server, not for TOOLS

    add_transport_arguments(parser)
    args = parser.parse_args(argv)
    server = create_server()
    serve(server, args)


if __name__ == "__main__":
    main()
