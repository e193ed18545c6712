"""MCP toolsets: in-process servers for speed, real stdio subprocesses for the supervisor and interop."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentdag import Executor, Node, ToolRegistry
from agentdag.errors import AgentdagError, ToolError
from agentdag.toolsets.mcp import McpToolset, open_mcp_toolsets
from agentdag.toolsets.mcp_config import McpServerConfig

SERVERS = Path(__file__).parent / "servers"


def flaky_config(tmp_path: Path, **options: object) -> McpServerConfig:
    return McpServerConfig(
        name="flaky",
        command=["python", str(SERVERS / "flaky.py")],
        env={"FLAKY_STATE": str(tmp_path)},
        **options,  # type: ignore[arg-type]
    )


def load_flaky_server() -> Any:
    """The flaky server object itself, for in-process sessions."""
    spec = importlib.util.spec_from_file_location("flaky_server", SERVERS / "flaky.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.server


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped or marked Z.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


@pytest.mark.asyncio
async def test_in_process_server_tools_are_listed_with_schemas_and_annotations() -> None:
    server = load_flaky_server()
    async with McpToolset(McpServerConfig(name="flaky", url="http://unused.invalid"), server=server) as toolset:
        tools = {tool.name: tool for tool in toolset.tools}
        assert {"pid", "crash_once_read", "slow", "fail", "record"} <= set(tools)
        assert tools["record"].input_schema["properties"]["year"]["type"] == "integer"
        assert tools["crash_once_read"].policy.read_only
        assert not tools["crash_once_write"].policy.idempotent
        assert await tools["record"].call({"title": "Dune", "year": 1965}) == {
            "title": "Dune",
            "year": 1965,
            "tags": ["a", "b"],
        }
        with pytest.raises(ToolError, match=r"fail: .*no luck"):
            await tools["fail"].call({"message": "no luck"})


@pytest.mark.asyncio
async def test_mcp_calls_run_as_dag_nodes_in_parallel_and_errors_fail_only_their_node() -> None:
    server = load_flaky_server()
    config = McpServerConfig(name="flaky", url="http://unused.invalid", max_concurrency=4)
    async with McpToolset(config, server=server) as toolset:
        executor = Executor(ToolRegistry(toolset.tools))
        nodes = [Node(id=index, tool="slow", arguments={"seconds": 0.3}) for index in range(1, 5)]
        nodes += [
            Node(id=5, tool="fail", arguments={"message": "boom"}),
            Node(id=6, tool="record", arguments={"title": "$1", "year": 2000}),
        ]
        started = anyio.current_time()
        result = await executor.run(nodes)
        elapsed = anyio.current_time() - started
    assert [result.records[index].status for index in range(1, 5)] == ["done"] * 4
    assert result.records[5].status == "failed"
    assert result.records[5].error is not None and "boom" in result.records[5].error.message
    assert result.records[6].output == {"title": "slept", "year": 2000, "tags": ["a", "b"]}
    assert elapsed < 1.1  # four 0.3 s calls overlapped on one session (sequential would take 1.2 s)


@pytest.mark.asyncio
async def test_per_call_timeout_fails_the_call_and_the_session_stays_usable() -> None:
    server = load_flaky_server()
    config = McpServerConfig(name="flaky", url="http://unused.invalid", timeout_s=0.2)
    async with McpToolset(config, server=server) as toolset:
        tools = {tool.name: tool for tool in toolset.tools}
        with pytest.raises(ToolError, match=r"no reply within 0.2 s"):
            await tools["slow"].call({"seconds": 5})
        assert await tools["slow"].call({"seconds": 0.01}) == "slept"


@pytest.mark.asyncio
async def test_stdio_server_restarts_after_a_crash_and_read_only_calls_are_retried(tmp_path: Path) -> None:
    async with McpToolset(flaky_config(tmp_path)) as toolset:
        tools = {tool.name: tool for tool in toolset.tools}
        first_pid = await tools["pid"].call({})
        assert await tools["crash_once_read"].call({"key": "a"}) == "read a"
        assert toolset.restarts == 1
        second_pid = await tools["pid"].call({})
        assert second_pid != first_pid
        assert not alive(int(first_pid))  # type: ignore[arg-type]
    assert not alive(int(second_pid))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_calls_with_side_effects_are_not_retried_after_a_crash(tmp_path: Path) -> None:
    async with McpToolset(flaky_config(tmp_path)) as toolset:
        tools = {tool.name: tool for tool in toolset.tools}
        with pytest.raises(ToolError, match=r"died during the call.*may have side effects, so it is not retried"):
            await tools["crash_once_write"].call({"key": "w"})
        # The server came back for the next call.
        assert await tools["crash_once_write"].call({"key": "w"}) == "wrote w"


@pytest.mark.asyncio
async def test_a_server_that_keeps_dying_is_given_up_with_a_clear_error(tmp_path: Path) -> None:
    async with McpToolset(flaky_config(tmp_path, max_restarts=1)) as toolset:
        tools = {tool.name: tool for tool in toolset.tools}
        await tools["crash_once_read"].call({"key": "x"})  # crash 1, restart 1
        with pytest.raises(ToolError, match=r"not retried|retried once"):
            await tools["crash_once_write"].call({"key": "y"})  # crash 2: no restarts left
        with pytest.raises(ToolError, match="is down after 1 restart"):
            await tools["pid"].call({})


@pytest.mark.asyncio
async def test_a_server_that_cannot_start_gets_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('missing config file', file=sys.stderr)\nsys.exit(2)\n")
    config = McpServerConfig(name="bad", command=["python", str(bad)], max_restarts=0, startup_timeout_s=20)
    with pytest.raises(AgentdagError, match=r"bad.*(failed to start|did not start).*missing config file"):
        async with McpToolset(config):
            pass


@pytest.mark.asyncio
async def test_tool_allow_list_and_prefix(tmp_path: Path) -> None:
    config = flaky_config(tmp_path, tools=["pid", "record"], prefix=True)
    async with McpToolset(config) as toolset:
        assert sorted(tool.name for tool in toolset.tools) == ["flaky.pid", "flaky.record"]
    with pytest.raises(AgentdagError, match="has no tool"):
        async with McpToolset(flaky_config(tmp_path, tools=["nope"])):
            pass


def test_config_needs_exactly_one_transport() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        McpServerConfig(name="x")
    with pytest.raises(ValueError, match="exactly one"):
        McpServerConfig(name="x", command="a", url="http://b")
    assert McpServerConfig(name="x", command="python -m thing --flag 'a b'").argv()[1:] == [
        "-m",
        "thing",
        "--flag",
        "a b",
    ]


@pytest.mark.asyncio
async def test_mcp_server_time_over_stdio_with_concurrent_calls() -> None:
    config = McpServerConfig(name="time", command=["python", "-m", "mcp_server_time", "--local-timezone", "UTC"])
    async with open_mcp_toolsets([config]) as (toolset,):
        tools = {tool.name: tool for tool in toolset.tools}
        assert "get_current_time" in tools
        executor = Executor(ToolRegistry(toolset.tools))
        zones = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York", "Australia/Sydney"]
        result = await executor.run(
            [
                Node(id=index, tool="get_current_time", arguments={"timezone": zone})
                for index, zone in enumerate(zones, 1)
            ]
        )
    assert result.succeeded
    outputs = [result.records[index].output for index in range(1, 6)]
    assert [output["timezone"] for output in outputs] == zones  # type: ignore[index]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit and one untracked file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    (repo / "a.txt").write_text("hello\n")
    subprocess.run([*git, "add", "a.txt"], check=True, timeout=30)
    subprocess.run([*git, "commit", "-q", "-m", "first commit"], check=True, timeout=30)
    (repo / "b.txt").write_text("new\n")
    return repo


@pytest.mark.asyncio
async def test_mcp_server_git_over_stdio(repo: Path) -> None:
    config = McpServerConfig(name="git", command=[sys.executable, "-m", "mcp_server_git", "--repository", str(repo)])
    async with open_mcp_toolsets([config]) as (toolset,):
        tools = {tool.name: tool for tool in toolset.tools}
        executor = Executor(ToolRegistry(toolset.tools))
        result = await executor.run(
            [
                Node(id=1, tool="git_status", arguments={"repo_path": str(repo)}),
                Node(id=2, tool="git_log", arguments={"repo_path": str(repo)}),
            ]
        )
    assert {"git_status", "git_log"} <= set(tools)
    assert result.succeeded
    assert "b.txt" in str(result.records[1].output)
    assert "first commit" in str(result.records[2].output)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def http_calculator() -> Iterator[str]:
    """The calculator MCP server over streamable HTTP on a free loopback port; yields its URL."""
    import socket
    import time

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentdag.tools.calculator", "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.asyncio
async def test_a_server_over_streamable_http(http_calculator: str) -> None:
    config = McpServerConfig(name="calc", url=http_calculator)
    async with McpToolset(config) as toolset:
        (calculate,) = toolset.tools
        assert await calculate.call({"expression": "6 * 7"}) == 42
