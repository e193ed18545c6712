"""`Planner`: one task through plan → execute → join → replan, or its first plan drafted without running.

One `Execution` stays open for the whole run, so node ids are global across rounds, finished nodes are
never run again, and a replanned node can reference any earlier output. The steps live beside this module:
the repair loop and the plan stream (`repair`, `stream`, `dispatch`), the joiner (`joiner`), refinement
(`refine`), the prompts (`prompts`) and the journal every step writes to (`journal`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import anyio

from agentdag.config import PlannerConfig
from agentdag.errors import ModelError
from agentdag.events import RunEventSink
from agentdag.executor import Execution, Executor
from agentdag.models.base import Model
from agentdag.parsers import PlanReader
from agentdag.planning.context import PlanningRun
from agentdag.planning.dispatch import Dispatcher, Draft
from agentdag.planning.joiner import answer_directly, join
from agentdag.planning.journal import RunJournal
from agentdag.planning.prompts import first_dispatch, replan_prompt
from agentdag.planning.refine import Refiner
from agentdag.planning.repair import plan_round
from agentdag.result import PlanDraft, Replan, RunResult, RunStatus
from agentdag.saving import JournalSaver, NodeSaver
from agentdag.store import RunStore, SavedRun
from agentdag.templates import load_template
from agentdag.usage import RunMeter, metering

__all__ = ["Planner"]


_NOTHING_RAN = (
    "failed to plan: no node ran, so the answer is the model's own, unchecked by any tool "
    "(see the notes for what the planner wrote)"
)


class Planner:
    """Runs one task through plan → execute → join → replan. Create one per run.

    Args:
        executor: runs the nodes; its tools are the ones the planner may use.
        planner_model: writes plans.
        joiner_model: decides to finish or replan.
        config: planner settings.
        on_event: callbacks for planner/joiner events (node events go to the executor's callbacks).
        store: where the run's state is saved as it goes; if it holds an unfinished run of the same
            task, the run resumes it (finished nodes are restored, not run again).
    """

    def __init__(
        self,
        *,
        executor: Executor,
        planner_model: Model,
        joiner_model: Model,
        config: PlannerConfig,
        on_event: Sequence[RunEventSink] = (),
        store: RunStore | None = None,
    ) -> None:
        self.executor = executor
        self.planner_model = planner_model
        self.joiner_model = joiner_model
        self.config = config
        self.template = load_template(config.template or config.style)
        self.on_event = list(on_event)
        self.store = store

    async def run(self, task: str, *, meter: RunMeter | None = None) -> RunResult:
        """Plan, execute, join and replan until the joiner finishes or a limit stops the run.

        Args:
            task: what to do, in words.
            meter: the run's usage meter (default: a new one); every model call of the run reports to it.
        """
        started = time.perf_counter()
        saved = self.store.load_unfinished(task) if self.store is not None else None
        journal = RunJournal(
            meter or RunMeter(),
            usage=saved.usage if saved else None,
            notes=saved.notes if saved else (),
            replans=saved.replans if saved else (),
        )
        if self.store is not None:
            journal.subscribe(JournalSaver(self.store))
        run = self._planning(task, journal, started)
        refiner = Refiner(run)
        status: RunStatus = "failed"
        answer: Any = None
        error: str | None = None
        with metering(journal.meter):
            async with self.executor.open(on_event=[refiner.watch]) as execution:
                saver = None
                if self.store is not None:
                    durable = self.executor.backend.durable
                    saver = NodeSaver(self.store, execution, round_of=lambda: journal.round, durable=durable)
                deadline = math.inf if self.config.max_seconds is None else self.config.max_seconds
                with anyio.move_on_after(deadline) as budget:
                    try:
                        answer, error = await self._loop(run, execution, refiner, saver, saved)
                        if error is None and not any(
                            record.started_at is not None for record in execution.records.values()
                        ):
                            error = _NOTHING_RAN
                        status = "done" if error is None else "failed"
                    except ModelError as failure:
                        error = f"model call failed: {failure}"
                if budget.cancelled_caught:
                    error = f"time budget of {self.config.max_seconds:g} s ran out"
                    run.emit("stopped", detail=error)
                execution.cancel_all(error or "the run is over")
        result = RunResult(
            status=status,
            answer=answer,
            records=execution.records,
            usage=journal.meter.usage,
            wall_s=time.perf_counter() - started,
            error=error,
            replans=tuple(journal.replans),
            notes=tuple(journal.notes),
            first_dispatch_s=first_dispatch(execution.records.values(), started=started, opened=execution.opened),
        )
        if self.store is not None:
            self.store.save_result(result)
        return result

    async def draft(self, task: str, *, meter: RunMeter | None = None) -> PlanDraft:
        """Ask the planner for a plan and validate it, repairing as `run` does, but run nothing.

        The replies go through the same reading as in `run` (repairs, repeated calls, cut-off plans), so the
        same replies give the same plan.

        Args:
            task: what to do, in words.
            meter: the draft's usage meter (default: a new one); every planner call reports to it.
        """
        journal = RunJournal(meter or RunMeter())
        run = self._planning(task, journal, time.perf_counter())
        target = Draft()
        with metering(journal.meter):
            planned = await plan_round(run, Dispatcher(self.executor.tools, target))
        return PlanDraft(nodes=tuple(target.nodes), problems=tuple(planned.problems), notes=tuple(journal.notes))

    async def _loop(
        self, run: PlanningRun, execution: Execution, refiner: Refiner, saver: NodeSaver | None, saved: SavedRun | None
    ) -> tuple[Any, str | None]:
        """The rounds: plan (or restore), execute, join; replan until the joiner finishes or a limit stops it."""
        dispatcher = Dispatcher(run.tools, execution)
        journal = run.journal
        if saver is not None and saved is not None and saved.started:
            journal.round = saved.round
            kept = saver.restore(saved)
            journal.note(f"resumed: restored {kept} finished node(s), running {len(saved.nodes) - kept} again")
        else:
            planned = await plan_round(run, dispatcher)
            if not planned.added and not execution.records and run.config.fallback == "direct":
                return await answer_directly(run), None
        while True:
            await refiner.execute(dispatcher, execution, journal.round)
            decision = await join(run, execution.records.values(), journal.round)
            if decision is None:
                return None, "no answer: the joiner's replies were not decisions, twice"
            if decision.action == "finish":
                run.emit("finished", journal.round, decision.answer[:80])
                return decision.answer, None
            stop = self._replan_limit(journal)
            if stop is not None:
                journal.note(f"stopped replanning: {stop}; answered with the joiner's best answer")
                run.emit("stopped", journal.round, stop)
                return decision.answer, None
            round_index = journal.round + 1
            run.emit("replanning", round_index, decision.reason)
            journal.begin_replan(round_index, decision.reason)
            first_id = dispatcher.next_id()
            limit = run.config.observation_chars
            records = execution.records.values()
            prompt = replan_prompt(run.template, records, decision.reason, first_id=first_id, limit=limit)
            planned = await plan_round(run, dispatcher, replanning=prompt)
            journal.end_replan(Replan(round=round_index, reason=decision.reason, nodes_added=planned.added))
            if planned.repeated is not None:
                journal.note(
                    f"replan {round_index} repeated the plan of round {planned.repeated}; "
                    "answered with the joiner's best answer"
                )
                return decision.answer, None
            if planned.added == 0:
                journal.note(f"replan {round_index} added no nodes; answered with the joiner's best answer")
                return decision.answer, None

    def _replan_limit(self, journal: RunJournal) -> str | None:
        """Why no further replan may start (max_replans, the token budget), or None."""
        if len(journal.replans) >= self.config.max_replans:
            return f"max_replans ({self.config.max_replans}) reached"
        budget, spent = self.config.max_total_tokens, journal.meter.total.total_tokens
        if budget is not None and spent >= budget:
            return f"token budget ({budget}) spent ({spent} tokens)"
        return None

    def _planning(self, task: str, journal: RunJournal, started: float) -> PlanningRun:
        tools = self.executor.tools
        return PlanningRun(
            task=task,
            tools=tools,
            template=self.template,
            config=self.config,
            reader=PlanReader(self.template.style, tools),
            planner_model=self.planner_model,
            joiner_model=self.joiner_model,
            journal=journal,
            on_event=self.on_event,
            started=started,
        )
