from __future__ import annotations

import subprocess
import sys

import pytest
from agentdag.tools.calculator import TOOLS, create_server
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters


@pytest.mark.asyncio
async def test_calculate_tool_in_process() -> None:
    async with Client(create_server()) as client:
        (tool,) = (await client.list_tools()).tools
        assert tool.name == "calculate"
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.idempotent_hint is True
        assert tool.input_schema["required"] == ["expression"]
        result = await client.call_tool("calculate", {"expression": "(3 + 4) * 2 / sqrt(16)"})
        assert not result.is_error
        assert result.structured_content == {"result": 3.5}
        assert result.content[0].text == "3.5"  # type: ignore[union-attr]
        assert (await client.call_tool("calculate", {"expression": "2 ** 10"})).structured_content == {"result": 1024}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "cannot evaluate '1 / 0'"),
        ("__import__('os').system('true')", "is not allowed"),
        ("9 ** 9 ** 9", "exponent"),
        ("2 +", "not an arithmetic expression"),
    ],
)
async def test_errors_are_tool_errors(expression: str, message: str) -> None:
    async with Client(create_server()) as client:
        result = await client.call_tool("calculate", {"expression": expression})
        assert result.is_error
        assert message in result.content[0].text  # type: ignore[union-attr]
        # The server survives its tool errors.
        assert (await client.call_tool("calculate", {"expression": "1 + 1"})).structured_content == {"result": 2}


def test_python_tools_are_unchanged() -> None:
    assert [tool.name for tool in TOOLS] == ["calculate"]


@pytest.mark.asyncio
async def test_stdio_server() -> None:
    parameters = StdioServerParameters(command=sys.executable, args=["-m", "agentdag.tools.calculator"])
    async with Client(parameters) as client:
        assert (await client.call_tool("calculate", {"expression": "1,000 * 3"})).structured_content == {"result": 3000}
        failed = await client.call_tool("calculate", {"expression": "x + 1"})
        assert failed.is_error


def test_help() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "agentdag.tools.calculator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--http PORT" in completed.stdout
