"""Task files (`task.yaml`): their schema and a loader whose errors name the file, the key and the line.

A task file says what to do (`task`), which tools to offer, which model to use, and optionally a fixed
`plan` that runs without a planner. Unknown keys are rejected so that a typo never passes silently.
Turning a task file into a running agent is `agentdag.assembly`'s job; this module only reads it, and
loads neither the planner nor the executor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentdag.backends.ray_config import RayConfig
from agentdag.config import Limits, PlannerConfig
from agentdag.errors import TaskFileError
from agentdag.models.config import ModelConfig
from agentdag.plan import Node
from agentdag.scaling.config import BestOfNConfig, ScalingConfig
from agentdag.toolsets.mcp_config import McpServerConfig

__all__ = [
    "MODEL_TOOL",
    "CacheConfig",
    "LocalBackendConfig",
    "RayBackendConfig",
    "RoleScaling",
    "TaskFile",
    "load_task_file",
    "parse_task_file",
]

MAX_TASK_FILE_BYTES = 1_000_000
MODEL_TOOL = "llm"
"""The reserved entry in `tools:` that offers the run's model as a tool (see `ModelTool`)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheConfig(_Strict):
    """Tool result caching (`cache:`): opt-in per tool, and only for tools marked read-only.

    Attributes:
        tools: time to live in seconds, by tool name.
        path: the cache file (SQLite), shared by runs; default `$XDG_CACHE_HOME/agentdag/tools.sqlite`
            (`~/.cache/agentdag/tools.sqlite`). A relative path is taken from the task file's folder.
    """

    tools: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    path: Path | None = None


class LocalBackendConfig(_Strict):
    """Nodes run in this process (`backend: {kind: local}`, the default)."""

    kind: Literal["local"] = "local"


class RayBackendConfig(RayConfig):
    """Nodes run on a Ray cluster: `backend: {kind: ray, address: ..., ...}`.

    The other keys are `RayConfig`'s. Needs `pip install 'agentdag[ray]'`.
    """

    kind: Literal["ray"]


class RoleScaling(_Strict):
    """Test-time scaling per model role: a strategy, or a list of strategies stacked innermost first.

    Attributes:
        planner: wraps the planner's calls.
        joiner: wraps the joiner's calls, which give the final answer.
        tools: wraps the calls of the `llm` tool.
    """

    planner: ScalingConfig | list[ScalingConfig] | None = None
    joiner: ScalingConfig | list[ScalingConfig] | None = None
    tools: ScalingConfig | list[ScalingConfig] | None = None

    @model_validator(mode="after")
    def _plans_only_for_the_planner(self) -> RoleScaling:
        for role in ("joiner", "tools"):
            config = getattr(self, role)
            configs = config if isinstance(config, list) else [config]
            if any(isinstance(item, BestOfNConfig) and item.selector == "structure" for item in configs):
                raise ValueError(f"{role}: selector `structure` ranks plans, so it applies to the planner only")
        return self


class TaskFile(_Strict):
    """The schema of a task file.

    Attributes:
        task: what the agent should do, in words.
        tools: Python tools to offer, each as `package.module:name` (a tool or a list of tools); modules
            next to the task file can be imported too. The entry `llm` offers the run's model as a tool.
        mcp_servers: MCP servers whose tools to offer (stdio `command` or streamable HTTP `url`); a
            relative `cwd` (default: the task file's folder) is taken from the task file's folder.
        model: the model and the server that runs it (default: the embedded llama.cpp server).
        planner: planner, joiner and replanning settings (when there is no fixed `plan`).
        scaling: test-time scaling strategies for the planner, the joiner and the `llm` tool.
        plan: a fixed plan to run instead of asking a planner.
        answer: for a fixed plan, the answer as a template over node outputs (`"${3}"`,
            `{"$ref": 3, "path": "items.0"}`, ...); defaults to the output of the last node.
        limits: concurrency and time limits.
        cache: which tools' results to cache, and for how long.
        backend: where ready nodes run: `{kind: local}` (the default) or `{kind: ray, ...}`.
        allow_tools: when set, the only tools the planner sees and a plan may call, by the names plans use
            (Python tools, MCP server tools, `llm`); a name that no tool source offers is an error.
    """

    task: str = Field(min_length=1)
    tools: list[str] = Field(default_factory=list)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)
    model: ModelConfig = Field(default_factory=ModelConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    scaling: RoleScaling = Field(default_factory=RoleScaling)
    plan: list[Node] | None = None
    answer: Any = None
    limits: Limits = Field(default_factory=Limits)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    backend: LocalBackendConfig | RayBackendConfig = Field(default_factory=LocalBackendConfig, discriminator="kind")
    allow_tools: list[Annotated[str, Field(min_length=1)]] | None = None


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases, so a small hostile file cannot expand into a huge one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem="YAML aliases (*name) are not allowed in task files", problem_mark=event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():  # else: super() says why
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # PyYAML's scalar constructors fail this way on values such as `!!int abc`, `!!bool maybe`,
            # `2001-13-45` or an integer of more digits than Python converts.
            value = node.value if isinstance(node, yaml.ScalarNode) else "…"
            value = value if len(value) <= 40 else value[:40] + "…"
            problem = f"cannot read {value!r} as {node.tag.rsplit(':', 1)[-1]}"
            raise yaml.MarkedYAMLError(problem=problem, problem_mark=node.start_mark) from None


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once, keeping the node tree for line numbers and the constructed data."""
    loader = _NoAliasLoader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def load_task_file(path: str | Path) -> TaskFile:
    """Read and validate a task file.

    Raises:
        TaskFileError: one line naming the file, the key and the line of the first problem.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise TaskFileError(f"{file}: no such task file") from None
    except IsADirectoryError:
        raise TaskFileError(f"{file}: is a directory, not a task file") from None
    except OSError as error:
        raise TaskFileError(f"{file}: cannot read the task file: {error.strerror}") from None
    if len(data) > MAX_TASK_FILE_BYTES:
        raise TaskFileError(f"{file}: task file is {len(data):,} bytes; the limit is {MAX_TASK_FILE_BYTES:,}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TaskFileError(f"{file}: not UTF-8 text (byte {error.start})") from None
    return parse_task_file(text, source=str(file))


def parse_task_file(text: str, *, source: str = "<task>") -> TaskFile:
    """Validate the text of a task file; `source` names it in errors.

    Raises:
        TaskFileError: the text is not YAML, not a mapping, or does not match the schema.
    """
    try:
        root, data = _parse_yaml(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise TaskFileError(f"{where}: invalid YAML: {_one_line(str(error.problem or error.context))}") from None
    except yaml.YAMLError as error:
        raise TaskFileError(f"{source}: invalid YAML: {_one_line(str(error))}") from None
    except RecursionError:
        raise TaskFileError(f"{source}: invalid YAML: nested too deeply") from None
    if data is None:
        raise TaskFileError(f"{source}: the task file is empty; it needs at least a 'task:' key")
    if not isinstance(data, dict):
        raise TaskFileError(f"{source}:1: a task file is a mapping of keys (task:, tools:, ...), not a {_kind(data)}")
    try:
        task = TaskFile.model_validate(data)
    except pydantic.ValidationError as error:
        raise TaskFileError(_describe(error, root, source)) from None
    except RecursionError:
        raise TaskFileError(f"{source}: the task file is nested too deeply") from None
    _check_allowed_plan(task, root, source)
    return task


def _check_allowed_plan(task: TaskFile, root: yaml.Node | None, source: str) -> None:
    """A fixed plan may only call the tools that `allow_tools` allows."""
    if task.allow_tools is None or task.plan is None:
        return
    allowed = set(task.allow_tools)
    for index, node in enumerate(task.plan):
        if node.tool not in allowed:
            line = _line_of(root, ("plan", index, "tool"))
            where = f"{source}:{line}" if line is not None else source
            names = ", ".join(sorted(allowed)) or "none"
            raise TaskFileError(_one_line(f"{where}: plan.{index}.tool: {node.tool!r} is not in allow_tools ({names})"))


def _kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "value")


def _describe(error: pydantic.ValidationError, root: yaml.Node | None, source: str) -> str:
    problems = _most_specific(error.errors(include_url=False))
    lines = [_describe_one(problem, root, source) for problem in problems[:3]]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(lines) + more


def _most_specific(problems: list[Any]) -> list[Any]:
    """The problems, without those of a union's other alternatives (a location that a deeper problem extends).

    For `tools: {strategy: ...}` given where a strategy or a list of them fits, pydantic reports both why the
    mapping is a bad strategy and that it is no list; only the first helps.
    """
    locations = [tuple(_location(problem)) for problem in problems]
    return [
        problem
        for problem, location in zip(problems, locations, strict=True)
        if not any(len(other) > len(location) and other[: len(location)] == location for other in locations)
    ]


def _location(problem: Any) -> tuple[Any, ...]:
    return tuple(part for part in problem["loc"] if not _is_union_tag(part))


def _describe_one(problem: Any, root: yaml.Node | None, source: str) -> str:
    location = _location(problem)
    key = ".".join(str(part) for part in location) or "(top level)"
    line = _line_of(root, location)
    where = f"{source}:{line}" if line is not None else source
    message = problem["msg"]
    if problem["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif problem["type"] == "missing":
        message = "required key is missing"
    elif problem["type"] == "value_error":
        message = str(message).removeprefix("Value error, ")
    return _one_line(f"{where}: {key}: {message}")


def _one_line(text: str) -> str:
    """`text` with its line breaks escaped: keys and values quoted in messages may hold them."""
    return "\\n".join(text.splitlines())


def _is_union_tag(part: object) -> bool:
    # pydantic inserts the union member's type name into locations (e.g. "function-after[...]").
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool", "list", "dict"})


def _line_of(root: yaml.Node | None, location: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `location`, or of its nearest existing parent."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in location:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
