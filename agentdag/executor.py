"""The event-driven parallel executor.

Every node starts the moment its last dependency finishes: finishing a node decrements a counter on each
dependent and starts the ones that reach zero. Nothing polls. Nodes may keep arriving while the
execution runs, which is how a streaming planner hands them over.

A node's failure is data: the node is recorded as failed, every node downstream is skipped with the
cause, and the rest of the graph runs on. Each node runs in its own cancel scope with its own deadline.
The scheduling state (counters, dependents, cancel scopes) stays inside; what users read are `NodeRecord`
snapshots.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from agentdag.backends.base import Backend, LocalBackend, NodeCall
from agentdag.config import Limits
from agentdag.errors import AgentdagError, InvalidReferenceError, PlanError, ToolArgumentsError
from agentdag.events import EventSink, NodeError, NodeEvent, NodeEventKind
from agentdag.plan import Node, PlanProblem, check_node, dependencies_of, validate_plan
from agentdag.records import FINAL_STATUSES, ExecutionResult, NodeRecord, NodeStatus
from agentdag.scheduling import Records, Slot
from agentdag.toolsets.base import JsonValue, Tool

__all__ = ["Execution", "Executor"]


class Executor:
    """Runs plan nodes against tools, in parallel, as soon as each node's inputs exist.

    Args:
        tools: the tools nodes may call, by name.
        limits: the global and per-tool concurrency caps and the default deadline of one attempt.
        on_event: callbacks that receive every `NodeEvent`.
        backend: where ready nodes run (default: `LocalBackend`, this event loop). Its lifecycle is
            the caller's: open it before the executor runs and close it after.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool],
        *,
        limits: Limits | None = None,
        on_event: Sequence[EventSink] = (),
        backend: Backend | None = None,
    ) -> None:
        self.tools = tools
        self.limits = limits or Limits()
        self.on_event = list(on_event)
        self.backend = backend if backend is not None else LocalBackend()

    @asynccontextmanager
    async def open(self, *, on_event: Sequence[EventSink] = ()) -> AsyncIterator[Execution]:
        """Open an execution: add nodes to it; leaving the block waits for every node to finish.

        If the block raises or is cancelled, running nodes are cancelled and unfinished nodes are
        recorded as cancelled before the exception propagates.

        Args:
            on_event: callbacks for this execution only, after the executor's own.
        """
        execution: Execution | None = None
        try:
            async with anyio.create_task_group() as task_group:
                execution = Execution(self, task_group, on_event=on_event)
                try:
                    yield execution
                except BaseException:
                    task_group.cancel_scope.cancel()
                    raise
                finally:
                    execution.accepting = False
        except BaseExceptionGroup as group:
            # Node tasks never raise (failures are data), so the group holds what the block raised:
            # callers see that exception itself, not a group around it.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            if execution is not None:
                execution.settle()

    async def run(self, nodes: Iterable[Node]) -> ExecutionResult:
        """Validate a whole plan, run it, and return every node's record.

        Raises:
            PlanError: the plan is invalid; nothing has run.
        """
        listed = list(nodes)
        problems = validate_plan(listed, self.tools)
        if problems:
            raise PlanError(list(problems))
        async with self.open() as execution:
            for node in listed:
                execution.submit(node, check=False)
        return execution.result()


class Execution:
    """One open execution; created by `Executor.open`. Use it from the event loop's thread only.

    Attributes:
        opened: `time.perf_counter()` when the execution opened; record times are relative to it.
    """

    def __init__(self, executor: Executor, task_group: TaskGroup, *, on_event: Sequence[EventSink] = ()) -> None:
        self.executor = executor
        self._sinks = [*executor.on_event, *on_event]
        self.accepting = True
        self._task_group = task_group
        self._slots: dict[int, Slot] = {}
        self._records = Records(self._slots)
        self.opened = time.perf_counter()
        self._unfinished = 0
        self._idle = anyio.Event()
        self._idle.set()
        limits = executor.limits
        self._global_limit = (
            anyio.CapacityLimiter(limits.max_concurrency) if limits.max_concurrency is not None else None
        )
        self._tool_limits: dict[str, anyio.CapacityLimiter | None] = {}

    @property
    def records(self) -> Mapping[int, NodeRecord]:
        """Every node's record so far, by id (each a snapshot of that moment)."""
        return self._records

    def subscribe(self, sink: EventSink) -> None:
        """Send every later event of this execution to `sink` too."""
        self._sinks.append(sink)

    def now(self) -> float:
        """Seconds since the execution opened."""
        return time.perf_counter() - self.opened

    def add(self, node: Node, *, check: bool = True) -> NodeRecord:
        """Add a node as `submit` does (and raise as it does); return its record right after it was added."""
        self.submit(node, check=check)
        return self._slots[node.id].record()

    def submit(self, node: Node, *, check: bool = True) -> None:
        """Add a node; it starts at once if its dependencies have all finished.

        A node whose dependency already failed is recorded as skipped straight away. It returns nothing, so
        placing a node makes no record snapshot (the planner and fixed plans submit every node); `add` is
        `submit` with the record returned.

        Args:
            node: the node; every node it depends on must have been added before.
            check: validate the node (tool, arguments, references) first; pass False for nodes that
                were validated already.

        Raises:
            PlanError: the node is invalid, its id is taken, or it names a node not added yet.
            AgentdagError: the execution no longer accepts nodes.
        """
        if not self.accepting:
            raise AgentdagError("this execution has closed and accepts no more nodes")
        if check:
            problems = check_node(node, self.executor.tools, self._slots)
            if problems:
                raise PlanError(list(problems))
        slot = self._new_slot(node)
        self._unfinished += 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._emit("queued", slot)
        failed_dependency: Slot | None = None
        for dependency in slot.dependencies:
            upstream = self._slots[dependency]
            if upstream.status == "done":
                continue
            if upstream.status in FINAL_STATUSES:
                failed_dependency = upstream
                continue
            slot.waiting += 1
            upstream.dependents.append(slot)
        if failed_dependency is not None:
            self._skip(slot, failed_dependency)
        elif slot.waiting == 0:
            self._task_group.start_soon(self._run_node, slot)

    def restore(
        self,
        node: Node,
        *,
        status: Literal["done", "failed", "cancelled"],
        output: JsonValue = None,
        error: NodeError | None = None,
        arguments: dict[str, JsonValue] | None = None,
        attempts: int = 1,
    ) -> NodeRecord:
        """Add a node that ended in an earlier process (a resumed run): it is recorded, not run.

        Dependents added later see its output (or its failure or cancellation) as if it had just ended.
        No event is emitted for it.

        Raises:
            PlanError: its id is taken, or it depends on a node not added yet.
        """
        slot = self._new_slot(node)
        slot.status, slot.error, slot.arguments, slot.attempts = status, error, arguments, attempts
        slot.output = output if status == "done" else None
        slot.started_at = slot.finished_at = self.now()
        return slot.record()

    def cancel(self, node_id: int, reason: str = "cancelled") -> bool:
        """Cancel a queued or running node; its dependents are skipped. Returns False if it had finished."""
        slot = self._slots[node_id]
        if slot.status in FINAL_STATUSES:
            return False
        slot.cancel_reason = reason
        if slot.scope is not None:
            slot.scope.cancel()
        elif slot.status == "queued":
            # Not started, or waiting for a concurrency slot: finish it now; its task, if any, sees
            # the final status and returns.
            self._finish(slot, "cancelled", error=NodeError("cancelled", reason))
        return True

    def cancel_all(self, reason: str = "cancelled") -> None:
        """Cancel every unfinished node and close the execution."""
        self.accepting = False
        for slot in list(self._slots.values()):
            if slot.status not in FINAL_STATUSES:
                slot.interrupted = True
                slot.snapshot = None
                self.cancel(slot.node.id, reason)

    async def wait(self) -> None:
        """Wait until every node added so far has finished (nodes may still be added afterwards)."""
        while self._unfinished:
            await self._idle.wait()

    def result(self) -> ExecutionResult:
        """The records so far, and the time since the execution opened."""
        return ExecutionResult(records=dict(self._records), wall_s=self.now())

    def settle(self) -> None:
        """Record every unfinished node as cancelled (called when the execution closes)."""
        for slot in self._slots.values():
            if slot.status not in FINAL_STATUSES:
                slot.interrupted = True
                slot.status = "cancelled"
                slot.error = NodeError("cancelled", slot.cancel_reason or "the execution was cancelled")
                slot.finished_at = self.now()
                slot.snapshot = None
                self._emit("cancelled", slot)

    # -- running one node -------------------------------------------------------------------------

    def _new_slot(self, node: Node) -> Slot:
        if node.id in self._slots:
            raise PlanError([PlanProblem(node.id, "duplicate_id", f"id {node.id} is already in this execution")])
        dependencies = dependencies_of(node, self._slots)
        missing = sorted(dependency for dependency in dependencies if dependency not in self._slots)
        if missing:
            message = "depends on node {}, not added yet"
            raise PlanError([PlanProblem(node.id, "missing_reference", message.format(item)) for item in missing])
        slot = Slot(node=node, dependencies=dependencies, queued_at=self.now())
        self._slots[node.id] = slot
        return slot

    def _tool_limit(self, tool: Tool) -> anyio.CapacityLimiter | None:
        try:
            return self._tool_limits[tool.name]
        except KeyError:
            cap = self.executor.limits.tool_concurrency.get(tool.name, tool.policy.max_concurrency)
            limit = anyio.CapacityLimiter(cap) if cap is not None else None
            self._tool_limits[tool.name] = limit
            return limit

    async def _run_node(self, slot: Slot) -> None:
        # A task that finishes a node goes on with one of the dependents it made ready and starts
        # tasks only for the others: chains run in one task, and a DAG spawns far fewer tasks.
        next_slot: Slot | None = slot
        while next_slot is not None:
            ready = await self._run_limited(next_slot)
            for other in ready[1:]:
                self._task_group.start_soon(self._run_node, other)
            next_slot = ready[0] if ready else None

    async def _run_limited(self, slot: Slot) -> list[Slot]:
        tool = self.executor.tools[slot.node.tool]
        limits = [limit for limit in (self._global_limit, self._tool_limit(tool)) if limit is not None]
        if not limits:
            return await self._call(slot, tool)
        async with AsyncExitStack() as stack:
            for limit in limits:
                await stack.enter_async_context(limit)
            return await self._call(slot, tool)

    async def _call(self, slot: Slot, tool: Tool) -> list[Slot]:
        if slot.status in FINAL_STATUSES:  # cancelled while it waited for a concurrency slot
            return []
        slot.status, slot.started_at, slot.attempts, slot.snapshot = "running", self.now(), 1, None
        self._emit("running", slot)
        inputs = {dependency: self._slots[dependency].output for dependency in slot.dependencies}
        try:
            slot.arguments, slot.snapshot = self.executor.backend.prepare(slot.node, inputs), None
        except InvalidReferenceError as error:
            return self._finish(slot, "failed", error=NodeError("invalid_reference", str(error)))
        policy = tool.policy
        timeout = policy.timeout_s if policy.timeout_s is not None else self.executor.limits.timeout_s
        attempts = policy.retries + 1
        for attempt in range(1, attempts + 1):
            slot.attempts, slot.snapshot = attempt, None
            # One cancel scope per attempt carries both the deadline and `cancel()`.
            with anyio.CancelScope(deadline=math.inf if timeout is None else anyio.current_time() + timeout) as scope:
                slot.scope = scope
                if attempt > 1:
                    await anyio.sleep(policy.backoff_s * 2 ** (attempt - 2))
                    if timeout is not None:
                        scope.deadline = anyio.current_time() + timeout
                call = NodeCall(node=slot.node, tool=tool, inputs=inputs, arguments=slot.arguments, attempt=attempt)
                failure = await self._attempt(slot, call)
            slot.scope = None
            if slot.cancel_reason is not None:
                return self._finish(slot, "cancelled", error=NodeError("cancelled", slot.cancel_reason))
            if scope.cancelled_caught:
                failure = NodeError("timeout", f"tool {tool.name!r} did not finish within {timeout:g} s")
            if failure is None:
                return self._finish(slot, "done")
            if attempt == attempts or failure.kind in ("invalid_arguments", "invalid_reference"):
                return self._finish(slot, "failed", error=failure)
            self._emit("retrying", slot, error=failure)
        raise AssertionError("unreachable: the last attempt always finishes the node")

    async def _attempt(self, slot: Slot, call: NodeCall) -> NodeError | None:
        try:
            slot.output = await self.executor.backend.call(call)
        except ToolArgumentsError as error:
            return NodeError("invalid_arguments", str(error))
        except InvalidReferenceError as error:
            return NodeError("invalid_reference", str(error))
        except (Exception, SystemExit) as error:  # any tool failure becomes data on the node, sys.exit() too
            return NodeError("tool_error", _describe_failure(error))
        return None

    # -- state changes ------------------------------------------------------------------------------

    def _finish(self, slot: Slot, status: NodeStatus, *, error: NodeError | None = None) -> list[Slot]:
        """Record the node's end; return the dependents that became ready (only when it is done)."""
        slot.status, slot.error, slot.finished_at, slot.snapshot = status, error, self.now(), None
        self._emit(status, slot, error=error)
        self._unfinished -= 1
        if self._unfinished == 0:
            self._idle.set()
        dependents, slot.dependents = slot.dependents, []
        ready: list[Slot] = []
        for dependent in dependents:
            if dependent.status in FINAL_STATUSES:
                continue
            if status == "done":
                dependent.waiting -= 1
                if dependent.waiting == 0:
                    ready.append(dependent)
            else:
                self._skip(dependent, slot)
        return ready

    def _skip(self, slot: Slot, upstream: Slot) -> None:
        cause = upstream.error.cause if upstream.error and upstream.error.cause is not None else upstream.node.id
        what = "was skipped" if upstream.status == "skipped" else upstream.status
        message = f"node {upstream.node.id} {what}"
        if upstream.error is not None and upstream.status != "skipped":
            message += f": {upstream.error.message}"
        self._finish(slot, "skipped", error=NodeError("dependency_failed", message, cause=cause))

    def _emit(self, kind: NodeEventKind, slot: Slot, *, error: NodeError | None = None) -> None:
        sinks = self._sinks
        if not sinks:
            return
        duration = None
        if kind in ("done", "failed", "cancelled") and slot.started_at is not None and slot.finished_at is not None:
            duration = slot.finished_at - slot.started_at
        event = NodeEvent(kind, slot.node.id, slot.node.tool, self.now(), slot.attempts, duration, error)
        for sink in sinks:
            sink(event)


def _describe_failure(error: BaseException) -> str:
    """`Type: message`, or just the type when the message is empty or cannot even be rendered."""
    try:
        message = str(error)
    except Exception:  # a tool's exception whose __str__ fails must not take the run down
        message = ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
