"""Task files (`task.yaml`): their schema and a loader whose errors name the file, the key and the line.

A task file says what to do (`task`), which tools to offer, which model to use, and optionally a fixed
`plan` that runs without a planner. Unknown keys are rejected so that a typo never passes silently.
Turning a task file into a running agent is `agentdag.assembly`'s job; this module only reads it, and
loads neither the planner nor the executor.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from agentdag.backends.ray_config import RayConfig
from agentdag.config import Limits, PlannerConfig
from agentdag.errors import InvalidReferenceError, TaskFileError
from agentdag.models.config import ModelConfig
from agentdag.plan import Node, PlanProblem
from agentdag.references import find_references
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
_MAX_PROBLEMS = 10  # lines of schema problems shown; the rest are counted
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

    _source: str = PrivateAttr(default="<task>")
    _root: yaml.Node | None = PrivateAttr(default=None)

    def where(self, *key: str | int) -> str:
        """`FILE:LINE` of the entry at `key` (e.g. `"tools", 0`), or of its nearest parent; for messages.

        Only the file is named for a task file built in code rather than read from text.
        """
        line = _line_of(self._root, key)
        return f"{self._source}:{line}" if line is not None else self._source

    def locate(self, problems: Sequence[object]) -> TaskFileError:
        """The problems of this task file's fixed plan, one line each naming the file, the line and the key.

        `problems` are `PlanProblem`s (as `PlanError.problems` holds them); others are named by the plan.
        """
        lines = [_one_line(self._locate_one(problem)) for problem in problems]
        return TaskFileError("\n".join(lines))

    def _locate_one(self, problem: object) -> str:
        node_id = problem.node_id if isinstance(problem, PlanProblem) else None
        indexes = [index for index, node in enumerate(self.plan or ()) if node_id is not None and node.id == node_id]
        if not isinstance(problem, PlanProblem) or not indexes:  # a problem of the whole plan
            return f"{self.where('plan')}: plan: {problem}"
        # A duplicate id is the fault of its later use; any other problem is of the first node with the id.
        index = indexes[-1] if problem.kind == "duplicate_id" else indexes[0]
        key = ("plan", index, *problem.key)
        return f"{self.where(*key)}: {'.'.join(map(str, key))}: {problem}"


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
    task._source, task._root = source, root
    _check_allowed_plan(task)
    _check_answer(task)
    return task


def _check_allowed_plan(task: TaskFile) -> None:
    """A fixed plan may only call the tools that `allow_tools` allows."""
    if task.allow_tools is None or task.plan is None:
        return
    allowed = set(task.allow_tools)
    for index, node in enumerate(task.plan):
        if node.tool not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            where = task.where("plan", index, "tool")
            raise TaskFileError(_one_line(f"{where}: plan.{index}.tool: {node.tool!r} is not in allow_tools ({names})"))


def _check_answer(task: TaskFile) -> None:
    """The answer template of a fixed plan names only the plan's nodes, so a run cannot end with no answer."""
    if task.answer is None:
        return
    if task.plan is None:
        raise TaskFileError(f"{task.where('answer')}: answer: applies to a fixed plan only; add a plan: or remove it")
    ids = {node.id for node in task.plan}
    try:
        references = list(find_references(task.answer))
    except InvalidReferenceError as error:
        raise TaskFileError(_one_line(f"{task.where('answer')}: answer: {error}")) from None
    for reference in references:
        if reference.explicit and reference.node_id not in ids:
            known = ", ".join(str(node.id) for node in task.plan) or "none"
            message = f"answer: names node {reference.node_id}, which is not in the plan (nodes: {known})"
            raise TaskFileError(f"{task.where('answer')}: {message}")


def _kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "value")


def _describe(error: pydantic.ValidationError, root: yaml.Node | None, source: str) -> str:
    problems = _most_specific(error.errors(include_url=False))
    lines = [_describe_one(problem, root, source) for problem in problems[:_MAX_PROBLEMS]]
    if len(problems) > _MAX_PROBLEMS:
        lines.append(f"{source}: and {len(problems) - _MAX_PROBLEMS} more problem(s)")
    return "\n".join(lines)


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
        close = difflib.get_close_matches(str(location[-1]), _keys_at(location[:-1]), n=1) if location else []
        message = f"unknown key; did you mean {close[0]!r}?" if close else "unknown key (check its spelling)"
    elif problem["type"] == "missing":
        message = "required key is missing"
    elif problem["type"] == "value_error":
        message = str(message).removeprefix("Value error, ")
    return _one_line(f"{where}: {key}: {message}")


def _keys_at(location: tuple[Any, ...]) -> list[str]:
    """The keys a task file allows in the mapping at `location` (the top level for `()`), as far as known.

    The schema is walked by field, through lists, dicts and unions; where a union leaves several models
    possible (a strategy, a backend), the keys of all of them count.
    """
    current: list[Any] = [TaskFile]
    for part in location:
        following = [step for annotation in current for step in _step(annotation, part)]
        if following:  # else the part is a union member's tag, which is not a key: stay
            current = following
    return sorted({name for annotation in current for model in _models_in(annotation) for name in model.model_fields})


def _step(annotation: Any, part: object) -> list[Any]:
    """The annotations of what a value of type `annotation` holds at key or index `part`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        return [] if field is None else [field.annotation]
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _step(arguments[0], part)
    if origin in (typing.Union, types.UnionType):
        return [step for argument in arguments for step in _step(argument, part)]
    if origin in (list, tuple, Sequence) and isinstance(part, int) and arguments:
        return [arguments[0]]
    if origin is dict and len(arguments) == 2:
        return [arguments[1]]
    return []


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a value of type `annotation` can be (through `Annotated` and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _models_in(arguments[0])
    if origin in (typing.Union, types.UnionType):
        return [model for argument in arguments for model in _models_in(argument)]
    return []


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
