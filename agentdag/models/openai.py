"""`OpenAIModel`: a client for any server that speaks the OpenAI chat-completions protocol.

vLLM, Ollama, llama.cpp's `llama-server`, the embedded server and hosted APIs all speak it. Where a server
lacks a capability the client emulates it (fewer than `n` choices: the rest are drawn as concurrent
requests) or says so with a `ModelError` (no logprobs, output that ignores the JSON schema); it never drops a
setting silently. Every failure becomes one `ModelError` naming the server and what to do about it.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx2
import jsonschema
import openai
from openai.types.chat import (
    ChatCompletionChunk,
)

from agentdag.errors import ModelError
from agentdag.fanout import fan_out
from agentdag.messages import Completion, ModelRequest, ModelResponse, Usage
from agentdag.models._wire import (
    WireCompletion,
    WireError,
    is_output_parse_failure,
    map_finish_reason,
    parse_completion,
    response_format,
    to_message_param,
    to_model_error,
    to_tool_calls,
    tool_params,
)
from agentdag.models.base import Model
from agentdag.tokens import estimate_completion_tokens, estimate_prompt_tokens, estimate_tokens

__all__ = ["OpenAIModel"]

_MAX_BACKOFF_S = 8.0
_MAX_RETRY_AFTER_S = 30.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Draw:
    """The completions and token counts of one HTTP request."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    completion_tokens: int


class OpenAIModel(Model):
    """A model served over the OpenAI chat-completions protocol.

    Args:
        base_url: the API root, usually ending in `/v1` (e.g. `http://127.0.0.1:8000/v1`).
        model: the model name the server knows.
        api_key: sent as a bearer token; local servers usually need none.
        timeout_s: the deadline of one HTTP attempt (for streams: of the wait for each chunk).
        max_retries: how often a transient failure (connect error, timeout, 429, 5xx) is retried.
        retry_backoff_s: the first retry's delay; each further retry doubles it (capped, with jitter).
        extra_body: extra JSON fields for every request, for server-specific options (e.g. `ignore_eos`).
        transport: the HTTP transport, e.g. an `httpx2.MockTransport` in tests.
        server: how errors name this server; defaults to "openai-compatible server at <base_url>".
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
        extra_body: Mapping[str, object] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        server: str | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.server = server or f"openai-compatible server at {self.base_url}"
        self._extra_body = dict(extra_body) if extra_body else None
        timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        # agentdag retries itself (so it can name every failure), hence max_retries=0 in the SDK.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport, timeout=timeout),
        )
        self._native_n = True

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def list_served_models(self) -> list[str]:
        """The names of the models the server serves (`GET /models`).

        Raises:
            ModelError: the server cannot be reached or does not list models.
        """
        try:
            with anyio.fail_after(self.timeout_s):
                page = await self._client.models.list()
        except Exception as error:
            raise self._to_model_error(error) from error
        return [entry.id for entry in page.data]

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Draw `settings.n` completions; see the class docstring for how missing capabilities are handled.

        Raises:
            ModelError: the server failed, timed out, overflowed its context or returned a malformed reply.
        """
        settings = request.settings
        if settings.n < 1:
            raise ModelError(f"settings.n must be at least 1, got {settings.n}", source=self.server)
        started = time.perf_counter()
        n = settings.n if self._native_n else 1
        first = await self._retrying(lambda: self._draw(request, n=n, seed=settings.seed), name_attempts=True)
        draws = [first]
        missing = settings.n - len(first.completions)
        if missing > 0:
            if settings.n > 1 and self._native_n:
                self._native_n = False  # the server ignores `n`; ask for one sample per request from now on
            draws += await self._draw_concurrently(request, missing, first_index=len(first.completions))
        completions = tuple(completion for draw in draws for completion in draw.completions)[: settings.n]
        usage = Usage(
            calls=len(draws),
            prompt_tokens=sum(draw.prompt_tokens for draw in draws),
            completion_tokens=sum(draw.completion_tokens for draw in draws),
            latency_s=time.perf_counter() - started,
        )
        return ModelResponse(completions=completions, usage=usage, model=self.name)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Yield the reply's text as the server generates it, then the whole `ModelResponse`.

        One sample, no logprobs. A JSON schema constrains the stream too; the final text is checked against it.
        With `settings.tools` nothing is streamed: one `request()`, its text as one chunk, then its tool calls.
        When llama.cpp's server fails its own parse of the output midway, the text so far ends the stream
        with finish reason "error".

        Raises:
            ModelError: as for `request`, or when `n > 1` or `logprobs` were asked of a stream.
        """
        settings = request.settings
        if settings.n != 1:
            raise ModelError(f"a stream draws one sample, but settings.n is {settings.n}", source=self.server)
        if settings.logprobs:
            raise ModelError("logprobs are not available when streaming; use request()", source=self.server)
        if settings.tools:  # tool calls arrive in fragments: draw the whole reply, as every model may
            async for item in super().stream(request):
                yield item
            return
        started = time.perf_counter()
        chunks = await self._open_stream(request)
        parts: list[str] = []
        finish_reason: str | None = None
        usage: tuple[int, int] | None = None
        server_ended = False
        async with chunks:
            iterator = chunks.__aiter__()
            while True:
                try:
                    with anyio.fail_after(self.timeout_s):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    if not (parts and is_output_parse_failure(error)):
                        raise self._broken_stream_error(error, received="".join(parts)) from error
                    server_ended = True  # the caller reads the text so far as a cut-off reply
                    break
                if chunk.usage is not None:
                    usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices or ():
                    finish_reason = choice.finish_reason or finish_reason
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        parts.append(text)
                        yield text
        completion = Completion(
            text="".join(parts), finish_reason="error" if server_ended else map_finish_reason(finish_reason)
        )
        # A stream that ended without a finish reason may have been cut off: the caller's parser judges it.
        if settings.json_schema is not None and finish_reason is not None and completion.finish_reason == "stop":
            self._check_schema(completion.text, settings.json_schema)
        if usage is None:  # the server ignored include_usage: estimate, so budgets still count
            usage = (estimate_prompt_tokens(request.messages), estimate_tokens(completion.text))
        stream_usage = Usage(
            calls=1,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            latency_s=time.perf_counter() - started,
        )
        yield ModelResponse(completions=(completion,), usage=stream_usage, model=self.name)

    async def _open_stream(self, request: ModelRequest) -> openai.AsyncStream[ChatCompletionChunk]:
        async def open_once() -> openai.AsyncStream[ChatCompletionChunk]:
            chunks: openai.AsyncStream[ChatCompletionChunk] = await self._client.chat.completions.create(
                **self._common_arguments(request, n=1, seed=request.settings.seed),
                stream=True,
                stream_options={"include_usage": True},
            )
            return chunks

        # Only the opening is retried: once the stream is open, a failure breaks it off (see `stream`), as
        # text may already have reached the caller. A stream's final error names no attempt count.
        return await self._retrying(open_once, name_attempts=False)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], *, name_attempts: bool) -> T:
        """Await `attempt()` under the per-attempt deadline, again while it fails retryably.

        At most `max_retries` retries, each after `_backoff_s` (the server's Retry-After, else the doubling,
        capped, jittered backoff). Every failure becomes a `ModelError`; with `name_attempts`, one that came
        after retries says how many attempts were made (and stays retryable: a later call may succeed).
        """
        retries = 0
        while True:
            try:
                with anyio.fail_after(self.timeout_s):
                    return await attempt()
            except Exception as error:
                model_error = self._to_model_error(error)
                cause = error.__cause__ if model_error is error else error
                if not model_error.retryable or retries >= self.max_retries:
                    if retries and name_attempts:
                        reason = str(model_error).removeprefix(f"{self.server}: ")
                        model_error = ModelError(
                            f"{reason} (gave up after {retries + 1} attempts)", source=self.server, retryable=True
                        )
                    if model_error is error:
                        raise
                    raise model_error from cause
                await anyio.sleep(self._backoff_s(retries, cause))
            retries += 1

    async def _draw(self, request: ModelRequest, *, n: int, seed: int | None) -> _Draw:
        raw = await self._client.chat.completions.with_raw_response.create(
            **self._common_arguments(request, n=n, seed=seed)
        )
        try:
            wire = parse_completion(raw.http_response.text)
        except WireError as error:
            raise ModelError(
                f"returned a malformed reply: {error.detail}; is base_url an OpenAI-compatible API root "
                f"(usually ending in /v1)?",
                source=self.server,
            ) from error
        return self._to_draw(request, wire)

    def _to_draw(self, request: ModelRequest, wire: WireCompletion) -> _Draw:
        settings = request.settings
        if not wire.choices:
            raise ModelError("returned no choices; the server may be overloaded or misconfigured", source=self.server)
        completions: list[Completion] = []
        for choice in sorted(wire.choices, key=lambda item: item.index):
            logprobs: tuple[float, ...] | None = None
            if settings.logprobs:
                if choice.logprobs is None or choice.logprobs.content is None:
                    raise ModelError(
                        "returned no logprobs although they were requested; this server does not support "
                        "them: use llama.cpp, vLLM or OpenAI, or set logprobs to false",
                        source=self.server,
                    )
                logprobs = tuple(token.logprob for token in choice.logprobs.content)
            completion = Completion(
                text=choice.message.content or "",
                finish_reason=map_finish_reason(choice.finish_reason),
                logprobs=logprobs,
                tool_calls=to_tool_calls(choice.message, settings.tools),
            )
            if settings.json_schema is not None and completion.finish_reason == "stop" and not completion.tool_calls:
                self._check_schema(completion.text, settings.json_schema)
            completions.append(completion)
        usage = wire.usage
        return _Draw(
            completions=tuple(completions),
            # Servers that omit usage get an estimate rather than a zero, so budgets still count.
            prompt_tokens=usage.prompt_tokens
            if usage
            else estimate_prompt_tokens(request.messages, tools=settings.tools),
            completion_tokens=usage.completion_tokens if usage else estimate_completion_tokens(completions),
        )

    def _check_schema(self, text: str, schema: dict[str, Any]) -> None:
        try:
            jsonschema.validate(json.loads(text), schema)
        except (ValueError, jsonschema.ValidationError) as error:
            summary = error.message if isinstance(error, jsonschema.ValidationError) else str(error)
            raise ModelError(
                f"reply does not match the requested JSON schema ({summary}); the server may not support "
                f"response_format json_schema. Reply starts with {text[:80]!r}",
                source=self.server,
                retryable=True,
            ) from error

    async def _draw_concurrently(self, request: ModelRequest, count: int, *, first_index: int) -> list[_Draw]:
        async def draw(seed: int | None) -> _Draw:
            return await self._retrying(lambda: self._draw(request, n=1, seed=seed), name_attempts=True)

        # Distinct seeds, or a seeded request would return `count` copies of the same sample.
        base = request.settings.seed
        seeds = [None if base is None else base + first_index + index for index in range(count)]
        drawn = await fan_out(
            [functools.partial(draw, seed) for seed in seeds], catch=(ModelError,), stop_on_error=True
        )
        if drawn.errors:
            raise drawn.errors[0]
        return drawn.done

    def _common_arguments(self, request: ModelRequest, *, n: int, seed: int | None) -> dict[str, Any]:
        settings = request.settings
        arguments: dict[str, Any] = {
            "model": self.name,
            "messages": [to_message_param(message) for message in request.messages],
        }
        if n != 1:
            arguments["n"] = n
        optional: dict[str, object | None] = {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": seed,
            "max_tokens": settings.max_tokens,
            "stop": list(settings.stop) or None,
            "logprobs": True if settings.logprobs else None,
            "response_format": response_format(settings),
            "tools": tool_params(settings.tools),
            "tool_choice": settings.tool_choice,
            "parallel_tool_calls": settings.parallel_tool_calls,
            "extra_body": self._extra_body,
        }
        arguments.update({key: value for key, value in optional.items() if value is not None})
        return arguments

    def _backoff_s(self, attempt: int, error: BaseException | None) -> float:
        if isinstance(error, openai.APIStatusError):
            retry_after: str | None = error.response.headers.get("retry-after")
            if retry_after:
                try:
                    return min(float(retry_after), _MAX_RETRY_AFTER_S)
                except ValueError:  # an HTTP date; fall back to our own backoff
                    pass
        return self._jittered(attempt)

    def _jittered(self, attempt: int) -> float:
        delay = min(self.retry_backoff_s * 2.0**attempt, _MAX_BACKOFF_S)
        return delay * random.uniform(0.5, 1.0)  # jitter, not cryptography

    def _broken_stream_error(self, error: BaseException, *, received: str) -> ModelError:
        """The error of a failed stream; once text has arrived, it says that the stream broke off."""
        if not received or isinstance(error, ModelError):
            return self._to_model_error(error)
        if isinstance(error, TimeoutError):
            why = f"no chunk within {self.timeout_s:g}s"
        else:
            cause = error.__cause__ or error
            why = f"{type(cause).__name__}: {cause}"
        return ModelError(
            f"the stream broke off after {len(received)} characters ({why}); "
            f"the server stopped or dropped the connection",
            source=self.server,
            retryable=True,
        )

    def _to_model_error(self, error: BaseException) -> ModelError:
        return to_model_error(error, server=self.server, model=self.name, timeout_s=self.timeout_s)
