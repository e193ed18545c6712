"""Shared fixtures: no test may reach a real network model by accident."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _is_local(address: Any) -> bool:
    if isinstance(address, str | bytes):  # a unix socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def private_server_state(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests from finding (or leaving behind) a real `agentdag serve` of the developer's."""
    monkeypatch.setenv("AGENTDAG_SERVER_STATE", str(tmp_path_factory.mktemp("state") / "server.json"))


@pytest.fixture(autouse=True)
def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection that leaves this machine, and point OpenAI clients at nothing."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://network-blocked.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the whole session (2 CPUs, a small object store); skips where Ray is absent.

    Ray backends opened in tests find this process connected and use the cluster without shutting it down.
    The workers import test modules (tools defined in tests are pickled by reference to them) from here.
    """
    ray = pytest.importorskip("ray")
    tests = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        object_store_memory=80 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        resources={"licence": 1},  # a custom resource, for the per-tool resource tests
        runtime_env={"env_vars": {"PYTHONPATH": tests}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_backend(ray_cluster: None) -> Iterator[Any]:
    """One open `RayBackend` on the session's cluster, its actors and workers started, for tests to share.

    A backend keeps nothing tied to an event loop, so each test's loop may use it. Starting a Ray worker
    takes seconds on a busy machine; warming them up here keeps that out of the tests' deadlines.
    """
    import anyio

    from agentdag.backends.ray import RayBackend, RayConfig
    from agentdag.executor import Executor
    from agentdag.plan import Node
    from agentdag.toolsets import ToolRegistry, tool

    @tool
    async def warm_actor(index: int) -> int:
        await anyio.sleep(0.2)
        return index

    @tool
    def warm_worker(index: int) -> int:
        time.sleep(0.2)
        return index

    backend = RayBackend(RayConfig(cancel_grace_s=5.0))
    # Two of each at once: the pool starts its second actor when the first is busy, Ray a second worker.
    nodes = [
        Node(id=index, tool=name, arguments={"index": index})
        for index, name in enumerate(["warm_actor"] * 2 + ["warm_worker"] * 2)
    ]

    async def open_and_warm() -> None:
        await backend.__aenter__()
        result = await Executor(ToolRegistry([warm_actor, warm_worker]), backend=backend).run(nodes)
        assert result.succeeded, result.records

    anyio.run(open_and_warm)
    yield backend
    anyio.run(backend.__aexit__, None, None, None)


STUB = Path(__file__).parent.parent / "examples" / "data" / "openai_stub.py"


@pytest.fixture
def openai_stub() -> Iterator[str]:
    """The example's scripted OpenAI-compatible server, on a free loopback port."""
    process = subprocess.Popen(
        [sys.executable, str(STUB), "--port", "0", "--delay-s", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
