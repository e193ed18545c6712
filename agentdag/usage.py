"""`RunMeter`: the token usage of one run, by role, which every model call of that run reports to.

A run owns one meter. The planner and the joiner report their calls to it, and so does the `llm` tool,
which finds the meter of the run it serves in a context variable: a node's task inherits the context of
the run that started it, so concurrent runs on one `Agent` never see each other's tokens. A scaling
strategy's calls (its samples, judges and summaries) reach the meter in the usage of the reply it returns.
Nothing is counted by subtracting snapshots of a shared counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from agentdag.messages import Usage

__all__ = ["ROLES", "Role", "RunMeter", "UsageListener", "current_meter", "metering", "report_usage"]

Role = Literal["planner", "joiner", "tools"]
ROLES: tuple[Role, ...] = ("planner", "joiner", "tools")

UsageListener = Callable[[Role, Usage], None]
"""Called with each report (the role and the usage of that one call); must return quickly and not raise."""

_METER: ContextVar[RunMeter | None] = ContextVar("agentdag_run_meter", default=None)


class RunMeter:
    """Token usage of one run by role ("planner", "joiner", "tools").

    Args:
        usage: usage to start from (a resumed run's earlier processes).
        listeners: called with every report, e.g. a live view or a store.
    """

    def __init__(self, usage: Mapping[str, Usage] | None = None, *, listeners: tuple[UsageListener, ...] = ()) -> None:
        self._usage: dict[str, Usage] = {role: Usage() for role in ROLES}
        self._usage.update((role, spent) for role, spent in (usage or {}).items() if role in self._usage)
        self._listeners = list(listeners)

    def subscribe(self, listener: UsageListener) -> None:
        """Call `listener` with every later report."""
        self._listeners.append(listener)

    def add(self, role: Role, usage: Usage) -> None:
        """Count one model call's usage for `role`."""
        self._usage[role] = self._usage[role] + usage
        for listener in self._listeners:
            listener(role, usage)

    @property
    def usage(self) -> dict[str, Usage]:
        """Usage by role so far (a copy)."""
        return dict(self._usage)

    @property
    def total(self) -> Usage:
        """Usage summed over the roles."""
        return sum(self._usage.values(), Usage())


def current_meter() -> RunMeter | None:
    """The meter of the run this code runs for, if any."""
    return _METER.get()


@contextmanager
def metering(meter: RunMeter) -> Iterator[RunMeter]:
    """Make `meter` the current run's meter inside the block (and in every task started from it)."""
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


def report_usage(role: Role, usage: Usage) -> None:
    """Count `usage` on the current run's meter; outside a run it goes nowhere."""
    meter = _METER.get()
    if meter is not None:
        meter.add(role, usage)
