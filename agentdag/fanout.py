"""`fan_out`: run jobs at once in one task group, and collect each one's result or caught failure.

The one way agentdag runs a batch of concurrent calls (samples of a strategy, emulated `n`, parallel
traces): structured, with failures of the kinds the caller names collected as data instead of tearing the
group down, and an optional early stop once the results so far suffice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

__all__ = ["FanOut", "fan_out"]

T = TypeVar("T")


@dataclass(slots=True)
class FanOut(Generic[T]):
    """What a fan-out produced.

    Attributes:
        results: by job index, the job's result, or None where it failed or was stopped.
        errors: the caught failures, in the order they happened.
        stopped: the fan-out was stopped early (by `stop`, or by a failure with `stop_on_error`).
    """

    results: list[T | None]
    errors: list[BaseException] = field(default_factory=list)
    stopped: bool = False

    @property
    def done(self) -> list[T]:
        """The results of the jobs that finished, in job order."""
        return [result for result in self.results if result is not None]


async def fan_out(
    jobs: Sequence[Callable[[], Awaitable[T | None]]],
    *,
    catch: tuple[type[BaseException], ...],
    stop: Callable[[int, T], bool] | None = None,
    stop_on_error: bool = False,
) -> FanOut[T]:
    """Run every job at once and wait for all of them.

    Args:
        jobs: the jobs, each a function returning an awaitable (started in order); a job may return None
            for "nothing" (a sample the budget could not afford), which `stop` never sees.
        catch: the failures that are collected; anything else propagates and cancels the other jobs.
        stop: called with each result as it arrives (its job's index first); True cancels the jobs still
            running, whose results stay None.
        stop_on_error: cancel the jobs still running at the first caught failure.
    """
    outcome: FanOut[T] = FanOut(results=[None] * len(jobs))

    async def run(index: int, group: anyio.abc.TaskGroup) -> None:
        try:
            result = await jobs[index]()
        except catch as error:
            outcome.errors.append(error)
            if stop_on_error:
                outcome.stopped = True
                group.cancel_scope.cancel()
            return
        outcome.results[index] = result
        if stop is not None and result is not None and stop(index, result):
            outcome.stopped = True
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index in range(len(jobs)):
            group.start_soon(run, index, group)
    return outcome
