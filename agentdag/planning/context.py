"""`PlanningRun`: what every step of one run's planning needs, in one place.

The planner builds one per run (or draft) and hands it to the steps: the plan stream, the repair loop, the
joiner and the refinement. It holds no state of its own beyond the journal it writes to.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agentdag.config import PlannerConfig
from agentdag.events import RunEvent, RunEventKind, RunEventSink
from agentdag.models.base import Model
from agentdag.parsers import PlanReader
from agentdag.planning.journal import RunJournal
from agentdag.templates import PlannerTemplate
from agentdag.toolsets.base import Tool

__all__ = ["PlanningRun"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanningRun:
    """One run's task, tools, prompts, models and journal.

    Attributes:
        task: the task, in words.
        tools: the tools plans may call.
        template: the prompts.
        config: the planner settings.
        reader: how replies read as plans (the template's style, the tools).
        planner_model: writes plans and refinements.
        joiner_model: decides to finish or replan, and answers directly.
        journal: where usage, notes, replans and replies go.
        on_event: callbacks for planner and joiner events.
        started: `time.perf_counter()` when the run started; events count from it.
    """

    task: str
    tools: Mapping[str, Tool]
    template: PlannerTemplate
    config: PlannerConfig
    reader: PlanReader
    planner_model: Model
    joiner_model: Model
    journal: RunJournal
    on_event: Sequence[RunEventSink] = ()
    started: float = field(default_factory=time.perf_counter)

    def emit(self, kind: RunEventKind, round_index: int = 0, detail: str = "") -> None:
        """Send a planner/joiner event to the callbacks."""
        if not self.on_event:
            return
        event = RunEvent(kind, time.perf_counter() - self.started, round_index, detail)
        for sink in self.on_event:
            sink(event)
