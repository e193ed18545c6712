"""The OpenAI chat-completions wire: request parameters out, replies and errors validated on the way in.

Servers that speak the OpenAI protocol (OpenAI, vLLM, Ollama, llama.cpp's `llama-server`) each add fields of
their own, so unknown fields are ignored here rather than forbidden; every field agentdag reads is typed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx2
import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)
from openai.types.chat.completion_create_params import ResponseFormat
from pydantic import BaseModel, ConfigDict, ValidationError

from agentdag.errors import ModelError
from agentdag.messages import FinishReason, Message, ModelSettings, ToolCall, ToolSpec

__all__ = [
    "WireChoice",
    "WireCompletion",
    "WireError",
    "WireUsage",
    "is_output_parse_failure",
    "map_finish_reason",
    "map_tool_names",
    "parse_completion",
    "response_format",
    "status_error",
    "to_message_param",
    "to_model_error",
    "to_tool_calls",
    "tool_params",
]

_PARSE_FAILURE = "The model produced output that does not match the expected"
_CONTEXT_MARKERS = ("exceed_context_size", "context_length_exceeded", "context length", "context size")
_WIRE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NOT_WIRE_CHARACTER = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME_LENGTH = 64


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireTokenLogprob(_WireModel):
    """One sampled token's log-probability."""

    logprob: float


class WireLogprobs(_WireModel):
    """The per-token log-probabilities of one choice."""

    content: list[WireTokenLogprob] | None = None


class WireFunctionCall(_WireModel):
    """The function and arguments of one tool call; a few servers send the arguments as an object."""

    name: str
    arguments: str | dict[str, Any] | None = None


class WireToolCall(_WireModel):
    """One tool call of an assistant message."""

    id: str | None = None
    function: WireFunctionCall


class WireMessage(_WireModel):
    """The assistant message of one choice."""

    content: str | None = None
    tool_calls: list[WireToolCall] | None = None


class WireChoice(_WireModel):
    """One sampled reply."""

    index: int = 0
    message: WireMessage
    finish_reason: str | None = None
    logprobs: WireLogprobs | None = None


class WireUsage(_WireModel):
    """Token counts as the server reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class WireCompletion(_WireModel):
    """A whole non-streamed chat completion."""

    model: str | None = None
    choices: list[WireChoice]
    usage: WireUsage | None = None


class WireError(ValueError):
    """The body is not JSON or not a chat completion; `detail` says what is wrong."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def parse_completion(body: str) -> WireCompletion:
    """Parse a chat-completion body.

    Raises:
        WireError: the body is not JSON, or not shaped like a chat completion.
    """
    try:
        data: Any = json.loads(body)
    except ValueError as error:
        raise WireError(f"the reply is not JSON ({error}); body starts with {body[:120]!r}") from error
    try:
        return WireCompletion.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()[:3]
        )
        raise WireError(f"the reply is not a chat completion ({problems})") from error


def is_output_parse_failure(error: BaseException) -> bool:
    """Whether llama.cpp's server gave up on its own parse of the model's output (its jinja chat parser).

    The server then ends the stream with an error although the text streamed so far is the model's own
    (llama.cpp issues #20708, #27733): the reply is cut off, not lost.
    """
    return isinstance(error, openai.APIError) and _PARSE_FAILURE in str(error)


def map_finish_reason(reason: str | None) -> FinishReason:
    """Map an OpenAI finish reason to agentdag's: cut at max_tokens is "length", a filtered reply "error".

    Every other reason, "tool_calls" included, is "stop": the reply is complete.
    """
    if reason == "length":
        return "length"
    if reason == "content_filter":
        return "error"
    return "stop"


def status_error(error: openai.APIStatusError, *, source: str, model: str) -> ModelError:
    """Turn an HTTP error status into one `ModelError` that says what to do; 429, 5xx etc. are retryable."""
    status = error.status_code
    body = error.body if isinstance(error.body, dict) else {}
    detail = str(body.get("message") or error.message)
    kind = f"{body.get('type', '')} {body.get('code', '')} {detail}".lower()
    if status in (400, 413) and any(marker in kind for marker in _CONTEXT_MARKERS):
        sizes = ""
        if "n_prompt_tokens" in body and "n_ctx" in body:
            sizes = f" ({body['n_prompt_tokens']} prompt tokens, context {body['n_ctx']})"
        return ModelError(
            f"the prompt does not fit the model's context window{sizes}: shorten the input, lower max_tokens, "
            f"or give the server a larger context (embedded: model.ctx_per_slot). Server said: {detail}",
            source=source,
        )
    if status in (401, 403):
        return ModelError(
            f"refused the API key (HTTP {status}: {detail}); set model.api_key, AGENTDAG_API_KEY or OPENAI_API_KEY",
            source=source,
        )
    if status == 404:
        return ModelError(
            f"has no such route or model (HTTP 404: {detail}); check that base_url is the API root (usually "
            f"ending in /v1) and that it serves model {model!r}",
            source=source,
        )
    if status == 429:
        return ModelError(f"is rate limiting requests (HTTP 429: {detail})", source=source, retryable=True)
    if status >= 500 or status in (408, 409):
        return ModelError(f"failed with HTTP {status}: {detail}", source=source, retryable=True)
    return ModelError(f"rejected the request (HTTP {status}): {detail}", source=source)


def to_message_param(message: Message) -> ChatCompletionMessageParam:
    """One agentdag message as the SDK's typed message parameter."""
    if message.role == "system":
        return ChatCompletionSystemMessageParam(role="system", content=message.content)
    if message.role == "assistant":
        return ChatCompletionAssistantMessageParam(role="assistant", content=message.content)
    return ChatCompletionUserMessageParam(role="user", content=message.content)


def response_format(settings: ModelSettings) -> ResponseFormat | None:
    """The `response_format` that constrains output to `settings.json_schema`, if any."""
    if settings.json_schema is None:
        return None
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": settings.json_schema, "strict": True},
    }


def map_tool_names(names: Sequence[str]) -> dict[str, str]:
    """Map each tool name to a unique name the OpenAI API accepts (`^[a-zA-Z0-9_-]{1,64}$`).

    Names that are already acceptable stay as they are. In the others every other character becomes "_" (so
    `area_circle.calculate` is sent as `area_circle_calculate`), the name is cut to 64 characters, and a name
    that is taken gets a numeric suffix (`_2`, `_3`, ...). The mapping depends only on `names`, so the
    reply's names can be mapped back with the same call.

    Raises:
        ValueError: two tools have the same name.
    """
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"tool names must be unique, but {', '.join(map(repr, duplicates))} appear more than once")
    mapping = {name: name for name in names if _WIRE_NAME.fullmatch(name)}
    taken = set(mapping.values())
    for name in names:
        if name in mapping:
            continue
        base = _NOT_WIRE_CHARACTER.sub("_", name)[:_MAX_NAME_LENGTH] or "function"
        wire, number = base, 1
        while wire in taken:
            number += 1
            suffix = f"_{number}"
            wire = base[: _MAX_NAME_LENGTH - len(suffix)] + suffix
        mapping[name] = wire
        taken.add(wire)
    return mapping


def tool_params(tools: Sequence[ToolSpec]) -> list[ChatCompletionFunctionToolParam] | None:
    """The `tools` parameter that offers `tools` under their wire names (see `map_tool_names`); None for none."""
    if not tools:
        return None
    names = map_tool_names([spec.name for spec in tools])
    return [
        {
            "type": "function",
            "function": {"name": names[spec.name], "description": spec.description, "parameters": spec.parameters},
        }
        for spec in tools
    ]


def to_tool_calls(message: WireMessage, tools: Sequence[ToolSpec]) -> tuple[ToolCall, ...]:
    """The tool calls of one reply, named as in `tools`; a name the server made up stays as it sent it.

    The arguments stay the text the server sent (an object sent as such becomes its JSON text), so that a
    malformed call can still be seen and scored.
    """
    if not message.tool_calls:
        return ()
    original = {wire: name for name, wire in map_tool_names([spec.name for spec in tools]).items()}
    calls: list[ToolCall] = []
    for call in message.tool_calls:
        arguments = call.function.arguments
        if not isinstance(arguments, str):
            arguments = "" if arguments is None else json.dumps(arguments)
        name = original.get(call.function.name, call.function.name)
        calls.append(ToolCall(name=name, arguments=arguments, id=call.id))
    return tuple(calls)


def to_model_error(error: BaseException, *, server: str, model: str, timeout_s: float) -> ModelError:
    """Any failure of a call to the server as one `ModelError` that says what to do.

    Timeouts, connection errors, HTTP 429 and 5xx are retryable.
    """
    if isinstance(error, ModelError):
        return error
    if isinstance(error, TimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
        return ModelError(
            f"no reply within {timeout_s:g}s; the server may be overloaded or the model too slow: "
            f"raise model.timeout_s or lower max_tokens",
            source=server,
            retryable=True,
        )
    if isinstance(error, openai.APIConnectionError | httpx2.TransportError):
        cause = error.__cause__ or error
        return ModelError(
            f"cannot connect ({type(cause).__name__}: {cause}); is the server running? check model.base_url",
            source=server,
            retryable=True,
        )
    if isinstance(error, openai.APIStatusError) and is_output_parse_failure(error):
        # A retry at the same settings would most likely fail the same way: the server's parser, not the load.
        return ModelError(f"could not parse the model's own output: {error.message}", source=server)
    if isinstance(error, openai.APIStatusError):
        return status_error(error, source=server, model=model)
    if isinstance(error, openai.APIError | ValueError):
        return ModelError(f"returned a malformed reply ({error})", source=server)
    return ModelError(f"failed unexpectedly ({type(error).__name__}: {error})", source=server)
