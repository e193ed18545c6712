"""OpenAIModel against `httpx2.MockTransport`: the request it sends, the reply it maps, every error path."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx2
import openai
import pytest

from agentdag.errors import ModelError
from agentdag.messages import Message, ModelRequest, ModelResponse, ModelSettings
from agentdag.models import OpenAIModel

pytestmark = pytest.mark.anyio

BASE_URL = "http://llm.test/v1"
Handler = Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]


def completion_body(
    *texts: str,
    finish_reason: str = "stop",
    usage: dict[str, int] | None = None,
    logprobs: list[list[float]] | None = None,
) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason,
        }
        if logprobs is not None:
            choice["logprobs"] = {"content": [{"token": "t", "logprob": value} for value in logprobs[index]]}
        choices.append(choice)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": choices,
        "usage": usage if usage is not None else {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


class Recorder:
    """Counts the requests a handler saw and keeps their JSON bodies."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        reply = self.handler(request)
        if isinstance(reply, httpx2.Response):
            return reply
        return await reply


@asynccontextmanager
async def mock_model(handler: Handler, **options: Any) -> AsyncIterator[tuple[OpenAIModel, Recorder]]:
    recorder = Recorder(handler)
    settings: dict[str, Any] = {"max_retries": 2, "retry_backoff_s": 0.0, "timeout_s": 5.0} | options
    model = OpenAIModel(base_url=BASE_URL, model="test-model", transport=httpx2.MockTransport(recorder), **settings)
    try:
        yield model, recorder
    finally:
        await model.aclose()


def ask(text: str = "hello", **settings: Any) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), settings=ModelSettings(**settings))


async def test_maps_a_reply_and_records_usage() -> None:
    async with mock_model(lambda _: httpx2.Response(200, json=completion_body("hi there"))) as (model, _):
        response = await model.request(ask())
    assert response.text == "hi there"
    assert response.completions[0].finish_reason == "stop"
    assert response.model == "test-model"
    assert (response.usage.calls, response.usage.prompt_tokens, response.usage.completion_tokens) == (1, 7, 3)
    assert response.usage.latency_s > 0


async def test_sends_sampling_settings_in_the_request_body() -> None:
    async with mock_model(lambda _: httpx2.Response(200, json=completion_body("x"))) as (model, recorder):
        await model.request(
            ModelRequest(
                messages=(Message("system", "be brief"), Message("user", "hi"), Message("assistant", "hey")),
                settings=ModelSettings(temperature=0.3, top_p=0.9, seed=11, max_tokens=42, stop=("END",)),
            )
        )
    body = recorder.bodies[0]
    assert body["model"] == "test-model"
    assert [message["role"] for message in body["messages"]] == ["system", "user", "assistant"]
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (0.3, 0.9, 11, 42)
    assert body["stop"] == ["END"]
    assert not {"n", "logprobs", "response_format"} & body.keys()


async def test_passes_the_json_schema_through_and_checks_the_reply() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    async with mock_model(lambda _: httpx2.Response(200, json=completion_body('{"age": 3}'))) as (model, rec):
        response = await model.request(ask(json_schema=schema))
    assert json.loads(response.text) == {"age": 3}
    assert rec.bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


async def test_a_reply_that_ignores_the_schema_is_an_error() -> None:
    schema = {"type": "object", "required": ["age"]}
    async with mock_model(lambda _: httpx2.Response(200, json=completion_body("sure! here"))) as (model, rec):
        with pytest.raises(ModelError, match="does not match the requested JSON schema") as caught:
            await model.request(ask(json_schema=schema))
    assert caught.value.retryable
    assert len(rec.bodies) == 3  # retried, since a sample may conform by chance


async def test_truncated_reply_is_marked_length_and_not_schema_checked() -> None:
    reply = completion_body('{"age": ', finish_reason="length")
    async with mock_model(lambda _: httpx2.Response(200, json=reply)) as (model, _):
        response = await model.request(ask(max_tokens=3, json_schema={"type": "object"}))
    assert response.completions[0].finish_reason == "length"


async def test_native_n_choices() -> None:
    reply = completion_body("a", "b", "c")
    async with mock_model(lambda _: httpx2.Response(200, json=reply)) as (model, recorder):
        response = await model.request(ask(n=3))
    assert [completion.text for completion in response.completions] == ["a", "b", "c"]
    assert recorder.bodies[0]["n"] == 3
    assert len(recorder.bodies) == 1


async def test_missing_choices_are_drawn_as_concurrent_requests_with_distinct_seeds() -> None:
    counter = iter(range(100))

    def one_choice(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=completion_body(f"sample {next(counter)}"))

    async with mock_model(one_choice) as (model, recorder):
        response = await model.request(ask(n=3, seed=7))
        assert len(response.completions) == 3
        assert len({completion.text for completion in response.completions}) == 3
        assert response.usage.calls == 3
        assert response.usage.completion_tokens == 9
        assert recorder.bodies[0]["n"] == 3
        assert sorted(body["seed"] for body in recorder.bodies[1:]) == [8, 9]
        assert all("n" not in body for body in recorder.bodies[1:])
        # The server ignored n once; later requests draw one sample per request right away.
        await model.request(ask(n=2))
        assert all("n" not in body for body in recorder.bodies[3:])
        assert len(recorder.bodies) == 5


async def test_a_failed_concurrent_draw_fails_the_request_with_its_error() -> None:
    def one_choice(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("seed") == 9:
            return httpx2.Response(422, json={"error": {"message": "bad seed"}})
        return httpx2.Response(200, json=completion_body("sample"))

    async with mock_model(one_choice) as (model, recorder):
        with pytest.raises(ModelError, match=r"rejected the request \(HTTP 422\): bad seed") as caught:
            await model.request(ask(n=3, seed=7))
    assert not caught.value.retryable
    assert [body.get("seed") for body in recorder.bodies].count(9) == 1  # a client error is not retried


async def test_empty_choices_is_an_error() -> None:
    async with mock_model(lambda _: httpx2.Response(200, json=completion_body())) as (model, _):
        with pytest.raises(ModelError, match="returned no choices"):
            await model.request(ask())


async def test_logprobs_are_mapped_per_token() -> None:
    reply = completion_body("ab", "cd", logprobs=[[-0.5, -1.25], [-0.1, -0.2]])
    async with mock_model(lambda _: httpx2.Response(200, json=reply)) as (model, recorder):
        response = await model.request(ask(n=2, logprobs=True))
    assert recorder.bodies[0]["logprobs"] is True
    assert [completion.logprobs for completion in response.completions] == [(-0.5, -1.25), (-0.1, -0.2)]


async def test_missing_logprobs_is_an_error() -> None:
    async with mock_model(lambda _: httpx2.Response(200, json=completion_body("ab"))) as (model, _):
        with pytest.raises(ModelError, match="returned no logprobs") as caught:
            await model.request(ask(logprobs=True))
    assert not caught.value.retryable


async def test_a_server_error_then_success_is_retried() -> None:
    replies = iter([httpx2.Response(500, json={"error": {"message": "boom"}})])

    def flaky(_: httpx2.Request) -> httpx2.Response:
        return next(replies, None) or httpx2.Response(200, json=completion_body("recovered"))

    async with mock_model(flaky) as (model, recorder):
        response = await model.request(ask())
    assert response.text == "recovered"
    assert len(recorder.bodies) == 2


async def test_rate_limiting_is_retried_then_reported() -> None:
    def limited(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "0"})

    async with mock_model(limited, max_retries=1) as (model, recorder):
        with pytest.raises(ModelError, match="rate limiting") as caught:
            await model.request(ask())
    assert caught.value.retryable
    assert "gave up after 2 attempts" in str(caught.value)
    assert len(recorder.bodies) == 2


async def test_context_overflow_is_one_clear_error_without_retry() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "request (5031 tokens) exceeds the available context size (4096 tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 5031,
            "n_ctx": 4096,
        }
    }
    async with mock_model(lambda _: httpx2.Response(400, json=body)) as (model, recorder):
        with pytest.raises(ModelError, match="does not fit the model's context window") as caught:
            await model.request(ask())
    assert "5031 prompt tokens, context 4096" in str(caught.value)
    assert str(caught.value).startswith(f"openai-compatible server at {BASE_URL}: ")
    assert not caught.value.retryable
    assert len(recorder.bodies) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, "AGENTDAG_API_KEY"), (404, "ending in /v1"), (422, r"rejected the request \(HTTP 422\)")],
)
async def test_client_errors_say_what_to_do(status: int, expected: str) -> None:
    reply = httpx2.Response(status, json={"error": {"message": "nope"}})
    async with mock_model(lambda _: reply) as (model, recorder):
        with pytest.raises(ModelError, match=expected) as caught:
            await model.request(ask())
    assert not caught.value.retryable
    assert len(recorder.bodies) == 1


async def test_malformed_body_is_an_error() -> None:
    reply = httpx2.Response(200, text="<html>not json", headers={"content-type": "application/json"})
    async with mock_model(lambda _: reply) as (model, _):
        with pytest.raises(ModelError, match="malformed reply: the reply is not JSON") as caught:
            await model.request(ask())
    assert not caught.value.retryable


async def test_a_body_that_is_not_a_completion_is_an_error() -> None:
    async with mock_model(lambda _: httpx2.Response(200, json={"status": "ok"})) as (model, _):
        with pytest.raises(ModelError, match="not a chat completion"):
            await model.request(ask())


async def test_transport_connect_error_is_retryable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    async with mock_model(refuse, max_retries=0) as (model, _):
        with pytest.raises(ModelError, match="cannot connect") as caught:
            await model.request(ask())
    assert caught.value.retryable
    assert caught.value.source == f"openai-compatible server at {BASE_URL}"


async def test_unreachable_server_on_a_closed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAIModel(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, retry_backoff_s=0.0)
    try:
        with pytest.raises(ModelError, match=r"cannot connect .*is the server running\?") as caught:
            await model.request(ask())
    finally:
        await model.aclose()
    assert caught.value.retryable
    assert "gave up after 2 attempts" in str(caught.value)


async def test_read_timeout_is_retryable() -> None:
    def time_out(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    async with mock_model(time_out, max_retries=0) as (model, _):
        with pytest.raises(ModelError, match="no reply within") as caught:
            await model.request(ask())
    assert caught.value.retryable


async def test_a_hanging_server_hits_the_deadline() -> None:
    async def hang(_: httpx2.Request) -> httpx2.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with mock_model(hang, max_retries=0, timeout_s=0.2) as (model, _):
        with anyio.fail_after(5):
            with pytest.raises(ModelError, match=r"no reply within 0.2s"):
                await model.request(ask())


def sse(*events: dict[str, Any]) -> httpx2.Response:
    text = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})


def chunk(
    content: str | None = None, *, finish_reason: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    delta = {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}
    choices = [] if content is None else [delta]
    event: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    return event | {"choices": choices, "usage": usage}


async def test_streams_chunks_then_the_whole_response() -> None:
    reply = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk("!", finish_reason="length"),
        chunk(usage={"prompt_tokens": 5, "completion_tokens": 3}),
    )
    async with mock_model(lambda _: reply) as (model, recorder):
        parts = [part async for part in model.stream(ask(max_tokens=3))]
    assert parts[:-1] == ["Hel", "lo", "!"]
    final = parts[-1]
    assert isinstance(final, ModelResponse)
    assert final.text == "Hello!"
    assert final.completions[0].finish_reason == "length"
    assert (final.usage.calls, final.usage.prompt_tokens, final.usage.completion_tokens) == (1, 5, 3)
    assert recorder.bodies[0]["stream"] is True
    assert recorder.bodies[0]["stream_options"] == {"include_usage": True}


async def test_a_stream_without_usage_gets_an_estimate() -> None:
    async with mock_model(lambda _: sse(chunk("twelve chars"))) as (model, _):
        parts = [part async for part in model.stream(ask())]
    final = parts[-1]
    assert isinstance(final, ModelResponse)
    assert final.usage.completion_tokens == 3


async def test_stream_retries_before_the_first_chunk() -> None:
    replies = iter([httpx2.Response(503, json={"error": {"message": "loading"}})])

    def flaky(_: httpx2.Request) -> httpx2.Response:
        return next(replies, None) or sse(chunk("ok"))

    async with mock_model(flaky) as (model, recorder):
        parts = [part async for part in model.stream(ask())]
    assert parts[0] == "ok"
    assert len(recorder.bodies) == 2


async def test_stream_retries_its_opening_at_most_max_retries_times() -> None:
    def unavailable(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(503, json={"error": {"message": "loading"}})

    async with mock_model(unavailable, max_retries=1) as (model, recorder):
        with pytest.raises(ModelError, match="HTTP 503: loading") as caught:
            _ = [part async for part in model.stream(ask())]
    assert caught.value.retryable
    assert len(recorder.bodies) == 2


async def test_stream_does_not_retry_a_client_error() -> None:
    async with mock_model(lambda _: httpx2.Response(400, json={"error": {"message": "bad"}})) as (model, recorder):
        with pytest.raises(ModelError, match="HTTP 400"):
            _ = [part async for part in model.stream(ask())]
    assert len(recorder.bodies) == 1


async def test_a_stream_that_breaks_off_after_a_chunk_is_not_retried() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield f"data: {json.dumps(chunk('Hel'))}\n\n".encode()
        raise httpx2.RemoteProtocolError("peer closed connection")

    def dropping(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=chunks(), headers={"content-type": "text/event-stream"})

    async with mock_model(dropping, max_retries=2) as (model, recorder), aclosing(model.stream(ask())) as stream:
        assert await anext(stream) == "Hel"  # the caller has the text already: a retry would send it twice
        with pytest.raises(ModelError, match=r"the stream broke off after 3 characters") as caught:
            await anext(stream)
    assert caught.value.retryable
    assert len(recorder.bodies) == 1


PARSE_FAILURE = {
    "error": {"code": 500, "message": "The model produced output that does not match the expected peg-native format"}
}


async def test_a_stream_the_server_ends_by_failing_its_own_output_parse_keeps_the_text_as_cut_off() -> None:
    # llama.cpp's jinja chat parser can give up on the model's output midway and end the stream with an error.
    cut = '{"nodes": ['
    text = f"data: {json.dumps(chunk(cut))}\n\ndata: {json.dumps(PARSE_FAILURE)}\n\n"
    reply = httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})
    async with mock_model(lambda _: reply) as (model, recorder):
        parts = [part async for part in model.stream(ask(json_schema={"type": "object"}))]
    assert parts[0] == cut
    final = parts[-1]
    assert isinstance(final, ModelResponse)
    assert (final.text, final.completions[0].finish_reason) == (cut, "error")
    assert len(recorder.bodies) == 1


async def test_a_request_the_server_fails_to_parse_is_not_retried() -> None:
    reply = httpx2.Response(500, json=PARSE_FAILURE)
    async with mock_model(lambda _: reply, max_retries=2) as (model, recorder):
        with pytest.raises(ModelError, match="could not parse the model's own output") as caught:
            await model.request(ask())
    assert not caught.value.retryable
    assert len(recorder.bodies) == 1


async def test_a_parse_failure_before_any_text_is_an_error() -> None:
    text = f"data: {json.dumps(PARSE_FAILURE)}\n\n"
    reply = httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})
    async with mock_model(lambda _: reply, max_retries=0) as (model, _):
        with pytest.raises(ModelError, match="peg-native format"):
            _ = [part async for part in model.stream(ask())]


async def test_a_stream_that_opens_and_then_stalls_is_not_retried() -> None:
    async def silent() -> AsyncIterator[bytes]:
        await anyio.sleep_forever()
        yield b""

    def stalling(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=silent(), headers={"content-type": "text/event-stream"})

    async with mock_model(stalling, max_retries=2, timeout_s=0.2) as (model, recorder):
        with anyio.fail_after(5):
            with pytest.raises(ModelError, match=r"no reply within 0.2s"):
                _ = [part async for part in model.stream(ask())]
    assert len(recorder.bodies) == 1  # only the opening is retried, not the wait for chunks


async def test_stream_refuses_what_it_cannot_deliver() -> None:
    async with mock_model(lambda _: sse(chunk("x"))) as (model, _):
        with pytest.raises(ModelError, match="one sample"):
            _ = [part async for part in model.stream(ask(n=2))]
        with pytest.raises(ModelError, match="logprobs are not available when streaming"):
            _ = [part async for part in model.stream(ask(logprobs=True))]


async def test_stream_errors_are_model_errors() -> None:
    async with mock_model(lambda _: httpx2.Response(400, json={"error": {"message": "bad"}})) as (model, _):
        with pytest.raises(ModelError, match="HTTP 400"):
            _ = [part async for part in model.stream(ask())]


async def test_lists_served_models() -> None:
    def models(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"object": "list", "data": [{"id": "a", "object": "model"}]})

    model = OpenAIModel(base_url=BASE_URL, model="", transport=httpx2.MockTransport(models))
    try:
        assert await model.list_served_models() == ["a"]
    finally:
        await model.aclose()


def status(code: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", f"{BASE_URL}/chat/completions")
    response = httpx2.Response(code, headers=headers, request=request)
    return openai.APIStatusError("failed", response=response, body=None)


async def test_retry_backoff_doubles_with_jitter_up_to_a_cap_and_honours_retry_after() -> None:
    model = OpenAIModel(base_url=BASE_URL, model="m", retry_backoff_s=0.5)
    try:
        for retry, full in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 8.0]):
            delays = [model._backoff_s(retry, None) for _ in range(20)]
            assert all(full / 2 <= delay <= full for delay in delays), (retry, delays)
        assert model._backoff_s(0, status(429, {"retry-after": "3"})) == 3.0
        assert model._backoff_s(0, status(503, {"retry-after": "120"})) == 30.0  # capped
        http_date = status(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
        assert 0.25 <= model._backoff_s(0, http_date) <= 0.5  # a date: our own backoff
    finally:
        await model.aclose()
