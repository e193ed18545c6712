"""`FunctionModel`: a model whose every reply a plain function decides, for tests and scripted runs."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from agentdag.messages import Completion, ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model
from agentdag.tokens import estimate_completion_tokens, estimate_prompt_tokens

__all__ = ["FunctionModel"]

ScriptedReply = str | Completion | ModelResponse
ReplyFunction = Callable[[ModelRequest], ScriptedReply | Awaitable[ScriptedReply]]


class FunctionModel(Model):
    """A model that calls `function(request)` for each reply.

    The function may be sync or async and returns the reply text, one `Completion` (e.g. with `tool_calls`)
    or a full `ModelResponse`. Text or a completion is repeated for every one of the `settings.n` samples,
    and its usage is estimated (see `agentdag.tokens`). `chunk_size` sets how many characters each streamed
    chunk carries.
    """

    def __init__(self, function: ReplyFunction, *, name: str = "function", chunk_size: int = 8) -> None:
        self.function = function
        self.name = name
        self.chunk_size = chunk_size
        self.requests: list[ModelRequest] = []

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Record the request and return the function's reply."""
        started = time.perf_counter()
        self.requests.append(request)
        reply = self.function(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, ModelResponse):
            return reply
        completion = Completion(text=reply) if isinstance(reply, str) else reply
        prompt_tokens = estimate_prompt_tokens(request.messages, tools=request.settings.tools)
        n = request.settings.n
        return ModelResponse(
            completions=(completion,) * n,
            usage=Usage(
                calls=1,
                prompt_tokens=prompt_tokens,
                completion_tokens=estimate_completion_tokens((completion,)) * n,
                latency_s=time.perf_counter() - started,
            ),
            model=self.name,
        )

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Stream the function's reply in chunks of `chunk_size` characters, then the response."""
        response = await self.request(request)
        text = response.text
        for start in range(0, len(text), self.chunk_size):
            yield text[start : start + self.chunk_size]
        yield response
