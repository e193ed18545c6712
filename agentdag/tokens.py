"""Token estimates, for servers that report no usage and for budgets that must act before a call returns.

An estimate is about four characters per token. It is used where a server gives no count (a stream closed
early, a server that omits `usage`), by budgets that reserve tokens before a call, and by scripted models.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentdag.messages import Message

__all__ = ["CHARS_PER_TOKEN", "estimate_prompt_tokens", "estimate_tokens"]

CHARS_PER_TOKEN = 4
"""The estimate's rule: about four characters per token."""


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of `text`: about four characters per token (at least 1 for non-empty text)."""
    return max(1, (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(messages: Iterable[Message]) -> int:
    """Estimate the prompt tokens of chat messages with `estimate_tokens`."""
    return sum(estimate_tokens(message.content) for message in messages)
