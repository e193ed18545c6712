"""The executor's behaviour, against every backend: the local one and Ray (skipped where Ray is absent).

Tools may run in other processes, so they report what they do through files, and tests observe them
through those files, the executor's records and its events, never through shared Python objects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import append_line, until

from agentdag.backends import Backend, LocalBackend
from agentdag.config import Limits
from agentdag.errors import PlanError
from agentdag.events import NodeEvent
from agentdag.executor import Execution, Executor
from agentdag.plan import Node
from agentdag.toolsets import Tool, ToolRegistry, tool

# Deadlines that must expire only on purpose: a Ray call crosses processes, and this machine may be busy.
SHORT_TIMEOUT_S = {"local": 0.05, "ray": 3.0}


@pytest.fixture(params=["local", "ray"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def backend(request: pytest.FixtureRequest, backend_kind: str) -> Backend:
    """The local backend, or the session's open Ray backend (skipped where Ray is absent)."""
    if backend_kind == "local":
        return LocalBackend()
    shared: Backend = request.getfixturevalue("ray_backend")
    return shared


@pytest.fixture
def short_timeout(backend_kind: str) -> float:
    return SHORT_TIMEOUT_S[backend_kind]


class Gate:
    """Tools log to a file and block until the test opens their gate (creates a file), in any process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "log"

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def open(self, name: str) -> None:
        (self.folder / f"open-{name}").touch()

    async def logged(self, execution: Execution, *lines: str) -> None:
        """Wait until every line is in the log."""
        await until(lambda: set(lines) <= set(self.lines()), execution)


def make_tools(folder: Path, *, hang_timeout_s: float = 0.05) -> list[Tool]:
    log = str(folder / "log")
    gates = str(folder)

    @tool
    async def wait(name: str) -> str:
        """Block until the gate `name` opens."""
        await append_line(log, f"start {name}")
        while not await anyio.Path(gates, f"open-{name}").exists():  # noqa: ASYNC110 - a gate in any process
            await anyio.sleep(0.005)
        await append_line(log, f"end {name}")
        return name

    @tool
    async def echo(value: object) -> object:
        """Return the value."""
        await append_line(log, f"echo {value}")
        return value

    @tool
    async def fail(message: str) -> None:
        """Always raise."""
        raise RuntimeError(message)

    @tool(timeout_s=hang_timeout_s)
    async def hang() -> None:
        """Never finish."""
        await anyio.sleep_forever()

    return [wait, echo, fail, hang]


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def node(node_id: int, tool_name: str, depends_on: Sequence[int] = (), **arguments: object) -> Node:
    return Node(id=node_id, tool=tool_name, arguments=arguments, depends_on=tuple(depends_on))


def peak_running(events: Iterable[NodeEvent]) -> int:
    """The most nodes that ran at once, by the executor's events (a tool runs between these events)."""
    running = peak = 0
    for event in events:
        if event.kind == "running":
            running += 1
            peak = max(peak, running)
        elif event.kind in ("done", "failed", "cancelled"):
            running -= 1
    return peak


@pytest.mark.asyncio
async def test_independent_nodes_overlap_and_dependents_start_after_their_inputs(
    backend: Backend, tmp_path: Path
) -> None:
    gate = Gate(tmp_path)
    events: list[NodeEvent] = []
    executor = Executor(ToolRegistry(make_tools(tmp_path)), on_event=[events.append], backend=backend)
    async with executor.open() as execution:
        execution.add(node(1, "wait", name="a"))
        execution.add(node(2, "wait", name="b"))
        execution.add(node(3, "echo", value="$1"))
        # Both roots are running at once before either finishes.
        await gate.logged(execution, "start a", "start b")
        assert sorted(gate.lines()) == ["start a", "start b"]
        gate.open("a")
        # Node 3 runs as soon as its only input exists, while b still runs.
        await until(lambda: execution.records[3].status == "done", execution)
        assert execution.records[2].status == "running"
        assert "end b" not in gate.lines()
        gate.open("b")
    kinds = [(event.kind, event.node_id) for event in events]
    assert kinds.index(("running", 2)) < kinds.index(("done", 1))
    assert kinds.index(("done", 1)) < kinds.index(("running", 3)) < kinds.index(("done", 2))
    assert execution.records[3].output == "a"


@pytest.mark.asyncio
async def test_failure_skips_dependents_with_cause_and_rest_of_graph_finishes(backend: Backend, tmp_path: Path) -> None:
    executor = Executor(ToolRegistry(make_tools(tmp_path)), backend=backend)
    Gate(tmp_path).open("x")
    result = await executor.run(
        [
            node(1, "fail", message="boom"),
            node(2, "echo", value="$1"),
            node(3, "echo", [2], value="after"),
            node(4, "wait", name="x"),
            node(5, "echo", value="${4}"),
        ]
    )
    records = result.records
    assert records[1].status == "failed"
    assert records[1].error is not None and records[1].error.message == "RuntimeError: boom"
    assert [records[2].status, records[3].status] == ["skipped", "skipped"]
    assert records[3].error is not None and records[3].error.cause == 1
    assert records[5].status == "done" and records[5].output == "x"
    assert not result.succeeded


@pytest.mark.asyncio
async def test_timeout_fails_the_node_without_hanging(backend: Backend, tmp_path: Path, short_timeout: float) -> None:
    tools = ToolRegistry(make_tools(tmp_path, hang_timeout_s=short_timeout))
    result = await Executor(tools, backend=backend).run([node(1, "hang"), node(2, "echo", value="$1")])
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"
    assert result.records[2].status == "skipped"


@pytest.mark.asyncio
async def test_executor_default_timeout_applies_to_tools_without_one(backend: Backend, short_timeout: float) -> None:
    @tool
    async def slow() -> None:
        await anyio.sleep_forever()

    executor = Executor(ToolRegistry([slow]), limits=Limits(timeout_s=short_timeout), backend=backend)
    result = await executor.run([node(1, "slow")])
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"


@pytest.mark.asyncio
async def test_retryable_tool_is_retried_with_backoff_until_it_succeeds(backend: Backend, tmp_path: Path) -> None:
    calls = tmp_path / "calls"

    @tool(retries=3, backoff_s=0.001)
    async def flaky() -> int:
        await append_line(calls, "call")
        count = len(calls.read_text().splitlines())
        if count < 3:
            raise ConnectionError("transient")
        return count

    events: list[NodeEvent] = []
    result = await Executor(ToolRegistry([flaky]), on_event=[events.append], backend=backend).run([node(1, "flaky")])
    assert result.records[1].status == "done"
    assert result.records[1].output == 3
    assert result.records[1].attempts == 3
    assert [event.kind for event in events].count("retrying") == 2


@pytest.mark.asyncio
async def test_retries_stop_at_the_limit_and_timeouts_count_as_attempts(
    backend: Backend, tmp_path: Path, short_timeout: float
) -> None:
    calls = tmp_path / "calls"

    @tool(retries=2, backoff_s=0.0, timeout_s=short_timeout)
    async def stuck() -> None:
        await append_line(calls, "call")
        await anyio.sleep_forever()

    result = await Executor(ToolRegistry([stuck]), backend=backend).run([node(1, "stuck")])
    assert count_lines(calls) == 3
    assert result.records[1].attempts == 3
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"


@pytest.mark.asyncio
async def test_tools_without_retries_are_called_once(backend: Backend, tmp_path: Path) -> None:
    calls = tmp_path / "calls"

    @tool
    async def once() -> None:
        await append_line(calls, "call")
        raise ConnectionError("no")

    result = await Executor(ToolRegistry([once]), backend=backend).run([node(1, "once")])
    assert count_lines(calls) == 1
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and result.records[1].error.message == "ConnectionError: no"


@pytest.mark.asyncio
async def test_invalid_arguments_fail_without_retry_even_for_retryable_tools(backend: Backend, tmp_path: Path) -> None:
    calls = tmp_path / "calls"

    @tool(retries=3, backoff_s=0)
    async def typed(count: int) -> int:
        await append_line(calls, f"{count}")
        return count

    @tool
    async def text() -> str:
        return "not a number"

    tools = ToolRegistry([typed, text])
    result = await Executor(tools, backend=backend).run([node(1, "text"), node(2, "typed", count="$1")])
    assert count_lines(calls) == 0
    assert result.records[2].attempts == 1
    assert result.records[2].error is not None and result.records[2].error.kind == "invalid_arguments"
    assert "count" in result.records[2].error.message


def _working_tool(name: str, *, max_concurrency: int | None = None) -> Tool:
    async def body(index: int) -> int:
        await anyio.sleep(0.01)
        return index

    return tool(name=name, max_concurrency=max_concurrency)(body)


@pytest.mark.asyncio
async def test_global_concurrency_limit_holds(backend: Backend) -> None:
    events: list[NodeEvent] = []
    nodes = [node(index, "work", index=index) for index in range(1, 21)]
    executor = Executor(
        ToolRegistry([_working_tool("work")]),
        limits=Limits(max_concurrency=3),
        on_event=[events.append],
        backend=backend,
    )
    result = await executor.run(nodes)
    assert result.succeeded
    assert peak_running(events) == 3


@pytest.mark.asyncio
async def test_per_tool_limit_from_policy_and_from_executor_override(backend: Backend) -> None:
    limited = ToolRegistry([_working_tool("limited", max_concurrency=2)])
    nodes = [node(index, "limited", index=index) for index in range(1, 11)]
    events: list[NodeEvent] = []
    assert (await Executor(limited, on_event=[events.append], backend=backend).run(nodes)).succeeded
    assert peak_running(events) == 2
    events.clear()
    one_at_a_time = Limits(tool_concurrency={"limited": 1})
    executor = Executor(limited, limits=one_at_a_time, on_event=[events.append], backend=backend)
    assert (await executor.run(nodes)).succeeded
    assert peak_running(events) == 1


@pytest.mark.asyncio
async def test_cancelling_a_running_node_skips_its_dependents(backend: Backend, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    executor = Executor(ToolRegistry(make_tools(tmp_path)), backend=backend)
    async with executor.open() as execution:
        execution.add(node(1, "wait", name="never"))
        execution.add(node(2, "echo", value="$1"))
        execution.add(node(3, "echo", value="independent"))
        await gate.logged(execution, "start never")
        assert execution.cancel(1, "no longer needed")
    records = execution.records
    assert records[1].status == "cancelled"
    assert records[1].error is not None and records[1].error.message == "no longer needed"
    assert records[2].status == "skipped"
    assert records[3].status == "done"
    assert "end never" not in gate.lines()


@pytest.mark.asyncio
async def test_cancelling_a_node_waiting_for_a_slot_finishes_it_at_once(backend: Backend, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    executor = Executor(ToolRegistry(make_tools(tmp_path)), limits=Limits(max_concurrency=1), backend=backend)
    async with executor.open() as execution:
        execution.add(node(1, "wait", name="first"))
        execution.add(node(2, "wait", name="second"))
        await gate.logged(execution, "start first")
        assert execution.records[2].status == "queued"
        assert execution.cancel(2)
        assert execution.records[2].status == "cancelled"
        gate.open("first")
    assert gate.lines() == ["start first", "end first"]
    assert not execution.cancel(2)


@pytest.mark.asyncio
async def test_outer_cancellation_cancels_running_nodes_and_leaves_no_tasks(backend: Backend, tmp_path: Path) -> None:
    executor = Executor(ToolRegistry(make_tools(tmp_path)), backend=backend)
    tasks_before = len(_all_tasks())
    with anyio.move_on_after(0.05):
        async with executor.open() as execution:
            for index in range(1, 6):
                execution.add(node(index, "wait", name=f"n{index}"))
            execution.add(node(6, "echo", [1], value="late"))
    assert {record.status for record in execution.records.values()} == {"cancelled"}
    assert len(_all_tasks()) == tasks_before
    with pytest.raises(Exception, match="accepts no more nodes"):
        execution.add(node(7, "echo", value=1))


@pytest.mark.asyncio
async def test_cancel_all_stops_everything(backend: Backend, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    async with Executor(ToolRegistry(make_tools(tmp_path)), backend=backend).open() as execution:
        execution.add(node(1, "wait", name="a"))
        execution.add(node(2, "echo", [1], value=1))
        await gate.logged(execution, "start a")
        execution.cancel_all("user stop")
    assert execution.records[1].status == "cancelled"
    assert execution.records[2].status in {"cancelled", "skipped"}
    assert "end a" not in gate.lines()


@pytest.mark.asyncio
async def test_nodes_arrive_while_the_execution_runs_and_wait_returns_when_idle(
    backend: Backend, tmp_path: Path
) -> None:
    async with Executor(ToolRegistry(make_tools(tmp_path)), backend=backend).open() as execution:
        execution.add(node(1, "echo", value={"items": [{"title": "A"}]}))
        await execution.wait()
        assert execution.records[1].status == "done"
        execution.add(node(2, "echo", value={"$ref": 1, "path": "items.0.title"}))
        execution.add(node(3, "echo", value="title: ${1.items.0.title}"))
        await execution.wait()
        assert execution.records[2].output == "A"
        assert execution.records[3].output == "title: A"


@pytest.mark.asyncio
async def test_a_node_added_after_its_dependency_failed_is_skipped_at_once(backend: Backend, tmp_path: Path) -> None:
    async with Executor(ToolRegistry(make_tools(tmp_path)), backend=backend).open() as execution:
        execution.add(node(1, "fail", message="x"))
        await execution.wait()
        record = execution.add(node(2, "echo", value="$1"))
        assert record.status == "skipped"


@pytest.mark.asyncio
async def test_submit_places_and_checks_nodes_as_add_does(backend: Backend, tmp_path: Path) -> None:
    async with Executor(ToolRegistry(make_tools(tmp_path)), backend=backend).open() as execution:
        execution.submit(node(1, "echo", value="A"))
        execution.submit(node(2, "echo", value="$1"))
        with pytest.raises(PlanError, match="already"):
            execution.submit(node(1, "echo", value=1))
        await execution.wait()
    assert [execution.records[i].status for i in (1, 2)] == ["done", "done"]
    assert execution.records[2].output == "A"


@pytest.mark.asyncio
async def test_add_rejects_invalid_nodes_with_plan_errors(backend: Backend, tmp_path: Path) -> None:
    async with Executor(ToolRegistry(make_tools(tmp_path)), backend=backend).open() as execution:
        execution.add(node(1, "echo", value=1))
        with pytest.raises(PlanError, match="already"):
            execution.add(node(1, "echo", value=1))
        with pytest.raises(PlanError, match="unknown tool"):
            execution.add(node(2, "nope"))
        with pytest.raises(PlanError, match="does not exist"):
            execution.add(node(3, "echo", [9], value=1))


@pytest.mark.asyncio
async def test_run_rejects_an_invalid_plan_before_running_anything(backend: Backend, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    executor = Executor(ToolRegistry(make_tools(tmp_path)), backend=backend)
    with pytest.raises(PlanError) as caught:
        await executor.run([node(1, "echo", value="x"), node(2, "nope")])
    assert gate.lines() == []
    assert "node 2" in str(caught.value)


@pytest.mark.parametrize("backend_kind", ["local"], indirect=True)  # threads of this process: local only
@pytest.mark.asyncio
async def test_sync_tools_run_in_worker_threads(backend: Backend) -> None:
    main_thread = threading.get_ident()

    @tool
    def where() -> bool:
        return threading.get_ident() != main_thread

    result = await Executor(ToolRegistry([where]), backend=backend).run([node(1, "where")])
    assert result.records[1].output is True


@pytest.mark.asyncio
async def test_a_hanging_sync_tool_times_out_instead_of_hanging_the_run(
    backend: Backend, tmp_path: Path, short_timeout: float
) -> None:
    release = tmp_path / "release"

    @tool(timeout_s=short_timeout)
    def blocking() -> None:
        while not release.exists():
            time.sleep(0.01)

    result = await Executor(ToolRegistry([blocking]), backend=backend).run([node(1, "blocking")])
    release.touch()
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"


@pytest.mark.asyncio
async def test_unserialisable_results_fail_the_node(backend: Backend) -> None:
    @tool
    async def socketish() -> object:
        return threading.Lock()

    result = await Executor(ToolRegistry([socketish]), backend=backend).run([node(1, "socketish")])
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and "JSON" in result.records[1].error.message


@pytest.mark.asyncio
async def test_missing_field_path_fails_only_the_referencing_node(backend: Backend, tmp_path: Path) -> None:
    result = await Executor(ToolRegistry(make_tools(tmp_path)), backend=backend).run(
        [node(1, "echo", value={"a": 1}), node(2, "echo", value={"$ref": 1, "path": "b"})]
    )
    assert result.records[2].status == "failed"
    assert result.records[2].error is not None and result.records[2].error.kind == "invalid_reference"
    assert "no field 'b'" in result.records[2].error.message


def _all_tasks() -> set[object]:
    import asyncio

    return asyncio.all_tasks()


@st.composite
def random_dags(draw: st.DrawFn) -> list[Node]:
    size = draw(st.integers(min_value=1, max_value=30))
    nodes: list[Node] = []
    for index in range(1, size + 1):
        parents = (
            draw(st.lists(st.integers(min_value=1, max_value=index - 1), max_size=3, unique=True)) if index > 1 else []
        )
        spins = draw(st.integers(min_value=0, max_value=3))
        nodes.append(
            Node(id=index, tool="record", arguments={"index": index, "spins": spins}, depends_on=tuple(parents))
        )
    return nodes


@tool
async def record(index: int, spins: int) -> int:
    """Yield to the event loop `spins` times, so that nodes finish in a shuffled order, and return `index`."""
    for _ in range(spins):
        await anyio.lowlevel.checkpoint()
    return index


def test_every_node_runs_exactly_once_after_all_its_dependencies(backend: Backend) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(dag=random_dags(), concurrency=st.sampled_from([None, 1, 2, 5]))
    def check(dag: list[Node], concurrency: int | None) -> None:
        events: list[NodeEvent] = []
        executor = Executor(
            ToolRegistry([record]),
            limits=Limits(max_concurrency=concurrency),
            on_event=[events.append],
            backend=backend,
        )
        result = anyio.run(executor.run, dag)
        assert result.succeeded
        assert result.outputs == {item.id: item.id for item in dag}
        started = [event.node_id for event in events if event.kind == "running"]
        assert sorted(started) == [item.id for item in dag]
        position = {(event.kind, event.node_id): place for place, event in enumerate(events)}
        for item in dag:
            for parent in item.depends_on:
                assert position["done", parent] < position["running", item.id]

    check()


@pytest.mark.asyncio
async def test_started_events_carry_the_first_attempt_number(backend: Backend, tmp_path: Path) -> None:
    events: list[NodeEvent] = []
    tools = ToolRegistry(make_tools(tmp_path))
    await Executor(tools, on_event=[events.append], backend=backend).run([node(1, "echo", value=1)])
    started = [event for event in events if event.kind == "running"]
    assert [event.attempt for event in started] == [1]
