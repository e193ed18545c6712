"""The compiler loop: plan (streamed into the executor), join, and replan.

One `Execution` stays open for the whole run, so node ids are global across rounds, finished nodes are
never run again, and a replanned node can reference any earlier output.

* **Streaming dispatch.** The planner's reply is parsed as it streams; each complete, valid node goes to
  the executor at once.
* **Validate and repair.** Invalid nodes are held back and the exact problem list goes back to the model,
  up to `max_repairs` times. Then the fallback: run the valid part (`partial`), or answer without tools
  (`direct`). The result's `notes` say what happened.
* **Join and replan.** After the graph finishes, the joiner returns `finish` with the answer or `replan`
  with a reason. Replanning stops at `max_replans`, at the token budget and at the time budget.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agentdag.errors import ModelError
from agentdag.events import EventSink, NodeEvent, RunEvent, RunEventKind, RunEventSink
from agentdag.executor import Execution, Executor, NodeRecord
from agentdag.messages import Completion, Message, ModelRequest, ModelResponse, ModelSettings, Usage
from agentdag.models.base import Model
from agentdag.models.function import count_prompt_tokens, count_tokens
from agentdag.parsers import END_OF_PLAN, JsonPlanParser, LLMCompilerPlanParser, PlanParser, node_from_mapping
from agentdag.plan import Node, PlanProblem, check_node, validate_plan
from agentdag.references import rename_references
from agentdag.result import Replan, RunResult, RunStatus
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
from agentdag.toolsets.model import model_tool_usage

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
        max_nodes: the most nodes one plan may hold (enforced by the JSON schema).
        temperature: sampling temperature of planner and joiner calls.
        observation_chars: tool outputs shown to the joiner and to replans are cut to this many characters.
        max_total_tokens: token budget of the run (planner, joiner and model tools); no replan past it.
        max_seconds: time budget of the run; when it runs out, running nodes are cancelled.
        refine: mid-run refinement: whenever a node finishes while others are pending, the planner may
            add nodes or cancel pending ones without waiting for the rest of the graph.
        max_refinements: the most refinement calls per run.
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
        self.on_event = list(on_event)
        self.usage: dict[str, Usage] = {"planner": Usage(), "joiner": Usage()}
        self.notes: list[str] = []
        self.replans: list[Replan] = []
        self._aliases: dict[int, int] = {}
        self._node_ended = anyio.Event()
        self._refinements = 0
        self._started = 0.0
        self._tool_usage_before = model_tool_usage(self.tools.values())
        self._tool_usage_restored = Usage()
        self._saved_tool_usage = Usage()
        self._saver = NodeSaver(store) if store is not None else None

    async def run(self, task: str) -> RunResult:
        """Plan, execute, join and replan until the joiner finishes or a limit stops the run."""
        self._started = time.perf_counter()
        saved = self._load_saved(task)
        status: RunStatus = "failed"
        answer: Any = None
        error: str | None = None
        sinks: list[EventSink] = [self._watch] if self._saver is None else [self._watch, self._saver]
        async with self.executor.open(on_event=sinks) as execution:
            if self._saver is not None:
                self._saver.execution = execution
            deadline = math.inf if self.config.max_seconds is None else self.config.max_seconds
            with anyio.move_on_after(deadline) as budget:
                try:
                    answer, error = await self._loop(execution, task, saved)
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
            usage={**self.usage, "tools": self._tool_usage()},
            wall_s=time.perf_counter() - self._started,
            error=error,
            replans=tuple(self.replans),
            notes=tuple(self.notes),
            first_dispatch_s=_first_dispatch(execution.records.values(), self._started, execution),
        )
        if self.store is not None:
            self.store.save_result(result)
        return result

    async def draft(self, task: str) -> tuple[list[Node], list[PlanProblem]]:
        """Ask the planner for a plan and validate it, repairing as `run` does, but run nothing.

        Returns the nodes of the last attempt and its problems (empty when the plan is valid).
        """
        messages = self._planner_messages(task, 1, None, None)
        nodes: list[Node] = []
        problems: list[PlanProblem] = []
        for attempt in range(self.config.max_repairs + 1):
            request = ModelRequest(messages=tuple(messages), settings=self._planner_settings())
            response = await self.planner_model.request(request)
            self._count("planner", response.usage)
            parser = self._create_parser()
            nodes = [*parser.feed(response.text), *parser.finish()]
            problems = [*parser.problems, *validate_plan(nodes, self.tools)]
            if parser.truncated or response.completions[0].finish_reason == "length":
                problems.append(PlanProblem(0, "malformed", "the plan was cut off at the token limit"))
            if not problems or attempt == self.config.max_repairs:
                break
            problem_lines = "\n".join(f"- {problem}" for problem in problems)
            messages = [
                *messages,
                Message("assistant", response.text),
                Message("user", fill(self.template.repair, problems=problem_lines, kept="")),
            ]
        return nodes, problems

    async def _loop(self, execution: Execution, task: str, saved: SavedRun | None) -> tuple[Any, str | None]:
        if saved is not None and saved.started:
            round_index = saved.round
            self._restore(execution, saved)
        else:
            round_index = 0
            added = await self._plan(execution, task, round_index=round_index)
            if not added and not execution.records and self.config.fallback == "direct":
                return await self._answer_directly(task), None
        while True:
            await self._execute(execution, task, round_index)
            decision = await self._join(task, execution, round_index)
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
            added = await self._plan(execution, task, round_index=round_index, reason=decision.reason)
            replan = Replan(round=round_index, reason=decision.reason, nodes_added=added)
            self.replans.append(replan)
            if self.store is not None:
                self.store.save_replan(replan)
            if added == 0:
                self._note(f"replan {round_index} added no nodes; answered with the joiner's best answer")
                return decision.answer, None

    def _replan_limit(self) -> str | None:
        if len(self.replans) >= self.config.max_replans:
            return f"max_replans ({self.config.max_replans}) reached"
        budget = self.config.max_total_tokens
        spent = sum(usage.total_tokens for usage in self.usage.values()) + self._tool_usage().total_tokens
        if budget is not None and spent >= budget:
            return f"token budget ({budget}) spent ({spent} tokens)"
        return None

    # -- planning ---------------------------------------------------------------------------------

    async def _plan(self, execution: Execution, task: str, *, round_index: int, reason: str | None = None) -> int:
        """Stream a plan into the execution, repairing it as needed; return how many nodes were added."""
        if self._saver is not None:
            self._saver.round = round_index
        first_id = max(execution.records, default=0) + 1
        messages = self._planner_messages(task, first_id, execution, reason)
        added: list[int] = []
        for attempt in range(self.config.max_repairs + 1):
            self._emit("planning", round_index, f"attempt {attempt + 1}")
            state = _Attempt(
                parser=self._create_parser(),
                first_id=first_id,
                added=added,
            )
            text = await self._stream(messages, state, execution)
            if self.store is not None:
                self.store.save_plan(round_index, attempt + 1, text)
            problems = [*state.parser.problems, *state.held]
            if state.truncated:
                if added:
                    self._note(f"round {round_index}: {state.truncated}; ran the complete nodes")
                else:
                    problems.append(PlanProblem(0, "malformed", f"{state.truncated}; write a shorter plan"))
            if not problems:
                self._emit("planned", round_index, f"{len(added)} node(s)")
                if attempt:
                    self._note(f"round {round_index}: plan repaired after {attempt} attempt(s)")
                return len(added)
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
        return len(added)

    async def _stream(self, messages: Sequence[Message], state: _Attempt, execution: Execution) -> str:
        """Stream one planner reply, dispatching nodes as they complete; return the reply's text."""
        request = ModelRequest(messages=tuple(messages), settings=self._planner_settings())
        parts: list[str] = []
        response: ModelResponse | None = None
        async with aclosing(self.planner_model.stream(request)) as stream:
            async for item in stream:
                if isinstance(item, ModelResponse):
                    response = item
                    continue
                parts.append(item)
                for node in state.parser.feed(item):
                    self._offer(execution, node, state)
                if state.repeats >= _MAX_REPEATS:
                    state.truncated = (
                        f"the planner repeated earlier nodes {state.repeats} times in a row; stopped reading"
                    )
                    break  # closing the stream stops the generation
        text = "".join(parts)
        for node in state.parser.finish():
            self._offer(execution, node, state)
        if response is None:
            # Stopped early: the backend never sent its totals, so count what was generated.
            response = ModelResponse(
                completions=(Completion(text=text, finish_reason="length"),),
                usage=Usage(
                    calls=1,
                    prompt_tokens=count_prompt_tokens(messages),
                    completion_tokens=count_tokens(text),
                ),
                model=self.planner_model.name,
            )
        elif (response.completions and response.completions[0].finish_reason == "length") or state.parser.truncated:
            state.truncated = state.truncated or "the plan was cut off at the token limit"
        self._count("planner", response.usage)
        if state.repeats_total:
            self._note(f"{state.repeats_total} planned node(s) repeated earlier calls; reused their outputs")
        return text

    def _create_parser(self) -> PlanParser:
        return JsonPlanParser() if self.template.style == "json" else LLMCompilerPlanParser(self.tools)

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

    def _offer(self, execution: Execution, node: Node, state: _Attempt) -> None:
        """Dispatch a streamed node if it is valid; otherwise hold its problems for the repair request."""
        node = self._apply_aliases(node)
        existing = execution.records.get(node.id)
        if existing is not None:
            if _same_call(existing.node, node):
                return  # a repaired plan or a replan lists a node that already exists
            state.held.append(
                PlanProblem(node.id, "duplicate_id", f"id {node.id} is taken; number new nodes from {state.first_id}")
            )
            return
        twin = _twin(execution, node)
        if twin is not None:
            # The same call again under a new id: reuse the first call's output instead of running it twice.
            self._aliases[node.id] = twin
            state.repeats += 1
            state.repeats_total += 1
            return
        state.repeats = 0
        problems = check_node(node, self.tools, execution.records)
        if problems:
            state.held.extend(problems)
            return
        execution.add(node, check=False)
        state.added.append(node.id)

    def _apply_aliases(self, node: Node) -> Node:
        if not self._aliases:
            return node
        return node.model_copy(
            update={
                "arguments": rename_references(node.arguments, self._aliases),
                "depends_on": tuple(self._aliases.get(item, item) for item in node.depends_on),
            }
        )

    def _planner_messages(
        self, task: str, first_id: int, execution: Execution | None, reason: str | None
    ) -> list[Message]:
        system = fill(self.template.system, tools=self._describe_tools(), first_id=first_id)
        messages = [Message("system", system)]
        for example in self.template.examples:
            if not set(example.tools) <= set(self.tools):
                continue
            messages.append(Message("user", fill(self.template.user, task=example.task)))
            messages.append(Message("assistant", example.plan.strip()))
        user = fill(self.template.user, task=task)
        if reason is not None and execution is not None:
            observations = self._observations(execution)
            user += "\n" + fill(self.template.replan, observations=observations, reason=reason, first_id=first_id)
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

    async def _execute(self, execution: Execution, task: str, round_index: int) -> None:
        """Wait for the graph to finish; with `refine`, let the planner adjust it as nodes finish."""
        if not self.config.refine:
            await execution.wait()
            return
        while _pending(execution):
            await self._node_ended.wait()
            self._node_ended = anyio.Event()
            if _pending(execution) and self._refinements < self.config.max_refinements:
                await self._refine(execution, task, round_index)
            elif _pending(execution):
                await execution.wait()

    async def _refine(self, execution: Execution, task: str, round_index: int) -> None:
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
        response = await self.planner_model.request(request)
        self._count("planner", response.usage)
        change = parse_refinement(response.text)
        if change is None:
            self._note(f"refinement {self._refinements}: the reply was not a change; ignored it")
            return
        cancelled = [
            node_id
            for node_id in change.cancel
            if node_id in execution.records and execution.cancel(node_id, "cancelled by refinement")
        ]
        state = _Attempt(parser=JsonPlanParser(), first_id=first_id, added=[])
        for raw in change.add:
            node = node_from_mapping(raw, first_id)
            if isinstance(node, PlanProblem):
                state.held.append(node)
            else:
                self._offer(execution, node, state)
        if cancelled or state.added or state.held:
            self._note(
                f"refinement {self._refinements}: added {state.added or 'nothing'}, cancelled {cancelled or 'nothing'}"
                + (f", dropped {len(state.held)} invalid node(s)" if state.held else "")
            )
            self._emit("planned", round_index, f"refinement added {len(state.added)}, cancelled {len(cancelled)}")

    def _watch(self, event: NodeEvent) -> None:
        if event.kind in ("finished", "failed", "skipped", "cancelled"):
            self._node_ended.set()
            if self.store is not None and event.kind in ("finished", "failed"):
                usage = self._tool_usage()
                if usage != self._saved_tool_usage:  # the `llm` tool spent tokens: a resumed run counts them
                    self._saved_tool_usage = usage
                    self.store.save_usage({"tools": usage})

    # -- joining ------------------------------------------------------------------------------------

    async def _join(self, task: str, execution: Execution, round_index: int) -> Decision:
        self._emit("joining", round_index)
        prompt = fill(self.template.joiner, task=task, observations=self._observations(execution))
        request = ModelRequest(
            messages=(Message("user", prompt),),
            settings=ModelSettings(json_schema=JOINER_SCHEMA, max_tokens=512, temperature=self.config.temperature),
        )
        response = await self.joiner_model.request(request)
        self._count("joiner", response.usage)
        decision = parse_decision(response.text)
        if decision is None:
            self._note(f"round {round_index}: the joiner's reply was not a decision; used it as the answer")
            return Decision("finish", response.text.strip())
        return decision

    async def _answer_directly(self, task: str) -> str:
        self._note("no valid plan: answered directly without tools")
        request = ModelRequest(
            messages=(Message("user", fill(self.template.direct, task=task)),),
            settings=ModelSettings(max_tokens=256, temperature=self.config.temperature),
        )
        response = await self.joiner_model.request(request)
        self._count("joiner", response.usage)
        return response.text.strip()

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

    def _count(self, role: str, usage: Usage) -> None:
        self.usage[role] = self.usage[role] + usage
        if self.store is not None:
            self.store.save_usage({role: self.usage[role]})

    def _note(self, note: str) -> None:
        self.notes.append(note)
        if self.store is not None:
            self.store.save_note(note)

    def _tool_usage(self) -> Usage:
        return self._tool_usage_restored + model_tool_usage(self.tools.values()) - self._tool_usage_before

    # -- resuming -----------------------------------------------------------------------------------

    def _load_saved(self, task: str) -> SavedRun | None:
        """The store's earlier progress on this task, with usage, replans and notes taken over."""
        if self.store is None:
            return None
        saved = self.store.load_unfinished(task)
        self.usage = {role: saved.usage.get(role, Usage()) for role in ("planner", "joiner")}
        self._tool_usage_restored = self._saved_tool_usage = saved.usage.get("tools", Usage())
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


_MAX_REPEATS = 3


@dataclass(slots=True)
class _Attempt:
    """The state of one planner reply while it streams in."""

    parser: PlanParser
    first_id: int
    added: list[int]
    held: list[PlanProblem] = field(default_factory=list)
    repeats: int = 0
    repeats_total: int = 0
    truncated: str | None = None


def _pending(execution: Execution) -> bool:
    return any(record.status in ("queued", "running") for record in execution.records.values())


def _twin(execution: Execution, node: Node) -> int | None:
    """An existing node, not failed, that makes the same call."""
    for record in execution.records.values():
        if record.status in ("queued", "running", "done") and _same_call(record.node, node):
            return record.id
    return None


def _same_call(left: Node, right: Node) -> bool:
    return left.tool == right.tool and _compact(left.arguments) == _compact(right.arguments)


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
