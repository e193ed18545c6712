"""Chat messages, model requests and replies: the data the model protocol exchanges."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Completion",
    "FinishReason",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "Role",
    "ToolCall",
    "ToolChoice",
    "ToolSpec",
    "Usage",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str


ToolChoice = Literal["auto", "required", "none"]
"""Whether the model may call tools ("auto"), must call one ("required"), or may not ("none")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """One function offered to the model for native tool calling (the OpenAI `tools` API).

    Attributes:
        name: the function's name; names the server would refuse (e.g. with dots) are mapped on the wire.
        description: what the function does, for the model to choose by.
        parameters: the function's arguments as a JSON schema object.
    """

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One function call the model asked for.

    Attributes:
        name: the function's name as offered in `ToolSpec.name` (or as the model wrote it, when it is unknown).
        arguments: the arguments as the raw JSON text the server sent; model output may be malformed.
        id: the server's id of the call, if it gave one.
    """

    name: str
    arguments: str
    id: str | None = None

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a JSON object.

        Raises:
            ValueError: the arguments are not JSON, or not a JSON object.
        """
        try:
            value = json.loads(self.arguments)
        except ValueError as error:
            raise ValueError(
                f"the arguments of the call to {self.name!r} are not JSON ({error}): {self.arguments[:120]!r}"
            ) from None
        if not isinstance(value, dict):
            raise ValueError(
                f"the arguments of the call to {self.name!r} are a JSON {type(value).__name__}, not an object: "
                f"{self.arguments[:120]!r}"
            )
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """Sampling settings for one model request; `None` leaves the server's default.

    Attributes:
        n: number of samples to draw for the same prompt.
        json_schema: constrain the output to this JSON schema.
        logprobs: return the log-probability of every sampled token.
        tools: functions the model may call natively; its calls come back in `Completion.tool_calls`.
        tool_choice: whether the model may ("auto"), must ("required") or must not ("none") call a tool.
        parallel_tool_calls: whether the model may call several tools in one reply.
    """

    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    logprobs: bool = False
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def __post_init__(self) -> None:
        duplicates = sorted(name for name, count in Counter(spec.name for spec in self.tools).items() if count > 1)
        if duplicates:
            raise ValueError(f"tool names must be unique, but {', '.join(map(repr, duplicates))} appear more than once")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRequest:
    """Chat messages in, with the settings to sample them."""

    messages: tuple[Message, ...]
    settings: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token usage and latency of one or more model calls."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls - other.calls,
            prompt_tokens=self.prompt_tokens - other.prompt_tokens,
            completion_tokens=self.completion_tokens - other.completion_tokens,
            latency_s=self.latency_s - other.latency_s,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            latency_s=self.latency_s + other.latency_s,
        )


FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """One sampled reply.

    Attributes:
        finish_reason: "length" means the reply was cut at `max_tokens` and may be truncated; "error" that the
            server ended it (a filtered reply, or one whose output the server failed to parse midway).
        logprobs: per-token log-probabilities, when the request asked for them.
        tool_calls: the function calls the model asked for, when the request offered `settings.tools`.
    """

    text: str
    finish_reason: FinishReason = "stop"
    logprobs: tuple[float, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponse:
    """The reply to one request: `settings.n` completions and the usage of producing them."""

    completions: tuple[Completion, ...]
    usage: Usage
    model: str

    @property
    def text(self) -> str:
        """The first completion's text."""
        return self.completions[0].text
