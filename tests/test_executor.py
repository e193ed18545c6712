from __future__ import annotations

import threading
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentdag.errors import PlanError
from agentdag.events import NodeEvent
from agentdag.executor import Executor
from agentdag.plan import Node
from agentdag.toolsets import FunctionTool, Tool, ToolRegistry, tool


class Gate:
    """Tools that block until the test opens their gate, so ordering is decided by events, not clocks."""

    def __init__(self) -> None:
        self.events: dict[str, anyio.Event] = {}

    def event(self, name: str) -> anyio.Event:
        return self.events.setdefault(name, anyio.Event())


def make_tools(gate: Gate, log: list[str]) -> list[Tool]:
    @tool
    async def wait(name: str) -> str:
        """Block until the gate `name` opens."""
        log.append(f"start {name}")
        await gate.event(name).wait()
        log.append(f"end {name}")
        return name

    @tool
    async def echo(value: object) -> object:
        """Return the value."""
        log.append(f"echo {value}")
        return value

    @tool
    async def fail(message: str) -> None:
        """Always raise."""
        raise RuntimeError(message)

    @tool(timeout_s=0.05)
    async def hang() -> None:
        """Never finish."""
        await anyio.sleep_forever()

    return [wait, echo, fail, hang]


def node(node_id: int, tool_name: str, depends_on: Sequence[int] = (), **arguments: object) -> Node:
    return Node(id=node_id, tool=tool_name, arguments=arguments, depends_on=tuple(depends_on))


@pytest.mark.asyncio
async def test_independent_nodes_overlap_and_dependents_start_after_their_inputs() -> None:
    gate, log = Gate(), []
    events: list[NodeEvent] = []
    executor = Executor(ToolRegistry(make_tools(gate, log)), on_event=[events.append])
    async with executor.open() as execution:
        execution.add(node(1, "wait", name="a"))
        execution.add(node(2, "wait", name="b"))
        execution.add(node(3, "echo", value="$1"))
        await anyio.wait_all_tasks_blocked()
        # Both roots are running at once before either finishes.
        assert log == ["start a", "start b"]
        gate.event("a").set()
        await anyio.wait_all_tasks_blocked()
        assert log[-1] == "echo a"  # node 3 ran as soon as its only input existed, while b still runs
        assert execution.records[2].status == "running"
        gate.event("b").set()
    kinds = [(event.kind, event.node_id) for event in events]
    assert kinds.index(("started", 2)) < kinds.index(("finished", 1))
    assert kinds.index(("finished", 1)) < kinds.index(("started", 3)) < kinds.index(("finished", 2))
    assert execution.records[3].output == "a"


@pytest.mark.asyncio
async def test_failure_skips_dependents_with_cause_and_rest_of_graph_finishes() -> None:
    gate, log = Gate(), []
    executor = Executor(ToolRegistry(make_tools(gate, log)))
    gate.event("x").set()
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
    assert records[1].error is not None and "boom" in records[1].error.message
    assert [records[2].status, records[3].status] == ["skipped", "skipped"]
    assert records[3].error is not None and records[3].error.cause == 1
    assert records[5].status == "done" and records[5].output == "x"
    assert not result.succeeded


@pytest.mark.asyncio
async def test_timeout_fails_the_node_without_hanging() -> None:
    gate, log = Gate(), []
    result = await Executor(ToolRegistry(make_tools(gate, log))).run([node(1, "hang"), node(2, "echo", value="$1")])
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"
    assert result.records[2].status == "skipped"


@pytest.mark.asyncio
async def test_executor_default_timeout_applies_to_tools_without_one() -> None:
    @tool
    async def slow() -> None:
        await anyio.sleep_forever()

    result = await Executor(ToolRegistry([slow]), timeout_s=0.02).run([node(1, "slow")])
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"


@pytest.mark.asyncio
async def test_retryable_tool_is_retried_with_backoff_until_it_succeeds() -> None:
    calls: list[int] = []

    @tool(retries=3, backoff_s=0.001)
    async def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("transient")
        return len(calls)

    events: list[NodeEvent] = []
    result = await Executor(ToolRegistry([flaky]), on_event=[events.append]).run([node(1, "flaky")])
    assert result.records[1].status == "done"
    assert result.records[1].output == 3
    assert result.records[1].attempts == 3
    assert [event.kind for event in events].count("retrying") == 2


@pytest.mark.asyncio
async def test_retries_stop_at_the_limit_and_timeouts_count_as_attempts() -> None:
    attempts: list[int] = []

    @tool(retries=2, backoff_s=0.0, timeout_s=0.02)
    async def stuck() -> None:
        attempts.append(1)
        await anyio.sleep_forever()

    result = await Executor(ToolRegistry([stuck])).run([node(1, "stuck")])
    assert len(attempts) == 3
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"


@pytest.mark.asyncio
async def test_tools_without_retries_are_called_once() -> None:
    calls: list[int] = []

    @tool
    async def once() -> None:
        calls.append(1)
        raise ConnectionError("no")

    result = await Executor(ToolRegistry([once])).run([node(1, "once")])
    assert calls == [1]
    assert result.records[1].status == "failed"


@pytest.mark.asyncio
async def test_invalid_arguments_fail_without_retry_even_for_retryable_tools() -> None:
    calls: list[int] = []

    @tool(retries=3, backoff_s=0)
    async def typed(count: int) -> int:
        calls.append(count)
        return count

    @tool
    async def text() -> str:
        return "not a number"

    result = await Executor(ToolRegistry([typed, text])).run([node(1, "text"), node(2, "typed", count="$1")])
    assert calls == []
    assert result.records[2].error is not None and result.records[2].error.kind == "invalid_arguments"
    assert "count" in result.records[2].error.message


def _tracking_tool(name: str, running: list[int], peak: list[int], **options: int) -> FunctionTool:
    async def body(index: int) -> int:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.001)
        running[0] -= 1
        return index

    return tool(name=name, max_concurrency=options.get("max_concurrency"))(body)


@pytest.mark.asyncio
async def test_global_concurrency_limit_holds() -> None:
    running, peak = [0], [0]
    work = _tracking_tool("work", running, peak)
    nodes = [node(index, "work", index=index) for index in range(1, 21)]
    result = await Executor(ToolRegistry([work]), max_concurrency=3).run(nodes)
    assert result.succeeded
    assert peak[0] == 3


@pytest.mark.asyncio
async def test_per_tool_limit_from_policy_and_from_executor_override() -> None:
    running, peak = [0], [0]
    limited = _tracking_tool("limited", running, peak, max_concurrency=2)
    nodes = [node(index, "limited", index=index) for index in range(1, 11)]
    assert (await Executor(ToolRegistry([limited])).run(nodes)).succeeded
    assert peak[0] == 2
    peak[0] = 0
    assert (await Executor(ToolRegistry([limited]), tool_concurrency={"limited": 1}).run(nodes)).succeeded
    assert peak[0] == 1


@pytest.mark.asyncio
async def test_cancelling_a_running_node_skips_its_dependents() -> None:
    gate, log = Gate(), []
    executor = Executor(ToolRegistry(make_tools(gate, log)))
    async with executor.open() as execution:
        execution.add(node(1, "wait", name="never"))
        execution.add(node(2, "echo", value="$1"))
        execution.add(node(3, "echo", value="independent"))
        await anyio.wait_all_tasks_blocked()
        assert execution.cancel(1, "no longer needed")
    records = execution.records
    assert records[1].status == "cancelled"
    assert records[1].error is not None and records[1].error.message == "no longer needed"
    assert records[2].status == "skipped"
    assert records[3].status == "done"


@pytest.mark.asyncio
async def test_cancelling_a_node_waiting_for_a_slot_finishes_it_at_once() -> None:
    gate, log = Gate(), []
    executor = Executor(ToolRegistry(make_tools(gate, log)), max_concurrency=1)
    async with executor.open() as execution:
        execution.add(node(1, "wait", name="first"))
        execution.add(node(2, "wait", name="second"))
        await anyio.wait_all_tasks_blocked()
        assert execution.cancel(2)
        assert execution.records[2].status == "cancelled"
        gate.event("first").set()
    assert log == ["start first", "end first"]
    assert not execution.cancel(2)


@pytest.mark.asyncio
async def test_outer_cancellation_cancels_running_nodes_and_leaves_no_tasks() -> None:
    gate, log = Gate(), []
    executor = Executor(ToolRegistry(make_tools(gate, log)))
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
async def test_cancel_all_stops_everything() -> None:
    gate, log = Gate(), []
    async with Executor(ToolRegistry(make_tools(gate, log))).open() as execution:
        execution.add(node(1, "wait", name="a"))
        execution.add(node(2, "echo", [1], value=1))
        await anyio.wait_all_tasks_blocked()
        execution.cancel_all("user stop")
    assert execution.records[1].status == "cancelled"
    assert execution.records[2].status in {"cancelled", "skipped"}


@pytest.mark.asyncio
async def test_nodes_arrive_while_the_execution_runs_and_wait_returns_when_idle() -> None:
    gate, log = Gate(), []
    async with Executor(ToolRegistry(make_tools(gate, log))).open() as execution:
        execution.add(node(1, "echo", value={"items": [{"title": "A"}]}))
        await execution.wait()
        assert execution.records[1].status == "done"
        execution.add(node(2, "echo", value={"$ref": 1, "path": "items.0.title"}))
        execution.add(node(3, "echo", value="title: ${1.items.0.title}"))
        await execution.wait()
        assert execution.records[2].output == "A"
        assert execution.records[3].output == "title: A"


@pytest.mark.asyncio
async def test_a_node_added_after_its_dependency_failed_is_skipped_at_once() -> None:
    gate, log = Gate(), []
    async with Executor(ToolRegistry(make_tools(gate, log))).open() as execution:
        execution.add(node(1, "fail", message="x"))
        await execution.wait()
        record = execution.add(node(2, "echo", value="$1"))
        assert record.status == "skipped"


@pytest.mark.asyncio
async def test_add_rejects_invalid_nodes_with_plan_errors() -> None:
    gate, log = Gate(), []
    async with Executor(ToolRegistry(make_tools(gate, log))).open() as execution:
        execution.add(node(1, "echo", value=1))
        with pytest.raises(PlanError, match="already"):
            execution.add(node(1, "echo", value=1))
        with pytest.raises(PlanError, match="unknown tool"):
            execution.add(node(2, "nope"))
        with pytest.raises(PlanError, match="does not exist"):
            execution.add(node(3, "echo", [9], value=1))


@pytest.mark.asyncio
async def test_run_rejects_an_invalid_plan_before_running_anything() -> None:
    gate, log = Gate(), []
    with pytest.raises(PlanError) as caught:
        await Executor(ToolRegistry(make_tools(gate, log))).run([node(1, "echo", value="x"), node(2, "nope")])
    assert log == []
    assert "node 2" in str(caught.value)


@pytest.mark.asyncio
async def test_sync_tools_run_in_worker_threads() -> None:
    main_thread = threading.get_ident()

    @tool
    def where() -> bool:
        return threading.get_ident() != main_thread

    result = await Executor(ToolRegistry([where])).run([node(1, "where")])
    assert result.records[1].output is True


@pytest.mark.asyncio
async def test_a_hanging_sync_tool_times_out_instead_of_hanging_the_run() -> None:
    release = threading.Event()

    @tool(timeout_s=0.05)
    def blocking() -> None:
        release.wait(5)

    result = await Executor(ToolRegistry([blocking])).run([node(1, "blocking")])
    release.set()
    assert result.records[1].error is not None and result.records[1].error.kind == "timeout"


@pytest.mark.asyncio
async def test_unserialisable_results_fail_the_node() -> None:
    @tool
    async def socketish() -> object:
        return threading.Lock()

    result = await Executor(ToolRegistry([socketish])).run([node(1, "socketish")])
    assert result.records[1].status == "failed"
    assert result.records[1].error is not None and "JSON" in result.records[1].error.message


@pytest.mark.asyncio
async def test_missing_field_path_fails_only_the_referencing_node() -> None:
    gate, log = Gate(), []
    result = await Executor(ToolRegistry(make_tools(gate, log))).run(
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
        nodes.append(Node(id=index, tool="record", arguments={"index": index}, depends_on=tuple(parents)))
    return nodes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag=random_dags(), seed=st.integers(min_value=0, max_value=2**16))
def test_every_node_runs_exactly_once_after_all_its_dependencies(dag: list[Node], seed: int) -> None:
    import random

    order: list[int] = []
    rng = random.Random(seed)

    @tool
    async def record(index: int) -> int:
        for _ in range(rng.randint(0, 3)):
            await anyio.lowlevel.checkpoint()
        order.append(index)
        return index

    result = anyio.run(Executor(ToolRegistry([record]), max_concurrency=rng.choice([None, 1, 2, 5])).run, dag)
    assert sorted(order) == [item.id for item in dag]
    position = {index: place for place, index in enumerate(order)}
    for item in dag:
        for parent in item.depends_on:
            assert position[parent] < position[item.id]
    assert result.succeeded


@pytest.mark.asyncio
async def test_started_events_carry_the_first_attempt_number() -> None:
    gate, log = Gate(), []
    events: list[NodeEvent] = []
    await Executor(ToolRegistry(make_tools(gate, log)), on_event=[events.append]).run([node(1, "echo", value=1)])
    started = [event for event in events if event.kind == "started"]
    assert [event.attempt for event in started] == [1]
