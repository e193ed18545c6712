"""agentdag: run LLM agents as parallel DAGs of tool calls."""

from agentdag.errors import AgentdagError, ModelError, PlanError, TaskFileError, ToolArgumentsError, ToolError
from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, Usage
from agentdag.models import FunctionModel, Model, WrapperModel

__all__ = (
    "AgentdagError",
    "Completion",
    "FunctionModel",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "PlanError",
    "TaskFileError",
    "ToolArgumentsError",
    "ToolError",
    "Usage",
    "WrapperModel",
)
