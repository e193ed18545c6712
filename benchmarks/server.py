"""Server benchmark: do the embedded server's parallel slots raise throughput, and does it survive a busy core?

Every phase sends the same fixed prompts at temperature 0 with a fixed seed, and asks llama.cpp to ignore the
end-of-sequence token, so every request generates exactly `max_tokens` tokens and the ratios compare equal
work. The single phase sends one request at a time, the concurrent phase `concurrency` at once, and the two
take turns round by round, so a slow spell of a shared machine falls on both. The contended phases send the
same requests again while another process runs a busy loop, holding one core as a user's other work would.
A phase that does not finish within `phase_timeout_s` counts the tokens of the requests that did.
`agentdag bench server --json` prints the result.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models.embedded import EmbeddedServer
from agentdag.models.openai import OpenAIModel

__all__ = ["PROMPTS", "TARGET_KEPT", "TARGET_RATIO", "run_server_bench"]

TARGET_RATIO = 1.3
"""Concurrent over single tokens/s, idle."""
TARGET_KEPT = 0.5
"""Single-request tokens/s with one core busy, over the same idle."""
_BUSY_LOOP = "while True: pass"
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


@dataclass(slots=True, kw_only=True)
class _Phase:
    """One phase's requests, added to round by round."""

    max_tokens: int
    counts: list[int] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False

    @property
    def tokens_per_second(self) -> float:
        return sum(self.counts) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": len(self.counts),
            "completion_tokens": sum(self.counts),
            "seconds": round(self.seconds, 3),
            "tok_s": round(self.tokens_per_second, 2),
            "short_replies": sum(1 for count in self.counts if count < self.max_tokens),
            "timed_out": self.timed_out,
        }


async def run_server_bench(
    *,
    max_tokens: int = 128,
    concurrency: int = 4,
    rounds: int = 3,
    slots: int | None = None,
    threads: int | None = None,
    contended: bool = True,
    phase_timeout_s: float = 300.0,
) -> dict[str, object]:
    """Measure completion tokens/s for one request at a time and for `concurrency` at once, idle and contended.

    Args:
        max_tokens: tokens each request generates (end-of-sequence is ignored, so all generate this many).
        concurrency: requests in flight at once in the concurrent phase.
        rounds: how often each phase sends its `concurrency` requests; the phases take turns.
        slots: the server's parallel slots; defaults to `concurrency`.
        threads: CPU threads; defaults to the server's default (half the usable cores).
        contended: also run both phases while a busy loop in another process holds one core.
        phase_timeout_s: how long each phase may take in all; one that runs out counts the requests that finished.

    Returns:
        `single_tok_s`, `concurrent_tok_s`, their `ratio` and `target_ratio`; with `contended`, also
        `contended_single_tok_s`, `contended_concurrent_tok_s` and `kept` (contended single over idle single)
        with `target_kept`; the configuration and the raw token counts and times of each phase.
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
        runners: dict[str, _PhaseRunner] = {"single": _run_single, "concurrent": _run_concurrent}
        phases = {name: _Phase(max_tokens=max_tokens) for name in runners}
        contended_phases = {f"contended_{name}": _Phase(max_tokens=max_tokens) for name in runners}

        async def measure(measured: dict[str, _Phase]) -> None:
            for _ in range(rounds):
                for phase, run in zip(measured.values(), runners.values(), strict=True):
                    await _run_round(phase, run, model, prompts, timeout_s=phase_timeout_s)

        try:
            await _generate(model, prompts[0], max_tokens=max_tokens)  # warm up: first-call allocations, caches
            await measure(phases)
            if contended:
                async with _busy_core():
                    await measure(contended_phases)
                phases |= contended_phases
        finally:
            await model.aclose()
        single, concurrent = phases["single"], phases["concurrent"]
        ratio = _divide(concurrent.tokens_per_second, single.tokens_per_second)
        report: dict[str, object] = {
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
        }
        if contended:
            kept = _divide(phases["contended_single"].tokens_per_second, single.tokens_per_second)
            report |= {
                "contended_single_tok_s": round(phases["contended_single"].tokens_per_second, 2),
                "contended_concurrent_tok_s": round(phases["contended_concurrent"].tokens_per_second, 2),
                "kept": round(kept, 3),
                "target_kept": TARGET_KEPT,
                "meets_target": ratio >= TARGET_RATIO and kept >= TARGET_KEPT,
            }
        return report | {name: phase.as_dict() for name, phase in phases.items()}


class _PhaseRunner(Protocol):
    """Sends a phase's requests, appending each reply's completion tokens as it arrives (a timeout keeps them)."""

    def __call__(
        self, model: OpenAIModel, prompts: list[str], counts: list[int], /, *, max_tokens: int
    ) -> Awaitable[None]: ...


@asynccontextmanager
async def _busy_core() -> AsyncIterator[None]:
    """Another process spinning on one core for the duration, stopped (and reaped) on the way out."""
    process = await anyio.open_process([sys.executable, "-c", _BUSY_LOOP])
    try:
        await anyio.sleep(0.5)  # the loop is running before the first request
        yield
    finally:
        process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()


async def _run_round(
    phase: _Phase, run: _PhaseRunner, model: OpenAIModel, prompts: list[str], *, timeout_s: float
) -> None:
    if phase.timed_out:
        return
    started = time.perf_counter()
    with anyio.move_on_after(timeout_s - phase.seconds) as scope:
        await run(model, prompts, phase.counts, max_tokens=phase.max_tokens)
    phase.seconds += time.perf_counter() - started
    phase.timed_out = scope.cancelled_caught


def _divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


async def _generate(model: OpenAIModel, prompt: str, *, max_tokens: int) -> int:
    request = ModelRequest(
        messages=(Message("user", prompt),),
        settings=ModelSettings(temperature=0.0, seed=1234, max_tokens=max_tokens),
    )
    return (await model.request(request)).usage.completion_tokens


async def _run_single(model: OpenAIModel, prompts: list[str], counts: list[int], *, max_tokens: int) -> None:
    for prompt in prompts:
        counts.append(await _generate(model, prompt, max_tokens=max_tokens))  # noqa: PERF401 (kept as each ends)


async def _run_concurrent(model: OpenAIModel, prompts: list[str], counts: list[int], *, max_tokens: int) -> None:
    async def generate(prompt: str) -> None:
        counts.append(await _generate(model, prompt, max_tokens=max_tokens))

    async with anyio.create_task_group() as group:
        for prompt in prompts:
            group.start_soon(generate, prompt)
