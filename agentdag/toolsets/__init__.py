"""Tools: the protocol, function tools, MCP toolsets and the registry."""

from agentdag.toolsets.base import JsonValue, Tool, ToolPolicy
from agentdag.toolsets.function import FunctionTool, to_json_value, tool
from agentdag.toolsets.model import ModelTool
from agentdag.toolsets.registry import ToolRegistry, import_tools

__all__ = (
    "FunctionTool",
    "JsonValue",
    "ModelTool",
    "Tool",
    "ToolPolicy",
    "ToolRegistry",
    "import_tools",
    "to_json_value",
    "tool",
)
