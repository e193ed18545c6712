"""`RunMeter`: the token usage of one run, by role, which every model call of that run reports to.

A run owns one meter, found through a context variable (a node's task inherits the context of the run that
started it, so concurrent runs on one `Agent` never see each other's tokens). Whoever calls a model reports
that call, under the role it is made for (`reporting_as`): the planner and the joiner, the `llm` tool, the
ReAct baseline, and each scaling strategy for every sample, judge and summary call it makes, as each call
ends (a strategy's own reply is not counted again: `Model.counts_usage`). Nothing is counted by
subtracting snapshots of a shared counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from agentdag.messages import Usage

__all__ = [
    "ROLES",
    "Role",
    "RunMeter",
    "UsageListener",
    "current_meter",
    "metering",
    "report_usage",
    "reporting_as",
]

Role = Literal["planner", "joiner", "tools"]
ROLES: tuple[Role, ...] = ("planner", "joiner", "tools")

UsageListener = Callable[[Role, Usage], None]
"""Called with each report (the role and the usage of that one call); must return quickly and not raise."""

_METER: ContextVar[RunMeter | None] = ContextVar("agentdag_run_meter", default=None)
_ROLE: ContextVar[Role | None] = ContextVar("agentdag_usage_role", default=None)


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


@contextmanager
def reporting_as(role: Role) -> Iterator[None]:
    """Inside the block, model calls count for `role` (the calls a strategy makes for it, too)."""
    token = _ROLE.set(role)
    try:
        yield
    finally:
        _ROLE.reset(token)


def report_usage(usage: Usage, role: Role | None = None) -> None:
    """Count one model call's `usage` on the current run's meter, for `role` (default: the current role).

    Outside a run, or without a role, it goes nowhere; a call that used nothing is not counted.
    """
    meter, role = _METER.get(), role or _ROLE.get()
    if meter is not None and role is not None and (usage.calls or usage.total_tokens):
        meter.add(role, usage)
