from __future__ import annotations

import dataclasses

import pydantic
import pytest

from agentdag.errors import AgentdagError, ToolArgumentsError, ToolError
from agentdag.toolsets import FunctionTool, ToolPolicy, ToolRegistry, import_tools, tool


class Point(pydantic.BaseModel):
    x: float
    y: float


@dataclasses.dataclass
class Box:
    width: int
    height: int


@tool(retries=2, timeout_s=3, max_concurrency=4)
async def area(width: int, height: int = 1) -> int:
    """Multiply width by height."""
    return width * height


@tool
def shift(point: Point, by: float) -> Point:
    """Move a point diagonally."""
    return Point(x=point.x + by, y=point.y + by)


def test_schema_comes_from_type_hints_and_docstring() -> None:
    assert area.name == "area"
    assert area.description == "Multiply width by height."
    assert area.input_schema["properties"]["width"] == {"title": "Width", "type": "integer"}
    assert area.input_schema["required"] == ["width"]
    assert area.input_schema["additionalProperties"] is False
    assert area.policy == ToolPolicy(timeout_s=3, retries=2, max_concurrency=4)
    assert "$defs" in shift.input_schema


@pytest.mark.asyncio
async def test_arguments_are_validated_before_the_call() -> None:
    assert await area.call({"width": 3, "height": 2}) == 6
    with pytest.raises(ToolArgumentsError, match="width: Field required"):
        await area.call({"height": 2})
    with pytest.raises(ToolArgumentsError, match="surplus: Extra inputs are not permitted"):
        await area.call({"width": 1, "surplus": 2})
    with pytest.raises(ToolArgumentsError, match="width: Input should be a valid integer"):
        await area.call({"width": "wide"})


@pytest.mark.asyncio
async def test_sync_tools_with_models_return_json_values() -> None:
    assert await shift.call({"point": {"x": 1, "y": 2}, "by": 0.5}) == {"x": 1.5, "y": 2.5}

    @tool
    def box() -> Box:
        return Box(2, 3)

    assert await box.call({}) == {"width": 2, "height": 3}


@pytest.mark.asyncio
async def test_unserialisable_result_is_a_tool_error() -> None:
    @tool
    async def opaque() -> object:
        return object()

    with pytest.raises(ToolError, match="not JSON-able"):
        await opaque.call({})


def test_functions_that_cannot_be_described_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*items: int) -> int:
        return 0

    with pytest.raises(TypeError, match="needs a type hint"):
        FunctionTool(untyped)
    with pytest.raises(TypeError, match=r"\*args"):
        FunctionTool(variadic)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="retries"):
        ToolPolicy(retries=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        ToolPolicy(timeout_s=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        ToolPolicy(max_concurrency=0)


def test_registry_rejects_duplicate_names_and_restricts_to_an_allow_list() -> None:
    registry = ToolRegistry([area, shift])
    assert sorted(registry) == ["area", "shift"]
    with pytest.raises(AgentdagError, match="two tools are named 'area'"):
        registry.merge([area])
    assert list(registry.restrict(["shift"])) == ["shift"]
    with pytest.raises(AgentdagError, match="unknown tools: nope"):
        registry.restrict(["nope"])
    assert registry.describe()[0]["name"] == "area"


def test_import_tools_reports_each_mistake_clearly() -> None:
    assert [item.name for item in import_tools("agentdag.tools.calculator:TOOLS")] == ["calculate"]
    assert import_tools("agentdag.tools.calculator:calculate")[0].name == "calculate"
    with pytest.raises(AgentdagError, match="must look like"):
        import_tools("agentdag.tools.calculator")
    with pytest.raises(AgentdagError, match="cannot import module 'no_such_module'"):
        import_tools("no_such_module:x")
    with pytest.raises(AgentdagError, match="has no attribute 'missing'"):
        import_tools("agentdag.tools.calculator:missing")
    with pytest.raises(AgentdagError, match="neither a tool nor a list of tools"):
        import_tools("agentdag.tools.calculator:evaluate")
