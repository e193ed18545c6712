"""The model protocol: one abstract async method, extended by wrapping."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator

from agentdag.messages import ModelRequest, ModelResponse

__all__ = ["Model", "WrapperModel"]


class Model(ABC):
    """A chat model: messages in, completions with token usage out.

    Subclasses implement `request`. Models that can stream tokens also override `stream`; the default
    yields the whole reply as one chunk, so every model can be used where streaming is expected.

    Attributes:
        name: the model's name.
        counts_usage: the model reports its own calls to the run's meter (scaling strategies do, call by
            call); whoever calls it then does not count its reply again (see `agentdag.usage`).
    """

    name: str = "model"
    counts_usage: bool = False

    @abstractmethod
    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return its completions and usage."""

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Yield the reply's text in chunks as it is generated, then the whole `ModelResponse` last.

        The final response carries the full text, the finish reason and the token usage of the stream.
        Only `settings.n == 1` can be streamed.
        """
        response = await self.request(request)
        yield response.text
        yield response

    async def aclose(self) -> None:
        """Release the model's resources (an HTTP client, a server); the default has none."""
        return


class WrapperModel(Model):
    """A model that wraps another model; strategies, retries and limits derive from it so they stack."""

    def __init__(self, wrapped: Model) -> None:
        self.wrapped = wrapped
        self.name = wrapped.name
        self.counts_usage = wrapped.counts_usage

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Forward the request to the wrapped model."""
        return await self.wrapped.request(request)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Forward streaming to the wrapped model."""
        async for chunk in self.wrapped.stream(request):
            yield chunk

    async def aclose(self) -> None:
        """Close the wrapped model."""
        await self.wrapped.aclose()
