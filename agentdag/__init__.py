"""agentdag: run LLM agents as parallel DAGs of tool calls.

A planner compiles a task into a DAG of tool calls; the executor runs every call the moment its inputs
exist. The public API is re-exported here; everything else is internal.
"""

from agentdag.agent import Agent
from agentdag.assembly import open_agent
from agentdag.backends import Backend, LocalBackend, NodeCall
from agentdag.config import Limits, PlannerConfig
from agentdag.errors import (
    AgentdagError,
    InvalidReferenceError,
    ModelError,
    PlanError,
    TaskFileError,
    ToolArgumentsError,
    ToolError,
)
from agentdag.events import NodeError, NodeEvent, RunEvent
from agentdag.executor import Execution, Executor
from agentdag.messages import (
    Completion,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolSpec,
    Usage,
)
from agentdag.models import FunctionModel, Model, ModelConfig, OpenAIModel, WrapperModel, open_model
from agentdag.plan import Node, Plan, PlanProblem, validate_plan
from agentdag.react import ReActAgent
from agentdag.records import ExecutionResult, NodeRecord
from agentdag.result import PlanDraft, Replan, RunResult
from agentdag.taskfile import TaskFile, load_task_file
from agentdag.toolsets import FunctionTool, ModelTool, Tool, ToolPolicy, ToolRegistry, tool
from agentdag.usage import RunMeter

__all__ = (
    "Agent",
    "AgentdagError",
    "Backend",
    "Completion",
    "Execution",
    "ExecutionResult",
    "Executor",
    "FunctionModel",
    "FunctionTool",
    "InvalidReferenceError",
    "Limits",
    "LocalBackend",
    "Message",
    "Model",
    "ModelConfig",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelTool",
    "Node",
    "NodeCall",
    "NodeError",
    "NodeEvent",
    "NodeRecord",
    "OpenAIModel",
    "Plan",
    "PlanDraft",
    "PlanError",
    "PlanProblem",
    "PlannerConfig",
    "ReActAgent",
    "Replan",
    "RunEvent",
    "RunMeter",
    "RunResult",
    "TaskFile",
    "TaskFileError",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolError",
    "ToolPolicy",
    "ToolRegistry",
    "ToolSpec",
    "Usage",
    "WrapperModel",
    "load_task_file",
    "open_agent",
    "open_model",
    "tool",
    "validate_plan",
)
