"""Pins the public surface: a change here is a change to the API and must be deliberate."""

from __future__ import annotations

import agentdag

PUBLIC = {
    "Agent", "AgentdagError", "Backend", "Completion", "Execution", "ExecutionResult", "Executor", "FunctionModel",
    "FunctionTool", "InvalidReferenceError", "Limits", "LocalBackend", "Message", "Model", "ModelConfig",
    "ModelError", "ModelRequest", "ModelResponse", "ModelSettings", "ModelTool", "Node", "NodeCall", "NodeError",
    "NodeEvent", "NodeRecord", "OpenAIModel", "Plan", "PlanDraft", "PlanError", "PlanProblem", "PlannerConfig",
    "ReActAgent", "Replan", "RunEvent", "RunMeter", "RunResult", "TaskFile", "TaskFileError", "Tool",
    "ToolArgumentsError", "ToolCall", "ToolError", "ToolPolicy", "ToolRegistry", "ToolSpec", "Usage", "WrapperModel",
    "load_task_file",
    "open_agent", "open_model", "tool", "validate_plan",
}  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    assert set(agentdag.__all__) == PUBLIC
    assert list(agentdag.__all__) == sorted(agentdag.__all__)


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in agentdag.__all__:
        value = getattr(agentdag, name)
        assert getattr(value, "__doc__", None), f"{name} has no docstring"


def test_importing_agentdag_does_not_import_the_embedded_server() -> None:
    import sys

    assert "xllamacpp" not in sys.modules or "agentdag.models.embedded" in sys.modules
