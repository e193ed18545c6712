"""Turn a Python function (async or sync) into a `Tool` whose argument schema comes from its type hints."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, overload

import anyio.to_thread
import pydantic
from pydantic_core import PydanticSerializationError, to_jsonable_python

from agentdag.errors import ToolArgumentsError, ToolError
from agentdag.toolsets.base import JsonValue, Tool, ToolPolicy

__all__ = ["FunctionSpec", "FunctionTool", "to_json_value", "tool"]

# Sync tools share this many worker threads, so a burst of blocking tools cannot exhaust the process.
_THREADS = anyio.CapacityLimiter(16)


def to_json_value(value: object, *, tool: str) -> JsonValue:
    """Convert a tool's result to plain JSON values.

    Pydantic models and dataclasses become objects, tuples and sets become lists, UTF-8 bytes become
    strings and non-string keys become strings. Everything else is refused, including generators and
    iterators (draining one could block the event loop forever) and NaN or infinite floats (JSON has none).

    Raises:
        ToolError: the value cannot be represented as JSON; the message names the tool.
    """
    lazy = _find_lazy(value)
    if lazy is not None:
        raise ToolError(f"tool {tool!r} returned {lazy}")
    try:
        converted = to_jsonable_python(value)
    except (PydanticSerializationError, ValueError) as error:  # ValueError: bytes that are not UTF-8
        raise ToolError(f"tool {tool!r} returned a value that is not JSON-able: {error}") from None
    if not _is_finite(converted):
        raise ToolError(
            f"tool {tool!r} returned a value that is not JSON-able: NaN or infinity (JSON has neither; "
            f"return None or a string)"
        )
    return converted


def _find_lazy(value: object) -> str | None:
    """Describe a generator, iterator or awaitable inside lists, tuples, sets and dict values, if there is one."""
    if isinstance(value, str | bytes | int | float | None):
        return None
    if isinstance(value, dict):
        return next((found for item in value.values() if (found := _find_lazy(item)) is not None), None)
    if isinstance(value, list | tuple | set | frozenset):
        return next((found for item in value if (found := _find_lazy(item)) is not None), None)
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited; closing it keeps Python from warning about it later
        return f"an awaitable ({type(value).__name__}), which is not JSON-able: did the function forget `await`?"
    if isinstance(value, Iterator | AsyncIterator):
        return f"an iterator ({type(value).__name__}), which is not JSON-able: return a list"
    return None


def _is_finite(value: JsonValue) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_is_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_is_finite(item) for item in value)
    return True


def _describe_validation_error(name: str, error: pydantic.ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(arguments)'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )
    return f"invalid arguments for tool {name!r}: {problems}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionSpec:
    """A function tool as it travels to another process (the function goes by value, with cloudpickle)."""

    function: Callable[..., Any]
    name: str
    description: str
    policy: ToolPolicy

    @property
    def blocking(self) -> bool:
        """A sync function holds a thread while it runs."""
        return not inspect.iscoroutinefunction(self.function)

    @property
    def session(self) -> None:
        """A function needs no MCP session."""
        return None

    def build(self, toolset: object = None) -> FunctionTool:
        """The tool again."""
        del toolset
        return FunctionTool(self.function, name=self.name, description=self.description, policy=self.policy)


class FunctionTool(Tool):
    """A tool backed by a Python function; see `tool` for the decorator."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        policy: ToolPolicy | None = None,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        self.description = description or inspect.getdoc(function) or ""
        self.policy = policy or ToolPolicy()
        self.is_async = inspect.iscoroutinefunction(function)
        self._arguments_model = _create_arguments_model(function, self.name)
        self.input_schema = self._arguments_model.model_json_schema()
        self.input_schema.pop("title", None)
        self._parameters = tuple(self._arguments_model.model_fields)

    def remote(self) -> FunctionSpec:
        """The function travels by value; the worker rebuilds the tool around it."""
        return FunctionSpec(function=self.function, name=self.name, description=self.description, policy=self.policy)

    def bind(self, arguments: dict[str, JsonValue]) -> dict[str, Any]:
        """Validate the arguments against the type hints and return the function's keyword arguments.

        Raises:
            ToolArgumentsError: the arguments do not match the schema.
        """
        try:
            validated = self._arguments_model.model_validate(arguments)
        except pydantic.ValidationError as error:
            raise ToolArgumentsError(_describe_validation_error(self.name, error)) from None
        return {parameter: getattr(validated, parameter) for parameter in self._parameters}

    async def call(self, arguments: dict[str, JsonValue]) -> JsonValue:
        """Validate the arguments against the type hints, call the function, return its JSON-able result."""
        keywords = self.bind(arguments)
        if self.is_async:
            result = await self.function(**keywords)
        else:
            bound = functools.partial(self.function, **keywords)
            # A sync tool that overruns its deadline is abandoned: the node fails at once and the
            # thread's eventual result is dropped (a thread cannot be interrupted).
            result = await anyio.to_thread.run_sync(bound, abandon_on_cancel=True, limiter=_THREADS)
        return to_json_value(result, tool=self.name)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


def _create_arguments_model(function: Callable[..., Any], name: str) -> type[pydantic.BaseModel]:
    signature = inspect.signature(function)
    hints = _resolve_hints(function)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args and **kwargs cannot be described by a schema")
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {name!r}: positional-only parameters are not supported")
        if parameter.name not in hints:
            raise TypeError(f"tool {name!r}: parameter {parameter.name!r} needs a type hint")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{name}_arguments", __config__=config, **fields)
    return model


def _resolve_hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return inspect.get_annotations(function, eval_str=True)
    except NameError as error:
        raise TypeError(f"cannot resolve the type hints of {function.__qualname__}: {error}") from None


@overload
def tool(function: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    retries: int = 0,
    backoff_s: float = 0.2,
    max_concurrency: int | None = None,
    read_only: bool = False,
    idempotent: bool = False,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    retries: int = 0,
    backoff_s: float = 0.2,
    max_concurrency: int | None = None,
    read_only: bool = False,
    idempotent: bool = False,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a function into a tool; use bare (`@tool`) or with options (`@tool(retries=2)`).

    The argument schema comes from the type hints and the description from the docstring. Arguments are
    validated before the call; the result must be JSON-able (pydantic models and dataclasses are
    converted). Sync functions run in worker threads.

    Args:
        function: the function, when used bare.
        name: tool name; defaults to the function's name.
        description: defaults to the docstring.
        timeout_s: deadline of one attempt.
        retries: extra attempts after a failure; set it only for tools that are safe to call again.
        backoff_s: delay before the first retry, doubled on each further one.
        max_concurrency: at most this many concurrent calls of this tool.
        read_only: the function has no side effects, so its results may be cached and a repeated call
            with nothing changed in between may reuse the first output.
        idempotent: calling it twice with the same arguments has the effect of calling it once (implied
            by `read_only`).
    """
    policy = ToolPolicy(
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        max_concurrency=max_concurrency,
        read_only=read_only,
        idempotent=idempotent,
    )

    def decorate(target: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(target, name=name, description=description, policy=policy)

    if function is not None:
        return decorate(function)
    return decorate
