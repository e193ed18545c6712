"""The Ray backend's own behaviour; tests/test_executor.py runs the executor's suite against it as well.

Tests that need a cluster use the session's (2 CPUs, 80 MB object store, a custom `licence` resource);
they skip where Ray is absent. Two tests start clusters of their own in subprocesses, to check that a
backend leaves no process behind and that it joins a running cluster by address.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest
from support import append_line, lines, until

from agentdag.backends import NodeCall
from agentdag.backends.ray import RayBackend, RayConfig, RayResources
from agentdag.cli import main
from agentdag.cli.output import EXIT_BAD_INPUT
from agentdag.errors import AgentdagError, ToolError
from agentdag.executor import Executor
from agentdag.plan import Node
from agentdag.toolsets import Tool, ToolPolicy, ToolRegistry, tool
from agentdag.toolsets.mcp import McpToolset
from agentdag.toolsets.mcp_config import McpServerConfig

SERVERS = Path(__file__).parent / "servers"


def node(node_id: int, tool_name: str, depends_on: Iterable[int] = (), **arguments: object) -> Node:
    return Node(id=node_id, tool=tool_name, arguments=arguments, depends_on=tuple(depends_on))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for_exit(pids: Iterable[int], *, limit_s: float = 60.0) -> list[int]:
    """The processes still running after they have had `limit_s` to exit (a bound for failures only)."""
    deadline = time.monotonic() + limit_s
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [pid for pid in left if alive(pid)]
    return left


# -- without a cluster ---------------------------------------------------------------------------------


def test_importing_agentdag_and_the_ray_backend_module_does_not_import_ray() -> None:
    code = "import sys, agentdag, agentdag.backends, agentdag.backends.ray; print('ray' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"address": "127.0.0.1:6379", "num_cpus": 2}, "local cluster"),
        ({"object_store_memory": 1_000_000}, "greater than or equal"),
        ({"actors": 0}, "greater than or equal"),
        ({"adress": "typo:6379"}, "Extra inputs"),
        ({"tools": {"search": {"num_cpus": -1}}}, "greater than or equal"),
        ({"tools": {"search": {"cpus": 1}}}, "Extra inputs"),
    ],
)
def test_ray_config_rejects_bad_settings_with_one_error_type(options: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        RayConfig.model_validate(options)


def test_per_tool_resources_become_ray_options() -> None:
    assert RayResources(num_cpus=2, resources={"licence": 1}).options() == {"num_cpus": 2, "resources": {"licence": 1}}
    assert RayResources().options() == {}


def test_the_ray_backend_refuses_to_open_outside_asyncio() -> None:
    # Driven by hand, the coroutine runs where no asyncio loop runs, as it would under trio.
    opening = RayBackend().__aenter__()
    with pytest.raises(AgentdagError, match="asyncio backend"):
        opening.send(None)


@pytest.mark.asyncio
async def test_an_unopened_ray_backend_says_so() -> None:
    @tool
    def one() -> int:
        return 1

    call = NodeCall(node=node(1, "one"), tool=one, inputs={}, arguments={})
    with pytest.raises(AgentdagError, match="open the RayBackend"):
        await RayBackend().call(call)


def test_bench_executor_refuses_an_address_for_the_local_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "executor", "--address", "127.0.0.1:6379", "--json"]) == EXIT_BAD_INPUT
    assert "--address names a Ray cluster" in capsys.readouterr().err


# -- on the session's cluster -------------------------------------------------------------------------


def test_bench_executor_runs_the_same_dags_on_ray(ray_cluster: None, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["bench", "executor", "--backend", "ray", "--json", "--nodes", "40", "--noop-nodes", "100"]
    assert main([*arguments, "--runs", "1"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["backend"] == "ray"
    assert figures["ratio"] == pytest.approx(figures["wall_s"] / figures["critical_path_s"], rel=0.01)
    assert figures["ratio"] >= 1.0  # nothing can beat its critical path
    for field in ("overhead_us_per_task", "sync_overhead_us_per_task", "latency_us_per_node", "startup_s"):
        assert figures[field] > 0
    assert figures["meets_targets"] is None  # the targets are the local backend's


@tool
def numbers(count: int) -> dict[str, list[int]]:
    """A large output: {"items": [0, 1, ..., count - 1]}."""
    return {"items": list(range(count))}


@tool
async def total(items: list[int]) -> int:
    """Sum the items (an async tool: it runs on an actor)."""
    return sum(items)


@tool
def pick(item: int) -> int:
    """Return the item (a sync tool: it runs as a remote function)."""
    return item


class DriverTool(Tool):
    """A tool the Ray backend cannot ship (not a function or MCP tool), so it runs in this process."""

    name = "here"
    description = "Report this process and the length of the items."
    input_schema: dict[str, Any] = {"type": "object", "properties": {"items": {"type": "array"}}}  # noqa: RUF012
    policy = ToolPolicy()

    async def call(self, arguments: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "length": len(arguments["items"])}


@pytest.mark.asyncio
async def test_large_outputs_stay_in_the_object_store_and_reach_dependents_by_reference(
    ray_backend: RayBackend,
) -> None:
    tools = ToolRegistry([numbers, total, pick, DriverTool()])
    result = await Executor(tools, backend=ray_backend).run(
        [
            node(1, "numbers", count=30_000),
            node(2, "total", items={"$ref": 1, "path": "items"}),
            node(3, "pick", item="${1.items.7}"),
            node(4, "here", items="${1.items}"),
        ]
    )
    assert result.succeeded, result.records
    kept = result.records[1].output
    # The record holds a small JSON placeholder, as traces and the joiner see it.
    assert set(kept) == {"$ray", "bytes", "preview"}
    assert kept["bytes"] > ray_backend.config.inline_bytes
    assert kept["preview"].startswith('{"items":[0,1,2,3')
    assert len(json.dumps(kept)) < 400
    assert not ray_backend.durable(kept)
    assert await ray_backend.fetch(kept) == {"items": list(range(30_000))}
    # Dependents got the value on their worker; the driver never resolved their arguments.
    assert result.records[2].output == sum(range(30_000))
    assert result.records[2].arguments is None
    assert result.records[3].output == 7
    # A tool that cannot travel runs here and gets the value fetched from the object store.
    assert result.records[4].output == {"pid": os.getpid(), "length": 30_000}
    # Small outputs travel inline, and look-alikes of a placeholder are not taken for one.
    assert ray_backend.durable(result.records[2].output)
    assert ray_backend.durable({"$ray": "00" * 28, "bytes": 1, "preview": ""})
    assert await ray_backend.fetch({"$ray": "x"}) == {"$ray": "x"}


@tool
async def where_am_i(index: int, folder: str, expected: int) -> int:
    """Wait until `expected` calls have started (each logs a line), then return this process's id."""
    log = Path(folder, "started")
    await append_line(log, str(index))
    while len((await anyio.Path(log).read_text()).splitlines()) < expected:  # noqa: ASYNC110 - across processes
        await anyio.sleep(0.01)
    return os.getpid()


@pytest.mark.asyncio
async def test_async_tools_share_a_pool_of_actors_in_other_processes(ray_backend: RayBackend, tmp_path: Path) -> None:
    calls = 4
    nodes = [node(index, "where_am_i", index=index, folder=str(tmp_path), expected=calls) for index in range(calls)]
    result = await Executor(ToolRegistry([where_am_i]), backend=ray_backend).run(nodes)
    assert result.succeeded, result.records
    pids = {record.output for record in result.records.values()}
    # Four calls at once, all running together, on the pool's two actors, neither of them this process.
    assert len(pids) == ray_backend.config.actors == 2
    assert os.getpid() not in pids


@pytest.mark.asyncio
async def test_cancelling_a_node_cancels_its_coroutine_on_the_actor(ray_backend: RayBackend, tmp_path: Path) -> None:
    log = tmp_path / "log"

    @tool
    async def sleeper() -> None:
        await append_line(log, "start")
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await append_line(log, "cancelled")

    async with Executor(ToolRegistry([sleeper]), backend=ray_backend).open() as execution:
        execution.add(node(1, "sleeper"))
        await until(lambda: lines(log) == ["start"], execution)
        execution.cancel(1, "stop")
    assert execution.records[1].status == "cancelled"
    await until(lambda: lines(log) == ["start", "cancelled"])


@pytest.mark.parametrize("mode", ["loop", "block"])
@pytest.mark.asyncio
async def test_cancelling_a_sync_node_stops_its_remote_work(ray_cluster: None, tmp_path: Path, mode: str) -> None:
    """A cancelled sync tool stops (interrupted, or its worker killed when it blocks in C) and frees its CPUs."""
    log = tmp_path / "log"

    @tool
    def hog(name: str, mode: str) -> str:
        with open(log, "a") as file:
            file.write(f"start {name}\n")
        try:
            if mode == "loop":  # Python code: the KeyboardInterrupt Ray raises stops it
                while True:
                    time.sleep(0.01)
            if mode == "block":  # one long C call, which the interrupt cannot reach: the worker is killed
                time.sleep(3600)
        except KeyboardInterrupt:
            with open(log, "a") as file:
                file.write(f"interrupted {name}\n")
            raise
        return name

    # Each call of hog holds both of the cluster's CPUs, so a second one runs only after the first stopped.
    config = RayConfig(cancel_grace_s=0.5, tools={"hog": RayResources(num_cpus=2)})
    async with RayBackend(config) as backend:
        executor = Executor(ToolRegistry([hog]), backend=backend)
        async with executor.open() as execution:
            execution.add(node(1, "hog", name="first", mode=mode))
            await until(lambda: "start first" in lines(log), execution)
            execution.cancel(1)
        after = await executor.run([node(2, "hog", name="second", mode="quick")])
    assert execution.records[1].status == "cancelled"
    assert after.records[2].output == "second"
    stopped = ["interrupted first"] if mode == "loop" else []  # a killed worker writes nothing more
    assert lines(log) == ["start first", *stopped, "start second"]


@pytest.mark.asyncio
async def test_a_worker_that_dies_fails_its_node_with_a_clear_error(ray_backend: RayBackend) -> None:
    @tool
    def crash() -> None:
        os._exit(1)

    result = await Executor(ToolRegistry([crash, pick]), backend=ray_backend).run(
        [node(1, "crash"), node(2, "pick", item=5)]
    )
    error = result.records[1].error
    assert error is not None and error.kind == "tool_error"
    assert "tool 'crash' failed on the Ray cluster" in error.message
    assert "died" in error.message.lower()
    assert result.records[2].output == 5


@pytest.mark.asyncio
async def test_an_actor_that_dies_fails_its_node_and_the_pool_replaces_it(ray_cluster: None) -> None:
    @tool
    async def die() -> None:
        os._exit(1)

    @tool
    async def pid() -> int:
        return os.getpid()

    async with RayBackend(RayConfig(actors=1)) as backend:
        executor = Executor(ToolRegistry([die, pid]), backend=backend)
        before = await executor.run([node(1, "pid")])
        died = await executor.run([node(1, "die")])
        after = await executor.run([node(1, "pid")])
    error = died.records[1].error
    assert error is not None and error.kind == "tool_error"
    assert "the Ray actor running tool 'die' died" in error.message
    assert after.succeeded
    assert after.records[1].output != before.records[1].output


@pytest.mark.asyncio
async def test_per_tool_resources_reach_ray(ray_cluster: None) -> None:
    @tool
    def two_cpus() -> dict[str, float]:
        import ray

        return dict(ray.get_runtime_context().get_assigned_resources())

    @tool
    def one_cpu() -> dict[str, float]:
        import ray

        return dict(ray.get_runtime_context().get_assigned_resources())

    @tool
    async def licensed() -> dict[str, float]:
        import ray

        return dict(ray.get_runtime_context().get_assigned_resources())

    config = RayConfig(
        actors=1, tools={"two_cpus": RayResources(num_cpus=2), "licensed": RayResources(resources={"licence": 1})}
    )
    async with RayBackend(config) as backend:
        result = await Executor(ToolRegistry([two_cpus, one_cpu, licensed]), backend=backend).run(
            [node(1, "two_cpus"), node(2, "one_cpu"), node(3, "licensed")]
        )
    assert result.succeeded, result.records
    assert result.records[1].output == {"CPU": 2.0}
    assert result.records[2].output == {"CPU": 1.0}
    assert result.records[3].output == {"licence": 1.0}


@pytest.mark.asyncio
async def test_a_tool_whose_module_the_workers_cannot_import_fails_with_the_reason(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    source = tmp_path / "private_tools.py"
    # The @tool function itself is pickled by value (its module's attribute is the tool, not the function),
    # but the helper it calls is pickled by reference to its module.
    source.write_text(
        "from agentdag.toolsets import tool\n\n\ndef value() -> int:\n    return 1\n\n\n"
        "@tool\ndef hidden() -> int:\n    return value()\n"
    )
    spec = importlib.util.spec_from_file_location("agentdag_private_tools", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # importable here (so pickled by reference), but not on the workers
    try:
        spec.loader.exec_module(module)
        result = await Executor(ToolRegistry([module.hidden]), backend=ray_backend).run([node(1, "hidden")])
    finally:
        del sys.modules[spec.name]
    error = result.records[1].error
    assert error is not None and error.kind == "tool_error"
    assert "tool 'hidden' cannot be loaded on this Ray worker" in error.message
    assert "agentdag_private_tools" in error.message


@pytest.mark.asyncio
async def test_mcp_tools_run_over_sessions_the_workers_open_and_close(ray_cluster: None, tmp_path: Path) -> None:
    config = McpServerConfig(
        name="flaky", command=["python", str(SERVERS / "flaky.py")], env={"FLAKY_STATE": str(tmp_path)}
    )
    async with McpToolset(config) as toolset:
        tools = ToolRegistry(toolset.tools)
        here = await tools["pid"].call({})
        assert _parent_of(here) == os.getpid()
        with pytest.raises(ToolError) as failed_here:
            await tools["fail"].call({"message": "nope"})
        async with RayBackend(RayConfig(actors=1)) as backend:
            result = await Executor(tools, backend=backend).run(
                [node(1, "pid"), node(2, "fail", message="nope"), node(3, "record", title="T", year=2024)]
            )
            there = result.records[1].output
            assert alive(there)
    # The worker's session is its own: another server process, not started by this one.
    assert isinstance(there, int)
    assert there != here
    # A failure reads as it does here.
    assert result.records[2].error is not None
    assert result.records[2].error.message == f"ToolError: {failed_here.value}"
    assert result.records[3].output == {"title": "T", "year": 2024, "tags": ["a", "b"]}
    # Closing the backend closed the worker's session, which stops the server it started.
    assert wait_for_exit([there]) == []


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


# -- clusters of their own, in subprocesses -------------------------------------------------------------

DRIVER = """
import json, os, sys
from pathlib import Path

import anyio

from agentdag.backends.ray import RayBackend, RayConfig
from agentdag.executor import Executor
from agentdag.plan import Node
from agentdag.toolsets import ToolRegistry, tool


@tool
def square(x: int) -> int:
    return x * x


@tool
async def double(x: int) -> int:
    return 2 * x


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


async def main() -> None:
    config = RayConfig.model_validate_json(sys.argv[1])
    async with RayBackend(config) as backend:
        nodes = [Node(id=1, tool="square", arguments={"x": 3}), Node(id=2, tool="double", arguments={"x": "$1"})]
        result = await Executor(ToolRegistry([square, double]), backend=backend).run(nodes)
        processes = descendants(os.getpid())
    print(json.dumps({"outputs": result.outputs, "processes": processes}))


anyio.run(main)
"""


def run_driver(config: RayConfig) -> dict[str, Any]:
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    environment["RAY_USAGE_STATS_ENABLED"] = "0"
    completed = subprocess.run(
        [sys.executable, "-c", DRIVER, config.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=100,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def test_a_backend_that_started_a_local_cluster_leaves_no_process_behind() -> None:
    pytest.importorskip("ray")
    report = run_driver(RayConfig(num_cpus=1, object_store_memory=80 * 2**20))
    assert report["outputs"] == {"1": 9, "2": 18}
    # The cluster's processes (GCS server, raylet, workers, the actor, ...) ran under the driver ...
    assert len(report["processes"]) >= 4
    # ... and none of them outlives the backend.
    assert wait_for_exit(report["processes"]) == []


def test_a_backend_joins_a_running_cluster_by_address_and_leaves_it_running() -> None:
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A short folder: Ray puts unix sockets under it, whose paths may not exceed ~107 characters.
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray_command = Path(sys.executable).parent / "ray"
    start = [str(ray_command), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"]
    start += ["--node-ip-address=127.0.0.1", f"--temp-dir={folder}", "--disable-usage-stats"]
    started = subprocess.run(start, capture_output=True, text=True, timeout=100)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        address = f"127.0.0.1:{port}"
        first = run_driver(RayConfig(address=address))
        second = run_driver(RayConfig(address=address))  # the first driver left the cluster running
        assert first["outputs"] == second["outputs"] == {"1": 9, "2": 18}
        # Joined, not started: the cluster's processes are not the drivers' children.
        assert not any("raylet" in _command_of(pid) for pid in first["processes"])
    finally:
        survivors = _stop_cluster(folder)
        shutil.rmtree(folder, ignore_errors=True)
    assert survivors == []


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stop_cluster(folder: str) -> list[int]:
    """Kill the processes of the cluster whose files live in `folder` (not `ray stop`, which stops all)."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    members = [pid for pid in pids if folder in _command_of(pid)]
    workers = [pid for pid in pids if _parent_in(pid, members)]
    for pid in members + workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return wait_for_exit(members + workers)


def _parent_in(pid: int, parents: list[int]) -> bool:
    try:
        return _parent_of(pid) in parents
    except (OSError, IndexError):
        return False


# -- from a task file --------------------------------------------------------------------------------


@tool
def worker_pid() -> int:
    """The process id of the process running this tool."""
    return os.getpid()


@tool
async def big_text(size: int) -> str:
    """A text of `size` characters."""
    return "x" * size


def test_a_task_file_runs_its_plan_on_ray_and_its_answer_holds_values(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "task: Where do the tools run?\n"
        "tools: ['test_backends_ray:worker_pid', 'test_backends_ray:big_text']\n"
        "backend: {kind: ray, inline_bytes: 1000}\n"
        "plan:\n"
        "  - {id: 1, tool: worker_pid}\n"
        "  - {id: 2, tool: big_text, arguments: {size: 200000}}\n"
        "answer: {pid: '$1', text: '$2'}\n"
    )
    assert main(["run", str(task), "--json", "--no-state", "--no-trace"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"]["pid"] != os.getpid(), "the sync tool ran in a Ray worker, not in this process"
    assert result["answer"]["text"] == "x" * 200_000, "the answer holds the value kept in the object store"
    (kept,) = [item for item in result["nodes"] if item["id"] == 2]
    assert kept["output"]["bytes"] > 200_000 and "$ray" in kept["output"], "the record holds the placeholder"


def test_a_task_file_with_a_misspelt_ray_key_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("task: x\nbackend: {kind: ray, adress: 'h:6379'}\nplan: [{id: 1, tool: noop}]\n")
    assert main(["run", str(task), "--no-state"]) == EXIT_BAD_INPUT
    assert "backend.ray.adress: unknown key" in capsys.readouterr().err
