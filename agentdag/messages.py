"""Chat messages, model requests and replies: the data the model protocol exchanges."""

from __future__ import annotations

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
    "Usage",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """Sampling settings for one model request; `None` leaves the server's default.

    Attributes:
        n: number of samples to draw for the same prompt.
        json_schema: constrain the output to this JSON schema.
        logprobs: return the log-probability of every sampled token.
    """

    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    logprobs: bool = False


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
        finish_reason: "length" means the reply was cut at `max_tokens` and may be truncated.
        logprobs: per-token log-probabilities, when the request asked for them.
    """

    text: str
    finish_reason: FinishReason = "stop"
    logprobs: tuple[float, ...] | None = None


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
