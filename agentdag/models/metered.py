"""`MeteredModel`: a wrapper that counts the tokens a model spends, call by call."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from agentdag.messages import ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model, WrapperModel
from agentdag.models.function import count_prompt_tokens, count_tokens

__all__ = ["MeteredModel"]


class MeteredModel(WrapperModel):
    """A model that totals the usage of every reply in `usage` and reports each to `on_usage`.

    Live views count tokens with it as they are spent; benchmarks keep what a case spent even when the
    case is cut off before its result exists.
    """

    def __init__(self, wrapped: Model, on_usage: Callable[[Usage], None] | None = None) -> None:
        super().__init__(wrapped)
        self.usage = Usage()
        self.on_usage = on_usage

    def _report(self, usage: Usage) -> None:
        self.usage = self.usage + usage
        if self.on_usage is not None:
            self.on_usage(usage)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Forward the request and report its usage."""
        response = await self.wrapped.request(request)
        self._report(response.usage)
        return response

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Forward the stream and report the usage carried by its final response.

        A stream closed early (the planner stops reading a plan that repeats itself) never gets its final
        response; its usage is estimated from the text streamed so far, as the planner itself does.
        """
        parts: list[str] = []
        reported = False
        try:
            async for chunk in self.wrapped.stream(request):
                if isinstance(chunk, ModelResponse):
                    reported = True
                    self._report(chunk.usage)
                else:
                    parts.append(chunk)
                yield chunk
        finally:
            if not reported:
                prompt_tokens = count_prompt_tokens(request.messages)
                self._report(
                    Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=count_tokens("".join(parts)))
                )
