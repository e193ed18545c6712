"""Server benchmark: do the embedded server's parallel slots raise throughput over one request at a time?

Both phases send the same fixed prompts at temperature 0 with a fixed seed, and ask llama.cpp to ignore the
end-of-sequence token, so every request generates exactly `max_tokens` tokens and the ratio compares equal
work. `agentdag bench server --json` prints the result.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import anyio

from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models.embedded import EmbeddedServer
from agentdag.models.openai import OpenAIModel

__all__ = ["PROMPTS", "TARGET_RATIO", "run_server_bench"]

TARGET_RATIO = 1.3
PROMPTS = (
    "Write a detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a bicycle gear system works.",
    "Describe a walk through a busy market in the morning, with sounds and smells.",
    "List and explain ten habits that help people learn a new language.",
    "Write a long letter from a sailor to their family back home.",
    "Explain how bread is made, from growing wheat to baking the loaf.",
    "Describe the water cycle in detail for a school science class.",
    "Write a travel guide for a small mountain village.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Phase:
    requests: int
    completion_tokens: int
    seconds: float
    short_replies: int

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "tok_s": round(self.tokens_per_second, 2),
            "short_replies": self.short_replies,
        }


async def run_server_bench(
    *,
    max_tokens: int = 128,
    concurrency: int = 4,
    rounds: int = 2,
    slots: int | None = None,
    threads: int | None = None,
) -> dict[str, object]:
    """Measure completion tokens/s for one request at a time and for `concurrency` at once.

    Args:
        max_tokens: tokens each request generates (end-of-sequence is ignored, so all generate this many).
        concurrency: requests in flight at once in the concurrent phase.
        rounds: how often each phase sends its `concurrency` requests.
        slots: the server's parallel slots; defaults to `concurrency`.
        threads: CPU threads; defaults to all cores.

    Returns:
        `single_tok_s`, `concurrent_tok_s`, their `ratio` and `target_ratio`, the configuration and the raw
        token counts and times of each phase.
    """
    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(concurrency)]
    async with EmbeddedServer(slots=slots or concurrency, ctx_per_slot=1024, threads=threads) as server:
        model = OpenAIModel(
            base_url=server.url,
            model=server.model_name,
            timeout_s=600,
            max_retries=0,
            extra_body={"ignore_eos": True},
            server=f"embedded llama.cpp server at {server.url}",
        )
        try:
            await _generate(model, prompts[0], max_tokens=max_tokens)  # warm up: first-call allocations, caches
            single = await _run_single(model, prompts, max_tokens=max_tokens, rounds=rounds)
            concurrent = await _run_concurrent(model, prompts, max_tokens=max_tokens, rounds=rounds)
        finally:
            await model.aclose()
        ratio = concurrent.tokens_per_second / single.tokens_per_second if single.tokens_per_second else 0.0
        return {
            "bench": "server",
            "model": server.model_name,
            "slots": server.slots,
            "threads": server.threads,
            "cpu_count": os.cpu_count(),
            "max_tokens": max_tokens,
            "concurrency": concurrency,
            "rounds": rounds,
            "single_tok_s": round(single.tokens_per_second, 2),
            "concurrent_tok_s": round(concurrent.tokens_per_second, 2),
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
            "single": single.as_dict(),
            "concurrent": concurrent.as_dict(),
        }


async def _generate(model: OpenAIModel, prompt: str, *, max_tokens: int) -> int:
    request = ModelRequest(
        messages=(Message("user", prompt),),
        settings=ModelSettings(temperature=0.0, seed=1234, max_tokens=max_tokens),
    )
    return (await model.request(request)).usage.completion_tokens


async def _run_single(model: OpenAIModel, prompts: list[str], *, max_tokens: int, rounds: int) -> _Phase:
    counts: list[int] = []
    started = time.perf_counter()
    for _ in range(rounds):
        counts.extend([await _generate(model, prompt, max_tokens=max_tokens) for prompt in prompts])
    return _phase(counts, time.perf_counter() - started, max_tokens=max_tokens)


async def _run_concurrent(model: OpenAIModel, prompts: list[str], *, max_tokens: int, rounds: int) -> _Phase:
    counts: list[int] = []

    async def generate(prompt: str) -> None:
        counts.append(await _generate(model, prompt, max_tokens=max_tokens))

    started = time.perf_counter()
    for _ in range(rounds):
        async with anyio.create_task_group() as group:
            for prompt in prompts:
                group.start_soon(generate, prompt)
    return _phase(counts, time.perf_counter() - started, max_tokens=max_tokens)


def _phase(counts: list[int], seconds: float, *, max_tokens: int) -> _Phase:
    return _Phase(
        requests=len(counts),
        completion_tokens=sum(counts),
        seconds=seconds,
        short_replies=sum(1 for count in counts if count < max_tokens),
    )
