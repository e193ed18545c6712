"""The event-driven parallel executor.

Every node starts the moment its last dependency finishes: finishing a node decrements a counter on each
dependent and starts the ones that reach zero. Nothing polls. Nodes may keep arriving while the
execution runs, which is how a streaming planner hands them over.

A node's failure is data: the node is recorded as failed, every node downstream is skipped with the
cause, and the rest of the graph runs on. Each node runs in its own cancel scope with its own deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from agentdag.backends.base import Backend, LocalBackend, NodeCall
from agentdag.errors import AgentdagError, InvalidReferenceError, PlanError, ToolArgumentsError
from agentdag.events import EventSink, NodeError, NodeEvent, NodeEventKind
from agentdag.plan import Node, PlanProblem, check_node, dependencies_of, validate_plan
from agentdag.references import resolve_references
from agentdag.toolsets.base import JsonValue, Tool

__all__ = ["Execution", "ExecutionResult", "Executor", "NodeRecord", "NodeStatus"]

NodeStatus = Literal["queued", "running", "done", "failed", "skipped", "cancelled"]
_FINAL: frozenset[NodeStatus] = frozenset({"done", "failed", "skipped", "cancelled"})
_EVENT_OF: dict[NodeStatus, NodeEventKind] = {
    "done": "finished",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


@dataclass(slots=True, eq=False)
class NodeRecord:
    """What happened to one node. The executor updates it in place while the node runs.

    Attributes:
        arguments: the arguments after resolving references (None until the node starts).
        queued_at, started_at, finished_at: seconds since the execution opened.
        attempts: how many times the tool was called.
        interrupted: it was cancelled because the whole execution stopped (`cancel_all`, or the
            execution's block raised or was cancelled), not on its own.
    """

    node: Node
    dependencies: frozenset[int]
    status: NodeStatus = "queued"
    arguments: dict[str, JsonValue] | None = None
    output: JsonValue = None
    error: NodeError | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    waiting: int = 0
    dependents: list[NodeRecord] = field(default_factory=list)
    scope: anyio.CancelScope | None = None
    cancel_reason: str | None = None
    interrupted: bool = False

    @property
    def id(self) -> int:
        """The node's id."""
        return self.node.id

    @property
    def duration_s(self) -> float | None:
        """Time from start to finish, once the node has finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The records of every node of an execution, in the order the nodes arrived."""

    records: Mapping[int, NodeRecord]
    wall_s: float

    @property
    def succeeded(self) -> bool:
        """Whether every node finished with an output."""
        return all(record.status == "done" for record in self.records.values())

    @property
    def outputs(self) -> dict[int, JsonValue]:
        """Outputs of the nodes that finished."""
        return {node_id: record.output for node_id, record in self.records.items() if record.status == "done"}

    def with_status(self, *statuses: NodeStatus) -> list[NodeRecord]:
        """Records whose status is one of `statuses`."""
        return [record for record in self.records.values() if record.status in statuses]


class Executor:
    """Runs plan nodes against tools, in parallel, as soon as each node's inputs exist.

    Args:
        tools: the tools nodes may call, by name.
        max_concurrency: at most this many nodes run at once (None: no global cap).
        tool_concurrency: per-tool caps that override each tool's own `policy.max_concurrency`.
        timeout_s: deadline of one attempt for tools whose policy sets none (None: no deadline).
        on_event: callbacks that receive every `NodeEvent`.
        backend: where ready nodes run (default: `LocalBackend`, this event loop). Its lifecycle is
            the caller's: open it before the executor runs and close it after.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool],
        *,
        max_concurrency: int | None = None,
        tool_concurrency: Mapping[str, int] | None = None,
        timeout_s: float | None = 300.0,
        on_event: Sequence[EventSink] = (),
        backend: Backend | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.tools = tools
        self.max_concurrency = max_concurrency
        self.tool_concurrency = dict(tool_concurrency or {})
        self.timeout_s = timeout_s
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
                execution.add(node, check=False)
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
        self._records: dict[int, NodeRecord] = {}
        self.opened = time.perf_counter()
        self._unfinished = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._global_limit = (
            anyio.CapacityLimiter(executor.max_concurrency) if executor.max_concurrency is not None else None
        )
        self._tool_limits: dict[str, anyio.CapacityLimiter | None] = {}

    @property
    def records(self) -> Mapping[int, NodeRecord]:
        """Every node's record so far, by id."""
        return self._records

    def now(self) -> float:
        """Seconds since the execution opened."""
        return time.perf_counter() - self.opened

    def add(self, node: Node, *, check: bool = True) -> NodeRecord:
        """Add a node; it starts at once if its dependencies have all finished.

        A node whose dependency already failed is recorded as skipped straight away.

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
        if node.id in self._records:
            raise PlanError([PlanProblem(node.id, "duplicate_id", f"id {node.id} is already in this execution")])
        if check:
            problems = check_node(node, self.executor.tools, self._records)
            if problems:
                raise PlanError(list(problems))
        dependencies = dependencies_of(node, self._records)
        record = NodeRecord(node=node, dependencies=dependencies, queued_at=self.now())
        missing = [dependency for dependency in dependencies if dependency not in self._records]
        if missing:
            problems = [
                PlanProblem(node.id, "missing_reference", f"depends on node {item}, not added yet") for item in missing
            ]
            raise PlanError(list(problems))
        self._records[node.id] = record
        self._unfinished += 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._emit("queued", record)
        failed_dependency: NodeRecord | None = None
        for dependency in dependencies:
            upstream = self._records[dependency]
            if upstream.status == "done":
                continue
            if upstream.status in _FINAL:
                failed_dependency = upstream
                continue
            record.waiting += 1
            upstream.dependents.append(record)
        if failed_dependency is not None:
            self._skip(record, failed_dependency)
        elif record.waiting == 0:
            self._task_group.start_soon(self._run_node, record)
        return record

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
        if node.id in self._records:
            raise PlanError([PlanProblem(node.id, "duplicate_id", f"id {node.id} is already in this execution")])
        dependencies = dependencies_of(node, self._records)
        missing = sorted(dependency for dependency in dependencies if dependency not in self._records)
        if missing:
            raise PlanError([PlanProblem(node.id, "missing_reference", f"depends on node {missing[0]}, not added yet")])
        now = self.now()
        record = NodeRecord(
            node=node,
            dependencies=dependencies,
            status=status,
            arguments=arguments,
            output=output if status == "done" else None,
            error=error,
            queued_at=now,
            started_at=now,
            finished_at=now,
            attempts=attempts,
        )
        self._records[node.id] = record
        return record

    def cancel(self, node_id: int, reason: str = "cancelled") -> bool:
        """Cancel a queued or running node; its dependents are skipped. Returns False if it had finished."""
        record = self._records[node_id]
        if record.status in _FINAL:
            return False
        record.cancel_reason = reason
        if record.scope is not None:
            record.scope.cancel()
        elif record.status == "queued":
            # Not started, or waiting for a concurrency slot: finish it now; its task, if any, sees
            # the final status and returns.
            self._finish(record, "cancelled", error=NodeError("cancelled", reason))
        return True

    def cancel_all(self, reason: str = "cancelled") -> None:
        """Cancel every unfinished node and close the execution."""
        self.accepting = False
        for record in list(self._records.values()):
            if record.status not in _FINAL:
                record.interrupted = True
                self.cancel(record.id, reason)

    async def wait(self) -> None:
        """Wait until every node added so far has finished (nodes may still be added afterwards)."""
        while self._unfinished:
            await self._idle.wait()

    def result(self) -> ExecutionResult:
        """The records so far, and the time since the execution opened."""
        return ExecutionResult(records=dict(self._records), wall_s=self.now())

    def settle(self) -> None:
        """Record every unfinished node as cancelled (called when the execution closes)."""
        for record in self._records.values():
            if record.status not in _FINAL:
                record.interrupted = True
                record.status = "cancelled"
                record.error = NodeError("cancelled", record.cancel_reason or "the execution was cancelled")
                record.finished_at = self.now()
                self._emit("cancelled", record)

    # -- running one node -------------------------------------------------------------------------

    def _tool_limit(self, tool: Tool) -> anyio.CapacityLimiter | None:
        try:
            return self._tool_limits[tool.name]
        except KeyError:
            cap = self.executor.tool_concurrency.get(tool.name, tool.policy.max_concurrency)
            limit = anyio.CapacityLimiter(cap) if cap is not None else None
            self._tool_limits[tool.name] = limit
            return limit

    async def _run_node(self, record: NodeRecord) -> None:
        # A task that finishes a node goes on with one of the dependents it made ready and starts
        # tasks only for the others: chains run in one task, and a DAG spawns far fewer tasks.
        next_record: NodeRecord | None = record
        while next_record is not None:
            ready = await self._run_limited(next_record)
            for other in ready[1:]:
                self._task_group.start_soon(self._run_node, other)
            next_record = ready[0] if ready else None

    async def _run_limited(self, record: NodeRecord) -> list[NodeRecord]:
        tool = self.executor.tools[record.node.tool]
        limits = [limit for limit in (self._global_limit, self._tool_limit(tool)) if limit is not None]
        if not limits:
            return await self._call(record, tool)
        async with AsyncExitStack() as stack:
            for limit in limits:
                await stack.enter_async_context(limit)
            return await self._call(record, tool)

    async def _call(self, record: NodeRecord, tool: Tool) -> list[NodeRecord]:
        if record.status in _FINAL:  # cancelled while it waited for a concurrency slot
            return []
        record.status = "running"
        record.started_at = self.now()
        record.attempts = 1
        self._emit("started", record)
        backend = self.executor.backend
        inputs = {dependency: self._records[dependency].output for dependency in record.dependencies}
        arguments: dict[str, JsonValue] | None = None
        if not (backend.by_reference and any(backend.keeps(value) for value in inputs.values())):
            try:
                arguments = resolve_references(record.node.arguments, inputs)
            except InvalidReferenceError as error:
                return self._finish(record, "failed", error=NodeError("invalid_reference", str(error)))
        record.arguments = arguments
        policy = tool.policy
        timeout = policy.timeout_s if policy.timeout_s is not None else self.executor.timeout_s
        attempts = policy.retries + 1
        for attempt in range(1, attempts + 1):
            record.attempts = attempt
            # One cancel scope per attempt carries both the deadline and `cancel()`.
            with anyio.CancelScope(deadline=math.inf if timeout is None else anyio.current_time() + timeout) as scope:
                record.scope = scope
                if attempt > 1:
                    await anyio.sleep(policy.backoff_s * 2 ** (attempt - 2))
                    if timeout is not None:
                        scope.deadline = anyio.current_time() + timeout
                call = NodeCall(node=record.node, tool=tool, inputs=inputs, arguments=arguments, attempt=attempt)
                failure = await self._attempt(record, call)
            record.scope = None
            if record.cancel_reason is not None:
                return self._finish(record, "cancelled", error=NodeError("cancelled", record.cancel_reason))
            if scope.cancelled_caught:
                failure = NodeError("timeout", f"tool {tool.name!r} did not finish within {timeout:g} s")
            if failure is None:
                return self._finish(record, "done")
            if attempt == attempts or failure.kind in ("invalid_arguments", "invalid_reference"):
                return self._finish(record, "failed", error=failure)
            self._emit("retrying", record, error=failure)
        raise AssertionError("unreachable: the last attempt always finishes the node")

    async def _attempt(self, record: NodeRecord, call: NodeCall) -> NodeError | None:
        try:
            record.output = await self.executor.backend.call(call)
        except ToolArgumentsError as error:
            return NodeError("invalid_arguments", str(error))
        except InvalidReferenceError as error:
            return NodeError("invalid_reference", str(error))
        except (Exception, SystemExit) as error:  # any tool failure becomes data on the node, sys.exit() too
            return NodeError("tool_error", _describe_failure(error))
        return None

    # -- state changes ------------------------------------------------------------------------------

    def _finish(self, record: NodeRecord, status: NodeStatus, *, error: NodeError | None = None) -> list[NodeRecord]:
        """Record the node's end; return the dependents that became ready (only when it is done)."""
        record.status = status
        record.error = error
        record.finished_at = self.now()
        self._emit(_EVENT_OF[status], record, error=error)
        self._unfinished -= 1
        if self._unfinished == 0:
            self._idle.set()
        dependents, record.dependents = record.dependents, []
        ready: list[NodeRecord] = []
        for dependent in dependents:
            if dependent.status in _FINAL:
                continue
            if status == "done":
                dependent.waiting -= 1
                if dependent.waiting == 0:
                    ready.append(dependent)
            else:
                self._skip(dependent, record)
        return ready

    def _skip(self, record: NodeRecord, upstream: NodeRecord) -> None:
        cause = upstream.error.cause if upstream.error and upstream.error.cause is not None else upstream.id
        what = "was skipped" if upstream.status == "skipped" else upstream.status
        message = f"node {upstream.id} {what}"
        if upstream.error is not None and upstream.status != "skipped":
            message += f": {upstream.error.message}"
        self._finish(record, "skipped", error=NodeError("dependency_failed", message, cause=cause))

    def _emit(self, kind: NodeEventKind, record: NodeRecord, *, error: NodeError | None = None) -> None:
        sinks = self._sinks
        if not sinks:
            return
        duration = record.duration_s if kind in ("finished", "failed", "cancelled") else None
        event = NodeEvent(kind, record.id, record.node.tool, self.now(), record.attempts, duration, error)
        for sink in sinks:
            sink(event)


def _describe_failure(error: BaseException) -> str:
    """`Type: message`, or just the type when the message is empty or cannot even be rendered."""
    try:
        message = str(error)
    except Exception:  # a tool's exception whose __str__ fails must not take the run down
        message = ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
