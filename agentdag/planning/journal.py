"""`RunJournal`: what a planned run did besides running nodes, written once and read by whoever listens.

The journal holds the run's usage meter, its notes, its replans, the round being planned, and every planner
reply as it is written. The planner writes to the journal and nothing else; a run's store (see
`agentdag.saving.JournalSaver`) and anyone else subscribes to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from agentdag.messages import Usage
from agentdag.result import Replan
from agentdag.usage import ROLES, Role, RunMeter

__all__ = ["JournalListener", "RunJournal"]


class JournalListener(Protocol):
    """Receives a journal's entries as they are written; each method must return quickly."""

    def noted(self, note: str) -> None:
        """A note was written."""

    def planned(self, round_index: int, attempt: int, text: str) -> None:
        """A planner reply (a plan version, valid or not) came in."""

    def replanned(self, replan: Replan) -> None:
        """A replanning round began (nodes_added 0) or ended."""

    def spent(self, role: Role, usage: Usage) -> None:
        """The role's usage so far (its total, after each model call)."""


class RunJournal:
    """The run's meter, notes, replans and planning round, with listeners.

    Args:
        meter: the run's usage meter; its reports reach the listeners as `spent`.
        usage: what earlier processes of a resumed run spent, added to the meter first.
        notes: notes of earlier processes.
        replans: replans of earlier processes.
    """

    def __init__(
        self,
        meter: RunMeter,
        *,
        usage: Mapping[str, Usage] | None = None,
        notes: Iterable[str] = (),
        replans: Iterable[Replan] = (),
    ) -> None:
        self.meter = meter
        for role in ROLES:
            spent = (usage or {}).get(role)
            if spent is not None:
                meter.add(role, spent)
        self.notes = list(notes)
        self.replans = list(replans)
        self.round = 0
        self._listeners: list[JournalListener] = []
        meter.subscribe(self._spent)

    def subscribe(self, listener: JournalListener) -> None:
        """Send every later entry to `listener`."""
        self._listeners.append(listener)

    def note(self, note: str) -> None:
        """Write a note (it ends up in `RunResult.notes`)."""
        self.notes.append(note)
        for listener in self._listeners:
            listener.noted(note)

    def planned(self, attempt: int, text: str) -> None:
        """Record a planner reply of the current round."""
        for listener in self._listeners:
            listener.planned(self.round, attempt, text)

    def begin_replan(self, round_index: int, reason: str) -> None:
        """A replanning round begins: it is recorded at once, so that a resumed run counts it if it is cut short."""
        self.round = round_index
        for listener in self._listeners:
            listener.replanned(Replan(round=round_index, reason=reason, nodes_added=0))

    def end_replan(self, replan: Replan) -> None:
        """A replanning round ended with its plan."""
        self.replans.append(replan)
        for listener in self._listeners:
            listener.replanned(replan)

    def _spent(self, role: Role, usage: Usage) -> None:
        del usage
        total = self.meter.usage[role]
        for listener in self._listeners:
            listener.spent(role, total)
