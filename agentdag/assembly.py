"""From a task file to a running `Agent`: its model, tools, MCP servers, allow-list, cache, scaling and backend.

`open_agent` is what `agentdag run` and `agentdag plan` use, and what an SDK user with a task file calls:

    async with open_agent("task.yaml") as agent:
        result = await agent.run(agent_task)   # or run_plan for a fixed plan

Everything it opens (the model server, the MCP servers, the Ray cluster connection, the tool cache) is
closed when the block ends. The pieces are public too, for callers that want only some of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from agentdag.agent import Agent
from agentdag.backends.base import Backend, LocalBackend
from agentdag.errors import AgentdagError, TaskFileError
from agentdag.events import RunEventSink
from agentdag.models.base import Model
from agentdag.models.config import open_model
from agentdag.scaling.config import create_strategy
from agentdag.taskfile import MODEL_TOOL, LocalBackendConfig, RayBackendConfig, RoleScaling, TaskFile, load_task_file
from agentdag.toolsets.base import Tool
from agentdag.toolsets.cache import ToolCache, cache_tools, default_cache_path
from agentdag.toolsets.mcp_config import McpServerConfig
from agentdag.toolsets.model import ModelTool
from agentdag.toolsets.registry import import_tools

__all__ = [
    "apply_scaling",
    "load_task_tools",
    "open_agent",
    "open_backend",
    "open_tools",
    "resolve_servers",
    "select_allowed_tools",
]


@asynccontextmanager
async def open_agent(
    task: TaskFile | str | os.PathLike[str],
    *,
    base_dir: Path | None = None,
    on_event: Sequence[RunEventSink] = (),
    run_nodes: bool = True,
) -> AsyncIterator[Agent]:
    """An agent for a task file, with everything it needs open until the block ends.

    The model is opened when the planner (no fixed `plan`) or the `llm` tool needs it; the Python tools are
    imported and the MCP servers started; `allow_tools` and `cache` apply; the scaling strategies wrap their
    roles; the limits and the backend are the task file's.

    Args:
        task: a task file's path, or one already loaded.
        base_dir: the folder relative paths in the task are taken from (default: the task file's, or the
            current folder for a task given loaded).
        on_event: callbacks for every node event and planner/joiner event.
        run_nodes: False when no node will run (a draft): the backend is then the local one, and no
            cluster is started.

    Raises:
        TaskFileError: the task file is invalid, or names tools that cannot be loaded or allowed.
        ModelError: the model cannot be opened.
    """
    if not isinstance(task, TaskFile):
        path = Path(task)
        task, base_dir = load_task_file(path), base_dir or path.parent
    folder = base_dir or Path.cwd()
    async with AsyncExitStack() as stack:
        model: Model | None = None
        if task.plan is None or MODEL_TOOL in task.tools:
            model = await stack.enter_async_context(open_model(task.model))
        backend = await stack.enter_async_context(open_backend(task.backend)) if run_nodes else LocalBackend()
        tool_model = None if model is None else apply_scaling(task.scaling, "tools", model)
        tools = await stack.enter_async_context(open_tools(task, base_dir=folder, model=tool_model))
        yield Agent(
            tools=tools,
            model=model,
            planner_model=None if model is None else apply_scaling(task.scaling, "planner", model),
            joiner_model=None if model is None else apply_scaling(task.scaling, "joiner", model),
            planner=task.planner,
            limits=task.limits,
            on_event=on_event,
            backend=backend,
        )


@asynccontextmanager
async def open_backend(config: LocalBackendConfig | RayBackendConfig) -> AsyncIterator[Backend]:
    """The backend a task file asks for, open (a Ray cluster is connected to or started here)."""
    if isinstance(config, RayBackendConfig):
        from agentdag.backends.ray import RayBackend  # imports Ray only when a task asks for it

        async with RayBackend(config) as backend:
            yield backend
    else:
        yield LocalBackend()


@asynccontextmanager
async def open_tools(task: TaskFile, *, base_dir: Path, model: Model | None) -> AsyncIterator[list[Tool]]:
    """The task's Python tools and the tools of its MCP servers (started here, stopped on exit), as allowed.

    Args:
        task: the task file.
        base_dir: where modules named in `tools:` and relative MCP `cwd`s and cache paths are found.
        model: the model of the `llm` tool (None when the task lists none).
    """
    tools = load_task_tools(task, base_dir=base_dir, model=model)
    async with AsyncExitStack() as stack:
        if task.mcp_servers:
            from agentdag.toolsets.mcp import open_mcp_toolsets  # the MCP SDK is slow to import; only when used

            toolsets = await stack.enter_async_context(open_mcp_toolsets(resolve_servers(task, base_dir=base_dir)))
            tools = [*tools, *(tool for toolset in toolsets for tool in toolset.tools)]
        tools = select_allowed_tools(task, tools)
        if task.cache.tools:
            cache = stack.enter_context(ToolCache(base_dir / (task.cache.path or default_cache_path())))
            tools = cache_tools(tools, cache, task.cache.tools)
        yield tools


def apply_scaling(scaling: RoleScaling, role: str, model: Model) -> Model:
    """`model` wrapped in the strategies a task file configures for `role` ("planner", "joiner" or "tools")."""
    config = getattr(scaling, role)
    return model if config is None else create_strategy(config, model)


def resolve_servers(task: TaskFile, *, base_dir: Path) -> list[McpServerConfig]:
    """The task's MCP servers with their working folders made absolute against the task file's folder."""
    return [
        server.model_copy(update={"cwd": (base_dir / (server.cwd or ".")).resolve()}) if server.command else server
        for server in task.mcp_servers
    ]


def load_task_tools(task: TaskFile, *, base_dir: Path, model: Model | None) -> list[Tool]:
    """Import the tools a task file names; `llm` becomes a `ModelTool` over `model`.

    Raises:
        TaskFileError: a tool reference cannot be imported (naming its line), or `llm` is listed without a model.
    """
    tools: list[Tool] = []
    sys.path.insert(0, str(base_dir.resolve()))
    try:
        for index, reference in enumerate(task.tools):
            if reference == MODEL_TOOL:
                if model is None:
                    raise TaskFileError(f"{task.where('tools', index)}: the 'llm' tool needs a model, and none is open")
                tools.append(ModelTool(model))
                continue
            try:
                tools.extend(import_tools(reference))
            except AgentdagError as error:
                raise TaskFileError(f"{task.where('tools', index)}: tools.{index}: {error}") from None
    finally:
        sys.path.remove(str(base_dir.resolve()))
    return tools


def select_allowed_tools(task: TaskFile, tools: Sequence[Tool]) -> list[Tool]:
    """The tools the task's `allow_tools` lets the planner see and plans call; all of them without one.

    Call it once every tool source is open: MCP servers tell their tools' names only after they start. A
    plan (fixed, drafted or replanned) that names a tool left out is invalid, as for any unknown tool.

    Raises:
        TaskFileError: `allow_tools` names a tool that none of `tools` is.
    """
    if task.allow_tools is None:
        return list(tools)
    offered = {tool.name for tool in tools}
    unknown = sorted(set(task.allow_tools) - offered)
    if unknown:
        raise TaskFileError(
            f"allow_tools names {', '.join(map(repr, unknown))}, which no tool source offers "
            f"(tools: {', '.join(sorted(offered)) or 'none'})"
        )
    allowed = set(task.allow_tools)
    return [tool for tool in tools if tool.name in allowed]
