"""A tool that asks the run's model, so a plan node can reason or summarise over other nodes' outputs."""

from __future__ import annotations

from typing import Any

import pydantic

from agentdag.errors import ToolArgumentsError
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models.base import Model
from agentdag.toolsets.base import JsonValue, Tool, ToolPolicy
from agentdag.usage import report_usage, reporting_as

__all__ = ["ModelTool"]


class _Arguments(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    prompt: str = pydantic.Field(min_length=1, description="What to ask; may splice in other nodes' outputs.")
    system: str | None = pydantic.Field(default=None, description="Optional system instruction.")
    max_tokens: int = pydantic.Field(default=256, ge=1, le=4096, description="Longest reply, in tokens.")


class ModelTool(Tool):
    """The `llm` tool: one chat call to the model, returning the reply text.

    Its usage goes to the meter of the run whose node made the call (the "tools" role). It changes nothing
    outside itself, so it is read-only: a repeated prompt with nothing changed in between may reuse the
    first reply, and its results may be cached.
    """

    def __init__(self, model: Model, *, name: str = "llm", policy: ToolPolicy | None = None) -> None:
        self.model = model
        self.name = name
        self.description = "Ask the language model a question and get its text reply."
        self.input_schema: dict[str, Any] = _Arguments.model_json_schema()
        self.input_schema.pop("title", None)
        self.policy = policy or ToolPolicy(read_only=True)

    async def call(self, arguments: dict[str, JsonValue]) -> JsonValue:
        """Send the prompt to the model and return the reply text."""
        try:
            parsed = _Arguments.model_validate(arguments)
        except pydantic.ValidationError as error:
            raise ToolArgumentsError(f"invalid arguments for tool {self.name!r}: {error.errors()[0]['msg']}") from None
        messages = [Message("user", parsed.prompt)]
        if parsed.system:
            messages.insert(0, Message("system", parsed.system))
        request = ModelRequest(messages=tuple(messages), settings=ModelSettings(max_tokens=parsed.max_tokens))
        with reporting_as("tools"):  # a strategy wrapping the model counts its own calls for this role
            response = await self.model.request(request)
        if not self.model.counts_usage:
            report_usage(response.usage, "tools")
        return response.text.strip()
