"""What a process holds at one moment: file descriptors, threads (pool threads apart), child processes.

The load benchmark counts them before and after its runs; tests use `child_pids` to see that nothing was
left behind.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

__all__ = ["Resources", "child_pids", "settle", "snapshot_resources", "wait_for_exits"]

_ANYIO_WORKER = "AnyIO worker thread"
_EXECUTOR_THREAD = "asyncio_"  # asyncio's default executor (getaddrinfo runs there)
_SETTLE_EXIT_S = 0.5
_EXIT_WAIT_S = 2.0
_EXIT_POLL_S = 0.1


def child_pids() -> set[int]:
    """The ids of this process's child processes, zombies included (read from /proc)."""
    me = os.getpid()
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the command name (which may hold spaces and parentheses): state, ppid, ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me:
            children.add(int(entry.name))
    return children


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """What the process holds at one moment.

    Attributes:
        fds: open file descriptors (/proc/self/fd).
        threads: OS threads (/proc/self/task), native ones such as llama.cpp's included.
        python_threads: `threading.active_count()`.
        anyio_workers: anyio's worker threads, idle or busy (retired after 10 s idle).
        executor_threads: asyncio's default executor threads (kept until the event loop closes).
        children: child processes, zombies included.
    """

    fds: int
    threads: int
    python_threads: int
    anyio_workers: int
    executor_threads: int
    children: int

    @property
    def threads_besides_pools(self) -> int:
        """OS threads that are not pool threads: what must come back to the baseline at once."""
        return self.threads - self.pool_threads

    @property
    def pool_threads(self) -> int:
        """Threads that pools keep for reuse: anyio's workers and asyncio's executor."""
        return self.anyio_workers + self.executor_threads


def snapshot_resources() -> Resources:
    """Count the process's file descriptors, threads and child processes now."""
    names = [thread.name for thread in threading.enumerate()]
    return Resources(
        fds=len(os.listdir("/proc/self/fd")),
        threads=len(os.listdir("/proc/self/task")),
        python_threads=threading.active_count(),
        anyio_workers=names.count(_ANYIO_WORKER),
        executor_threads=sum(1 for name in names if name.startswith(_EXECUTOR_THREAD)),
        children=len(child_pids()),
    )


async def settle(settle_s: float) -> Resources:
    """Wait out anyio's idle-thread timeout, let it retire the expired workers, and count again."""
    await anyio.sleep(settle_s)
    await anyio.to_thread.run_sync(_nothing)  # anyio retires idle workers only when it hands out a thread
    await anyio.sleep(_SETTLE_EXIT_S)  # retired workers exit on their own, soon after
    return snapshot_resources()


async def wait_for_exits(baseline: Resources) -> Resources:
    """Count again until no more non-pool threads run than at `baseline`, for at most two seconds.

    A model server that has just stopped has told its native threads to end; they exit on their own, a
    moment later. Threads still there after the wait count as left behind.
    """
    now = snapshot_resources()
    with anyio.move_on_after(_EXIT_WAIT_S):
        while now.threads_besides_pools > baseline.threads_besides_pools:
            await anyio.sleep(_EXIT_POLL_S)
            now = snapshot_resources()
    return now


def _nothing() -> None:
    return None
