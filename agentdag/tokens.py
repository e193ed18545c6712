"""Token estimates, for servers that report no usage and for budgets that must act before a call returns.

An estimate is about four characters per token. It is used where a server gives no count (a stream closed
early, a server that omits `usage`), by budgets that reserve tokens before a call, and by scripted models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from agentdag.messages import Completion, Message, ToolSpec

__all__ = ["CHARS_PER_TOKEN", "estimate_completion_tokens", "estimate_prompt_tokens", "estimate_tokens"]

CHARS_PER_TOKEN = 4
"""The estimate's rule: about four characters per token."""


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of `text`: about four characters per token (at least 1 for non-empty text)."""
    return max(1, (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(messages: Iterable[Message], *, tools: Iterable[ToolSpec] = ()) -> int:
    """Estimate the prompt tokens of chat messages, and of the tools offered with them, with `estimate_tokens`.

    A tool counts as the JSON of its name, description and parameters, about what a server puts in the prompt.
    """
    tool_tokens = sum(
        estimate_tokens(
            json.dumps({"name": spec.name, "description": spec.description, "parameters": spec.parameters}, default=str)
        )
        for spec in tools
    )
    return sum(estimate_tokens(message.content) for message in messages) + tool_tokens


def estimate_completion_tokens(completions: Iterable[Completion]) -> int:
    """Estimate the tokens of sampled replies: their text and the names and arguments of their tool calls."""
    return estimate_tokens(
        "".join(
            completion.text + "".join(call.name + call.arguments for call in completion.tool_calls)
            for completion in completions
        )
    )
