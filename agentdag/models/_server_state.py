"""The state file through which runs find a standalone embedded server (`agentdag serve`) and reuse it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ServerState",
    "check_health",
    "find_running_server",
    "read_server_state",
    "remove_server_state",
    "server_state_path",
    "write_server_state",
]


class ServerState(BaseModel):
    """What `agentdag serve` records about the server it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    """The OpenAI-compatible API root, ending in `/v1`."""
    pid: int
    model: str
    model_path: str
    slots: int
    ctx_per_slot: int
    threads: int


def server_state_path() -> Path:
    """Where the state file lives.

    `$AGENTDAG_SERVER_STATE` if set, else `$XDG_RUNTIME_DIR/agentdag/server.json`, else
    `~/.cache/agentdag/server.json`.
    """
    override = os.environ.get("AGENTDAG_SERVER_STATE")
    if override:
        return Path(override)
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime_dir) / "agentdag" if runtime_dir else Path.home() / ".cache" / "agentdag"
    return base / "server.json"


def read_server_state() -> ServerState | None:
    """Read the state file; `None` when it is absent or unreadable."""
    try:
        return ServerState.model_validate_json(server_state_path().read_bytes())
    except (OSError, ValidationError):
        return None


def write_server_state(state: ServerState) -> Path:
    """Write the state file atomically, readable by this user only, and return its path."""
    path = server_state_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(state.model_dump_json(indent=2))
    os.replace(partial, path)
    return path


def remove_server_state(*, pid: int) -> None:
    """Remove the state file if it still describes the server of process `pid`."""
    state = read_server_state()
    if state is not None and state.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            server_state_path().unlink()


async def check_health(url: str, *, timeout_s: float = 2.0) -> bool:
    """Whether the llama.cpp server whose API root is `url` answers `/health` with status ok."""
    root = url.removesuffix("/").removesuffix("/v1")
    try:
        async with httpx2.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(f"{root}/health")
            return response.status_code == 200 and response.json().get("status") == "ok"
    except (httpx2.HTTPError, ValueError, AttributeError):
        return False


async def find_running_server(*, timeout_s: float = 2.0) -> ServerState | None:
    """The standalone server recorded in the state file, if its process is alive and it answers `/health`.

    A state file whose process is gone is stale and removed.
    """
    state = read_server_state()
    if state is None:
        return None
    if not _process_alive(state.pid):
        remove_server_state(pid=state.pid)
        return None
    return state if await check_health(state.url, timeout_s=timeout_s) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True
