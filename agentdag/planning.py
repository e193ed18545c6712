"""The compiler loop: plan (streamed into the executor), join, and replan.

One `Execution` stays open for the whole run, so node ids are global across rounds, finished nodes are
never run again, and a replanned node can reference any earlier output.

* **Streaming dispatch.** The planner's reply is parsed as it streams; each complete, valid node goes to
  the executor at once (see `agentdag.dispatch` for repeated calls: which reuse an earlier output and
  which run again).
* **Validate and repair.** Invalid nodes are held back and the exact problem list goes back to the model,
  up to `max_repairs` times. Then the fallback: run the valid part (`partial`), or answer without tools
  (`direct`). The result's `notes` say what happened. `draft` goes through the same path and runs nothing.
* **Join and replan.** After the graph finishes, the joiner returns `finish` with the answer or `replan`
  with a reason. Replanning stops at `max_replans`, at the token budget and at the time budget.
* **One meter.** Every model call of the run (planner, joiner, the `llm` tool, scaling samples) reports to
  the run's `RunMeter`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentdag.dispatch import Dispatcher, Draft, Reply
from agentdag.errors import ModelError
from agentdag.events import EventSink, NodeEvent, RunEvent, RunEventKind, RunEventSink
from agentdag.executor import Execution, Executor, NodeRecord
from agentdag.messages import Message, ModelRequest, ModelResponse, ModelSettings, Usage
from agentdag.models.base import Model
from agentdag.parsers import END_OF_PLAN, PlanParser, PlanReader, node_from_mapping
from agentdag.plan import PlanProblem
from agentdag.result import PlanDraft, Replan, RunResult, RunStatus
from agentdag.scaling.reading import PlanReading, reading_plans
from agentdag.schemas import (
    JOINER_SCHEMA,
    Decision,
    create_plan_schema,
    create_refine_schema,
    parse_decision,
    parse_refinement,
)
from agentdag.store import NodeSaver, RunStore, SavedRun
from agentdag.templates import PlannerTemplate, fill, load_template
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens
from agentdag.usage import ROLES, Role, RunMeter, metering

__all__ = ["Compiler", "PlannerConfig"]


class PlannerConfig(BaseModel):
    """How the planner, the joiner and replanning behave (`planner:` in task.yaml).

    Attributes:
        style: plan format: "json" (constrained decoding; the default, which small models can follow)
            or "llmcompiler" (numbered text).
        template: a template shipped in `planners/` by name, or a path to a YAML file; default: `style`.
        max_repairs: how many times an invalid plan goes back to the model with its problems.
        max_replans: how many times the joiner may ask for a new plan.
        fallback: after the last repair, "partial" runs the valid nodes; "direct" answers without tools
            when no node was valid.
        max_tokens: the longest planner reply, in tokens.
        max_nodes: the most nodes one plan may hold (the JSON schema enforces it; for either style the
            reading stops after that many nodes).
        temperature: sampling temperature of planner and joiner calls.
        observation_chars: tool outputs shown to the joiner and to replans are cut to this many characters.
        max_total_tokens: token budget of the run (planner, joiner and model tools); no replan past it.
        max_seconds: time budget of the run; when it runs out, running nodes are cancelled.
        refine: mid-run refinement: whenever a node finishes while others are pending, the planner may
            add nodes or cancel pending ones without waiting for the rest of the graph.
        max_refinements: the most refinement calls per run (only with `refine: true`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    style: Literal["json", "llmcompiler"] = "json"
    template: str | None = None
    max_repairs: int = Field(default=2, ge=0, le=10)
    max_replans: int = Field(default=2, ge=0, le=20)
    fallback: Literal["partial", "direct"] = "partial"
    max_tokens: int = Field(default=1024, ge=16)
    max_nodes: int = Field(default=16, ge=1, le=256)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    observation_chars: int = Field(default=1500, ge=100)
    max_total_tokens: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    refine: bool = False
    max_refinements: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _refuse_unused(self) -> PlannerConfig:
        if "max_refinements" in self.model_fields_set and not self.refine:
            raise ValueError("`max_refinements` has no effect here: it applies only with refine: true; remove it")
        return self


class Compiler:
    """Runs one task through plan → execute → join → replan. Create one per run.

    Args:
        executor: runs the nodes; its tools are the ones the planner may use.
        planner_model: writes plans.
        joiner_model: decides to finish or replan.
        config: planner settings.
        on_event: callbacks for node events and planner/joiner events.
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
        self.store = store
        self.tools = executor.tools
        self.planner_model = planner_model
        self.joiner_model = joiner_model
        self.config = config
        self.template: PlannerTemplate = load_template(config.template or config.style)
        self.reader = PlanReader(self.template.style, self.tools)
        self.on_event = list(on_event)
        self.meter = RunMeter()
        self.notes: list[str] = []
        self.replans: list[Replan] = []
        self._task = ""
        self._node_ended = anyio.Event()
        self._refinements = 0
        self._started = 0.0
        self._saver = NodeSaver(store) if store is not None else None

    async def run(self, task: str, *, meter: RunMeter | None = None) -> RunResult:
        """Plan, execute, join and replan until the joiner finishes or a limit stops the run.

        Args:
            task: what to do, in words.
            meter: the run's usage meter (default: a new one); every model call of the run reports to it.
        """
        self._started = time.perf_counter()
        self._task = task
        saved = self._load_saved(task)
        self.meter = meter if meter is not None else RunMeter()
        if saved is not None:
            for role in ROLES:  # what the run's earlier processes spent
                self.meter.add(role, saved.usage.get(role, Usage()))
            self.meter.subscribe(self._save_usage)
        status: RunStatus = "failed"
        answer: Any = None
        error: str | None = None
        with metering(self.meter):
            sinks: list[EventSink] = [self._watch] if self._saver is None else [self._watch, self._saver]
            async with self.executor.open(on_event=sinks) as execution:
                if self._saver is not None:
                    self._saver.execution = execution
                deadline = math.inf if self.config.max_seconds is None else self.config.max_seconds
                with anyio.move_on_after(deadline) as budget:
                    try:
                        answer, error = await self._loop(Dispatcher(self.tools, execution), execution, saved)
                        status = "done" if error is None else "failed"
                    except ModelError as failure:
                        error = f"model call failed: {failure}"
                if budget.cancelled_caught:
                    error = f"time budget of {self.config.max_seconds:g} s ran out"
                    self._emit("stopped", detail=error)
                execution.cancel_all(error or "the run is over")
        result = RunResult(
            status=status,
            answer=answer,
            records=execution.records,
            usage=self.meter.usage,
            wall_s=time.perf_counter() - self._started,
            error=error,
            replans=tuple(self.replans),
            notes=tuple(self.notes),
            first_dispatch_s=_first_dispatch(execution.records.values(), self._started, execution),
        )
        if self.store is not None:
            self.store.save_result(result)
        return result

    async def draft(self, task: str) -> PlanDraft:
        """Ask the planner for a plan and validate it, repairing as `run` does, but run nothing.

        The replies go through the same reading as in `run` (repairs, repeated calls, cut-off plans), so the
        same replies give the same plan.
        """
        self._started = time.perf_counter()
        self._task = task
        target = Draft()
        dispatcher = Dispatcher(self.tools, target)
        with metering(self.meter):
            planned = await self._plan(dispatcher, task, round_index=0)
        return PlanDraft(nodes=tuple(target.nodes), problems=tuple(planned.problems), notes=tuple(self.notes))

    async def _loop(
        self, dispatcher: Dispatcher, execution: Execution, saved: SavedRun | None
    ) -> tuple[Any, str | None]:
        task = self._task
        if saved is not None and saved.started:
            round_index = saved.round
            self._restore(execution, saved)
        else:
            round_index = 0
            planned = await self._plan(dispatcher, task, round_index=round_index)
            if not planned.added and not execution.records and self.config.fallback == "direct":
                return await self._answer_directly(task), None
        while True:
            await self._execute(dispatcher, execution, task, round_index)
            decision = await self._join(task, execution, round_index)
            if decision is None:
                return None, "no answer: the joiner's replies were not decisions, twice"
            if decision.action == "finish":
                self._emit("finished", round_index, decision.answer[:80])
                return decision.answer, None
            stop = self._replan_limit()
            if stop is not None:
                self._note(f"stopped replanning: {stop}; answered with the joiner's best answer")
                self._emit("stopped", round_index, stop)
                return decision.answer, None
            round_index += 1
            self._emit("replanning", round_index, decision.reason)
            if self.store is not None:  # saved first, so that a resumed run counts a replan cut short
                self.store.save_replan(Replan(round=round_index, reason=decision.reason, nodes_added=0))
            replanning = fill(
                self.template.replan,
                observations=self._observations(execution),
                reason=decision.reason,
                first_id=max(execution.records, default=0) + 1,
            )
            planned = await self._plan(dispatcher, task, round_index=round_index, replanning=replanning)
            replan = Replan(round=round_index, reason=decision.reason, nodes_added=planned.added)
            self.replans.append(replan)
            if self.store is not None:
                self.store.save_replan(replan)
            if planned.repeated is not None:
                self._note(
                    f"replan {round_index} repeated the plan of round {planned.repeated}; "
                    "answered with the joiner's best answer"
                )
                return decision.answer, None
            if planned.added == 0:
                self._note(f"replan {round_index} added no nodes; answered with the joiner's best answer")
                return decision.answer, None

    def _replan_limit(self) -> str | None:
        if len(self.replans) >= self.config.max_replans:
            return f"max_replans ({self.config.max_replans}) reached"
        budget = self.config.max_total_tokens
        spent = self.meter.total.total_tokens
        if budget is not None and spent >= budget:
            return f"token budget ({budget}) spent ({spent} tokens)"
        return None

    # -- planning ---------------------------------------------------------------------------------

    async def _plan(
        self, dispatcher: Dispatcher, task: str, *, round_index: int, replanning: str | None = None
    ) -> _Planned:
        """Stream a plan into the dispatcher's target, repairing it as needed.

        Args:
            dispatcher: where the nodes go.
            task: the task.
            round_index: 0 for the first plan, then one more per replan.
            replanning: for a replan, the replan prompt (results so far, why, where ids start).
        """
        if self._saver is not None:
            self._saver.round = round_index
        first_id = max(dispatcher.target.records, default=0) + 1
        messages = self._planner_messages(task, first_id, replanning)
        added: list[int] = []
        problems: list[PlanProblem] = []
        for attempt in range(self.config.max_repairs + 1):
            self._emit("planning", round_index, f"attempt {attempt + 1}")
            reply = dispatcher.reply(round_index=round_index, first_id=first_id, max_nodes=self.config.max_nodes)
            parser = self.reader.parser()
            text, cut_off = await self._stream(messages, reply, parser)
            if self.store is not None:
                self.store.save_plan(round_index, attempt + 1, text)
            added += reply.added
            self._note_reply(reply)
            if reply.repeated_round is not None:
                return _Planned(len(added), [], reply.repeated_round)
            problems = [*parser.problems, *reply.problems]
            stopped = reply.stopped or cut_off
            if stopped:
                if added:
                    dropped = f"; dropped {reply.dropped} repeat(s)" if reply.dropped else ""
                    self._note(f"round {round_index}: {stopped}{dropped}; ran the complete nodes")
                else:
                    problems.append(PlanProblem(None, "malformed", f"{stopped}; write a shorter plan"))
            if not problems:
                self._emit("planned", round_index, f"{len(added)} node(s)")
                if attempt:
                    self._note(f"round {round_index}: plan repaired after {attempt} attempt(s)")
                return _Planned(len(added), [])
            self._emit("plan_invalid", round_index, "; ".join(str(problem) for problem in problems[:5]))
            if attempt < self.config.max_repairs:
                kept = f"Nodes {', '.join(map(str, added))} are valid and already running." if added else ""
                problem_lines = "\n".join(f"- {problem}" for problem in problems)
                messages = [
                    *messages,
                    Message("assistant", text),
                    Message("user", fill(self.template.repair, problems=problem_lines, kept=kept)),
                ]
        what = f"ran the {len(added)} valid node(s)" if added else "no valid node"
        self._note(f"round {round_index}: the plan was still invalid after {self.config.max_repairs} repair(s); {what}")
        self._emit("fallback", round_index, what)
        return _Planned(len(added), problems)

    async def _stream(self, messages: Sequence[Message], reply: Reply, parser: PlanParser) -> tuple[str, str | None]:
        """Stream one planner reply into `reply`; return its text, and why it was cut off (or None)."""
        request = ModelRequest(messages=tuple(messages), settings=self._planner_settings())
        parts: list[str] = []
        response: ModelResponse | None = None
        async with aclosing(self._planner_stream(request)) as stream:
            async for item in stream:
                if isinstance(item, ModelResponse):
                    response = item
                    continue
                parts.append(item)
                for node in parser.feed(item):
                    reply.offer(node)
                if reply.stopped is not None:
                    break  # closing the stream stops the generation
        text = "".join(parts)
        if reply.stopped is None:
            for node in parser.finish():
                reply.offer(node)
        reply.close()
        if response is None:
            # Stopped early: the backend never sent its totals, so count what was generated, once.
            prompt_tokens, completion_tokens = estimate_prompt_tokens(messages), estimate_tokens(text)
            usage = Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        else:
            usage = response.usage
        self.meter.add("planner", usage)
        length = response is not None and response.completions[0].finish_reason == "length"
        cut_off = "the plan was cut off at the token limit" if length or parser.truncated else None
        return text, cut_off

    async def _planner_stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """The planner model's stream, with strategies below it reading replies as plans.

        The plan reading is set only while the model works (each step of its stream), never while the
        planner dispatches nodes, so tool calls never see it.
        """
        reading = PlanReading(self.reader, self._task)
        async with aclosing(self.planner_model.stream(request)) as chunks:
            while True:
                with reading_plans(reading):
                    try:
                        item = await anext(chunks)
                    except StopAsyncIteration:
                        return
                yield item

    def _planner_settings(self) -> ModelSettings:
        json_style = self.template.style == "json"
        return ModelSettings(
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            json_schema=create_plan_schema(list(self.tools.values()), max_nodes=self.config.max_nodes)
            if json_style
            else None,
            stop=() if json_style else (END_OF_PLAN,),
        )

    def _note_reply(self, reply: Reply) -> None:
        """Say which repeated calls reused an earlier output and which ran again."""
        if reply.reused:
            pairs = ", ".join(f"node {item.node_id} → node {item.twin}" for item in reply.reused)
            self._note(f"{len(reply.reused)} planned node(s) repeated earlier calls; reused their outputs: {pairs}")
        for item in reply.rerun:
            record = reply.dispatcher.target.records.get(item.node_id)
            if record is None:
                continue
            tool = self.tools.get(record.node.tool)
            why = (
                f"{record.node.tool!r} may have side effects"
                if tool is None or not tool.policy.idempotent
                else "a side effect planned before it may have changed its result"
            )
            self._note(f"node {item.node_id} repeats node {item.twin}'s call and runs again: {why}")

    def _planner_messages(self, task: str, first_id: int, replanning: str | None) -> list[Message]:
        system = fill(self.template.system, tools=self._describe_tools(), first_id=first_id)
        messages = [Message("system", system)]
        for example in self.template.examples:
            if not set(example.tools) <= set(self.tools):
                continue
            messages.append(Message("user", fill(self.template.user, task=example.task)))
            messages.append(Message("assistant", example.plan.strip()))
        user = fill(self.template.user, task=task)
        if replanning is not None:
            user += "\n" + replanning
        messages.append(Message("user", user))
        return messages

    def _describe_tools(self) -> str:
        lines = []
        for tool in self.tools.values():
            properties = tool.input_schema.get("properties", {})
            required = set(tool.input_schema.get("required", []))
            arguments = ", ".join(
                f"{name}: {item.get('type', 'any')}{'' if name in required else ' (optional)'}"
                for name, item in properties.items()
            )
            lines.append(
                f"- {tool.name}({arguments}): {tool.description.strip().splitlines()[0] if tool.description else ''}"
            )
        return "\n".join(lines)

    # -- executing and refining -------------------------------------------------------------------

    async def _execute(self, dispatcher: Dispatcher, execution: Execution, task: str, round_index: int) -> None:
        """Wait for the graph to finish; with `refine`, let the planner adjust it as nodes finish."""
        if not self.config.refine:
            await execution.wait()
            return
        while _pending(execution):
            await self._node_ended.wait()
            self._node_ended = anyio.Event()
            if _pending(execution) and self._refinements < self.config.max_refinements:
                await self._refine(dispatcher, execution, task, round_index)
            elif _pending(execution):
                await execution.wait()

    async def _refine(self, dispatcher: Dispatcher, execution: Execution, task: str, round_index: int) -> None:
        self._refinements += 1
        first_id = max(execution.records, default=0) + 1
        pending = "\n".join(
            f"[{record.id}] {record.node.tool}({_compact(record.node.arguments)}) - {record.status}"
            for record in execution.records.values()
            if record.status in ("queued", "running")
        )
        prompt = fill(
            self.template.refine,
            task=task,
            observations=self._observations(execution, only_finished=True),
            pending=pending,
            first_id=first_id,
        )
        schema = create_refine_schema(list(self.tools.values()), max_nodes=self.config.max_nodes)
        request = ModelRequest(
            messages=(Message("user", prompt),),
            settings=ModelSettings(json_schema=schema, max_tokens=self.config.max_tokens, temperature=0.0),
        )
        response = await self._request("planner", self.planner_model, request)
        change = parse_refinement(response.text)
        if change is None:
            self._note(f"refinement {self._refinements}: the reply was not a change; ignored it")
            return
        cancelled = [
            node_id
            for node_id in change.cancel
            if node_id in execution.records and execution.cancel(node_id, "cancelled by refinement")
        ]
        reply = dispatcher.reply(round_index=round_index, first_id=first_id, max_nodes=self.config.max_nodes)
        invalid = 0
        for raw in change.add:
            node = node_from_mapping(raw, first_id)
            if isinstance(node, PlanProblem):
                invalid += 1
            else:
                reply.offer(node)
        reply.close()
        self._note_reply(reply)
        invalid += len(reply.problems)
        if cancelled or reply.added or invalid:
            self._note(
                f"refinement {self._refinements}: added {reply.added or 'nothing'}, cancelled {cancelled or 'nothing'}"
                + (f", dropped {invalid} invalid node(s)" if invalid else "")
            )
            self._emit("planned", round_index, f"refinement added {len(reply.added)}, cancelled {len(cancelled)}")

    def _watch(self, event: NodeEvent) -> None:
        if event.kind in ("finished", "failed", "skipped", "cancelled"):
            self._node_ended.set()

    # -- joining ------------------------------------------------------------------------------------

    async def _join(self, task: str, execution: Execution, round_index: int) -> Decision | None:
        """The joiner's decision; a reply that is none is sent back once with the reason. None if twice."""
        self._emit("joining", round_index)
        prompt = fill(self.template.joiner, task=task, observations=self._observations(execution))
        messages = [Message("user", prompt)]
        settings = ModelSettings(json_schema=JOINER_SCHEMA, max_tokens=512, temperature=self.config.temperature)
        for attempt in range(2):
            request = ModelRequest(messages=tuple(messages), settings=settings)
            response = await self._request("joiner", self.joiner_model, request)
            decision = parse_decision(response.text)
            if decision is not None:
                return decision
            what = "empty" if not response.text.strip() else f"{len(response.text)} characters, no decision in them"
            self._note(f"round {round_index}: the joiner's reply {attempt + 1} was not a decision ({what})")
            messages = [
                *messages,
                Message("assistant", response.text),
                Message("user", fill(self.template.joiner_retry, error=f"the reply was not a decision ({what})")),
            ]
        return None

    async def _answer_directly(self, task: str) -> str:
        self._note("no valid plan: answered directly without tools")
        request = ModelRequest(
            messages=(Message("user", fill(self.template.direct, task=task)),),
            settings=ModelSettings(max_tokens=256, temperature=self.config.temperature),
        )
        response = await self._request("joiner", self.joiner_model, request)
        return response.text.strip()

    async def _request(self, role: Role, model: Model, request: ModelRequest) -> ModelResponse:
        """One model call for `role`, counted on the run's meter (planner calls read replies as plans)."""
        if role == "planner":
            with reading_plans(PlanReading(self.reader, self._task)):
                response = await model.request(request)
        else:
            response = await model.request(request)
        self.meter.add(role, response.usage)
        return response

    def _observations(self, execution: Execution, *, only_finished: bool = False) -> str:
        lines = [
            self._observe(record)
            for record in execution.records.values()
            if not only_finished or record.status not in ("queued", "running")
        ]
        return "\n".join(lines) if lines else "(no tool was called)"

    def _observe(self, record: NodeRecord) -> str:
        call = f"[{record.id}] {record.node.tool}({_compact(record.arguments or record.node.arguments)})"
        if record.status == "done":
            return f"{call} -> {_truncate(_compact(record.output), self.config.observation_chars)}"
        reason = record.error.message if record.error is not None else record.status
        return f"{call} -> {record.status.upper()}: {_truncate(reason, self.config.observation_chars)}"

    # -- bookkeeping --------------------------------------------------------------------------------

    def _note(self, note: str) -> None:
        self.notes.append(note)
        if self.store is not None:
            self.store.save_note(note)

    def _save_usage(self, role: Role, usage: Usage) -> None:
        del usage
        if self.store is not None:  # each report at once: a run killed later still counts it on resume
            self.store.save_usage({role: self.meter.usage[role]})

    # -- resuming -----------------------------------------------------------------------------------

    def _load_saved(self, task: str) -> SavedRun | None:
        """The store's earlier progress on this task, with replans and notes taken over."""
        if self.store is None:
            return None
        saved = self.store.load_unfinished(task)
        self.replans = list(saved.replans)
        self.notes = list(saved.notes)
        return saved

    def _restore(self, execution: Execution, saved: SavedRun) -> None:
        """Put finished nodes back as they were and add the others to run again."""
        assert self._saver is not None, "only a run with a store has saved nodes"
        self._saver.round = saved.round
        kept = self._saver.restore(execution, saved)
        self._note(f"resumed: restored {kept} finished node(s), running {len(saved.nodes) - kept} again")

    def _emit(self, kind: RunEventKind, round_index: int = 0, detail: str = "") -> None:
        if not self.on_event:
            return
        event = RunEvent(kind, time.perf_counter() - self._started, round_index, detail)
        for sink in self.on_event:
            sink(event)


@dataclass(frozen=True, slots=True)
class _Planned:
    """What one round of planning did.

    Nodes added, problems left after the last repair, and the round whose plan it repeated exactly (then
    nothing of it ran).
    """

    added: int
    problems: list[PlanProblem]
    repeated: int | None = None


def _pending(execution: Execution) -> bool:
    return any(record.status in ("queued", "running") for record in execution.records.values())


def _compact(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]} … ({len(text) - limit} characters omitted) … {text[-tail:]}"


def _first_dispatch(records: Iterable[NodeRecord], started: float, execution: Execution) -> float | None:
    """Seconds from the run's start to the first node's start."""
    starts = [record.started_at for record in records if record.started_at is not None]
    if not starts:
        return None
    return execution.opened - started + min(starts)
