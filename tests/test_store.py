"""Run state and resume, in process: finished nodes are restored, unfinished ones run again."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from agentdag import Agent, Executor, FunctionModel, LocalBackend, Node, tool
from agentdag.events import Event, NodeEvent
from agentdag.messages import ModelRequest
from agentdag.saving import NodeSaver
from agentdag.schemas import JOINER_SCHEMA
from agentdag.store import RunStore, RunStoreError
from agentdag.toolsets import Tool, ToolRegistry

TASK = "Fetch a and b, wait for c, then combine them."


class Calls:
    """Tools that log their calls; `gate` blocks until `release` is set.

    `watch` is an event sink: `ended` is set once the nodes in `waiting_for` have all finished.
    """

    def __init__(self, waiting_for: tuple[int, ...] = (1, 2, 5)) -> None:
        self.log: list[str] = []
        self.release = anyio.Event()
        self.gate_started = anyio.Event()
        self.waiting_for = set(waiting_for)
        self.ended = anyio.Event()

    def watch(self, event: Event) -> None:
        if isinstance(event, NodeEvent) and event.kind in ("done", "failed"):
            self.waiting_for.discard(event.node_id)
            if not self.waiting_for:
                self.ended.set()

    def tools(self) -> list[Tool]:
        @tool
        async def fetch(name: str) -> dict[str, str]:
            """Fetch a named item."""
            self.log.append(f"fetch {name}")
            return {"name": name, "value": name.upper()}

        @tool
        async def gate(name: str) -> str:
            """Wait for the release, then return the name."""
            self.log.append(f"gate {name}")
            self.gate_started.set()
            await self.release.wait()
            return name.upper()

        @tool
        async def combine(parts: list[str]) -> str:
            """Join parts."""
            self.log.append("combine")
            return "+".join(parts)

        @tool
        async def explode() -> str:
            """Always fail."""
            self.log.append("explode")
            raise RuntimeError("boom")

        return [fetch, gate, combine, explode]


PLAN = {
    "thought": "a and b at once, c alone, then combine",
    "nodes": [
        {"id": 1, "tool": "fetch", "arguments": {"name": "a"}},
        {"id": 2, "tool": "fetch", "arguments": {"name": "b"}},
        {"id": 3, "tool": "gate", "arguments": {"name": "c"}},
        {"id": 4, "tool": "combine", "arguments": {"parts": ["${1.value}", "${2.value}", "$3"]}},
        {"id": 5, "tool": "explode", "arguments": {}},
    ],
}


class Model:
    """Plans PLAN and finishes with the combined output; counts calls by role."""

    def __init__(self) -> None:
        self.calls = {"planner": 0, "joiner": 0}

    def __call__(self, request: ModelRequest) -> str:
        if request.settings.json_schema is JOINER_SCHEMA:
            self.calls["joiner"] += 1
            prompt = request.messages[-1].content
            answer = "A+B+C" if "A+B+C" in prompt else "unknown"
            return json.dumps({"thought": "t", "answer": answer, "action": "finish", "reason": ""})
        self.calls["planner"] += 1
        return json.dumps(PLAN)


async def interrupt_when_gated(run: Callable[[], Awaitable[object]], calls: Calls) -> None:
    """Start `run`; once a gate node is running and the nodes `calls` waits for have ended, cancel it."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await calls.gate_started.wait()
            await calls.ended.wait()
            scope.cancel()


@pytest.mark.asyncio
async def test_a_resumed_run_restores_finished_nodes_and_runs_the_rest(tmp_path: Path) -> None:
    calls, model = Calls(), Model()
    first = Agent(tools=calls.tools(), model=FunctionModel(model), on_event=[calls.watch])
    with RunStore.create(tmp_path / "run", task=TASK) as store:
        await interrupt_when_gated(functools.partial(first.run, TASK, store=store), calls)
    saved = RunStore.open(tmp_path / "run").load()
    assert {node_id: item.status for node_id, item in saved.nodes.items()} == {
        1: "done",
        2: "done",
        3: "queued",  # it was running; a running node is not saved as such, it runs again either way
        4: "queued",
        5: "failed",
    }
    assert saved.nodes[1].output == {"name": "a", "value": "A"}
    assert saved.status is None
    assert saved.usage["planner"].calls == 1

    calls.release.set()
    calls.log.clear()
    second = Agent(tools=calls.tools(), model=FunctionModel(model))
    with RunStore.open(tmp_path / "run") as store:
        result = await second.run(TASK, store=store)
    assert result.status == "done"
    assert result.answer == "A+B+C"
    assert sorted(calls.log) == ["combine", "gate c"], "only the unfinished nodes ran again"
    assert model.calls == {"planner": 1, "joiner": 1}, "the plan was not asked for again"
    assert result.records[1].output == {"name": "a", "value": "A"}
    assert result.records[5].status == "failed" and result.records[5].error is not None
    assert "boom" in result.records[5].error.message
    assert result.usage["planner"].calls == 1, "usage carries over from the first process"
    assert any("resumed: restored 3 finished node(s), running 2 again" in note for note in result.notes)
    with RunStore.open(tmp_path / "run") as store:
        assert store.load().status == "done"


@pytest.mark.asyncio
async def test_a_done_run_is_not_resumed(tmp_path: Path) -> None:
    calls, model = Calls(), Model()
    calls.release.set()
    agent = Agent(tools=calls.tools(), model=FunctionModel(model))
    with RunStore.create(tmp_path / "run", task=TASK) as store:
        assert (await agent.run(TASK, store=store)).status == "done"
    with RunStore.open(tmp_path / "run") as store, pytest.raises(RunStoreError, match="already done"):
        await agent.run(TASK, store=store)


@pytest.mark.asyncio
async def test_a_run_of_another_task_is_refused(tmp_path: Path) -> None:
    agent = Agent(tools=Calls().tools(), model=FunctionModel(Model()))
    RunStore.create(tmp_path / "run", task="something else").close()
    with RunStore.open(tmp_path / "run") as store, pytest.raises(RunStoreError, match="another task"):
        await agent.run(TASK, store=store)


def test_a_folder_that_holds_a_run_is_not_reused_and_an_empty_one_cannot_be_resumed(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", task=TASK).close()
    with pytest.raises(RunStoreError, match="already holds a run"):
        RunStore.create(tmp_path / "run", task=TASK)
    with pytest.raises(RunStoreError, match="no run here"):
        RunStore.open(tmp_path / "empty")


def test_a_damaged_state_file_gives_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    RunStore.create(folder, task=TASK).close()
    with sqlite3.connect(folder / "run.sqlite") as connection:
        connection.execute(
            "INSERT INTO nodes VALUES (1, 0, 'not json', 'done', NULL, NULL, NULL, 1, NULL, 0)",
        )
    with RunStore.open(folder) as store, pytest.raises(RunStoreError, match="damaged"):
        store.load()
    (folder / "run.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStoreError):
        RunStore.open(folder)


def test_the_state_file_is_private(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", task=TASK).close()
    assert (tmp_path / "run" / "run.sqlite").stat().st_mode & 0o077 == 0


IDS_NOT_GROWING = [
    Node(id=2, tool="fetch", arguments={"name": "a"}),
    Node(id=3, tool="gate", arguments={"name": "c"}),
    Node(id=1, tool="combine", arguments={"parts": ["${2.value}", "$3"]}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("plan", "waiting_for", "answer"),
    [
        ([Node.model_validate(node) for node in PLAN["nodes"][:4]], (1, 2), "A+B+C"),  # type: ignore[index]
        (IDS_NOT_GROWING, (2,), "A+C"),  # node 1 depends on node 2: restored in dependency order
    ],
    ids=["ids-along-dependencies", "ids-not-growing"],
)
async def test_a_fixed_plan_resumes_without_running_finished_nodes(
    tmp_path: Path, plan: list[Node], waiting_for: tuple[int, ...], answer: str
) -> None:
    calls = Calls(waiting_for=waiting_for)
    agent = Agent(tools=calls.tools(), on_event=[calls.watch])
    with RunStore.create(tmp_path / "run", task=TASK) as store:
        await interrupt_when_gated(functools.partial(agent.run_plan, plan, store=store), calls)
    calls.release.set()
    calls.log.clear()
    with RunStore.open(tmp_path / "run") as store:
        result = await agent.run_plan(plan, store=store)
    assert result.answer == answer
    assert sorted(calls.log) == ["combine", "gate c"]


@pytest.mark.asyncio
async def test_plan_versions_and_replans_are_saved(tmp_path: Path) -> None:
    calls = Calls()
    calls.release.set()
    replies = iter(
        [
            json.dumps({"thought": "t", "nodes": [{"id": 1, "tool": "nope", "arguments": {}}]}),
            json.dumps({"thought": "t", "nodes": [{"id": 1, "tool": "fetch", "arguments": {"name": "a"}}]}),
            json.dumps({"thought": "t", "nodes": [{"id": 2, "tool": "fetch", "arguments": {"name": "b"}}]}),
        ]
    )
    decisions = iter(
        [
            json.dumps({"thought": "t", "answer": "?", "action": "replan", "reason": "need b"}),
            json.dumps({"thought": "t", "answer": "A and B", "action": "finish", "reason": ""}),
        ]
    )

    def reply(request: ModelRequest) -> str:
        return next(decisions) if request.settings.json_schema is JOINER_SCHEMA else next(replies)

    agent = Agent(tools=calls.tools(), model=FunctionModel(reply))
    with RunStore.create(tmp_path / "run", task=TASK) as store:
        result = await agent.run(TASK, store=store)
        assert result.status == "done"
        plans = store.plans()
        saved = store.load()
    assert [(round_index, attempt) for round_index, attempt, _ in plans] == [(0, 1), (0, 2), (1, 1)]
    assert '"nope"' in plans[0][2]
    assert [(replan.round, replan.reason) for replan in saved.replans] == [(1, "need b")]
    assert {node_id: item.round for node_id, item in saved.nodes.items()} == {1: 0, 2: 1}
    assert any("repaired" in note for note in saved.notes)
    assert saved.answer == "A and B"


def test_bench_durability_prints_consistent_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from agentdag.cli import main

    assert main(["bench", "durability", "--json", "--nodes", "200", "--runs", "1", "--sleep-ms", "5"]) == 0
    figures = json.loads(capsys.readouterr().out)
    nodes = figures["resume_nodes"]
    assert figures["resume_finished_before_interrupt"] >= nodes // 2
    assert figures["resume_calls_after"] == nodes - figures["resume_finished_before_interrupt"]
    assert figures["resume_calls_before"] + figures["resume_calls_after"] == nodes + figures["resume_calls_repeated"]
    assert figures["cache_hits"] == figures["cache_nodes"] == figures["cache_tool_calls"]
    assert figures["state_nodes"] == 200 and "state_us_per_node" in figures


@pytest.mark.asyncio
async def test_a_node_whose_input_changed_runs_again_with_its_dependents(tmp_path: Path) -> None:
    calls = Calls(waiting_for=(1, 2))
    first = [
        Node(id=1, tool="fetch", arguments={"name": "a"}),
        Node(id=2, tool="combine", arguments={"parts": ["${1.value}"]}),
        Node(id=3, tool="gate", arguments={"name": "c"}),
    ]
    agent = Agent(tools=calls.tools(), on_event=[calls.watch])
    with RunStore.create(tmp_path / "run", task=TASK) as store:
        await interrupt_when_gated(functools.partial(agent.run_plan, first, store=store), calls)
    calls.release.set()
    calls.log.clear()
    changed = [Node(id=1, tool="fetch", arguments={"name": "z"}), *first[1:]]
    with RunStore.open(tmp_path / "run") as store:
        result = await agent.run_plan(changed, answer="$2", store=store)
    assert result.answer == "Z", "node 2 ran again on node 1's new output, not restored with the old one"
    assert sorted(calls.log) == ["combine", "fetch z", "gate c"]


@pytest.mark.asyncio
async def test_a_node_cancelled_by_choice_stays_cancelled_on_resume(tmp_path: Path) -> None:
    calls = Calls()
    executor = Executor(ToolRegistry(calls.tools()))
    nodes = [
        Node(id=1, tool="gate", arguments={"name": "x"}),
        Node(id=2, tool="combine", arguments={"parts": ["$1"]}),
        Node(id=3, tool="gate", arguments={"name": "y"}),
    ]
    skipped = anyio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, NodeEvent) and event.kind == "skipped":
            skipped.set()

    with RunStore.create(tmp_path / "run", task=TASK) as store:
        with anyio.CancelScope() as scope:
            async with executor.open(on_event=[watch]) as execution:
                NodeSaver(store, execution)
                for item in nodes:
                    execution.add(item)
                await calls.gate_started.wait()
                execution.cancel(1, "cancelled by refinement")  # by choice: node 2 is skipped with it
                await skipped.wait()
                scope.cancel()  # then the run stops, with node 3 still running
        saved = store.load()
    assert {node_id: item.status for node_id, item in saved.nodes.items()} == {
        1: "cancelled",
        2: "skipped",
        3: "queued",
    }
    calls.release.set()
    calls.log.clear()
    with RunStore.open(tmp_path / "run") as store:
        async with executor.open() as execution:
            assert NodeSaver(store, execution).restore(store.load()) == 1
    assert {node_id: record.status for node_id, record in execution.records.items()} == {
        1: "cancelled",
        2: "skipped",
        3: "done",
    }
    assert calls.log == ["gate y"], "neither the cancelled node nor its dependent ran"


class KeepingBackend(LocalBackend):
    """A backend that, like Ray's, keeps some outputs elsewhere: those marked `{"kept": ...}`."""

    def durable(self, output: object) -> bool:
        return not (isinstance(output, dict) and "kept" in output)


@pytest.mark.asyncio
async def test_an_output_a_backend_keeps_elsewhere_is_not_saved_as_finished(tmp_path: Path) -> None:
    @tool
    async def handle() -> dict[str, int]:
        """An output that stands for a value kept on a cluster."""
        return {"kept": 1}

    executor = Executor(ToolRegistry([handle, *Calls().tools()]), backend=KeepingBackend())
    with RunStore.create(tmp_path / "run", task=TASK) as store:
        async with executor.open() as execution:
            NodeSaver(store, execution, durable=executor.backend.durable)
            execution.add(Node(id=1, tool="handle"))
            execution.add(Node(id=2, tool="fetch", arguments={"name": "a"}))
        saved = store.load()
    assert saved.nodes[1].status == "queued", "the handle dies with the backend, so a resumed run runs it again"
    assert saved.nodes[2].status == "done"
