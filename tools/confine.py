"""Confinement for tools that act on a workspace: paths stay under a root, commands in a bounded process group.

`confine` resolves a relative path under a root. A path is refused when it is absolute, when its `..` parts
climb out of the root, or when it resolves (following every symlink on the way) to a place outside the root.
That check runs on the path as it is at call time, so a symlink swapped in before the path is used is not
caught by it. `open_confined` closes that gap: it opens the path one component at a time, each relative to
a descriptor of the folder before it and with `O_NOFOLLOW`, reads any symlink it meets and walks its target
the same way, and refuses a target that climbs above the root. Nothing it opens is looked up by name twice.

`run_command` runs a command without a shell, in its own session, under an address space limit, killing
its whole process group when it times out, finishes or is cancelled, and keeps a bounded head and tail of
its output. Processes that leave the group (`setsid`, daemons) are found through a random tag in the
environment they inherit, and killed too; only one that execs with a scrubbed environment escapes that.
These limits bound a run; they do not sandbox it: the command can read and write whatever the user can.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import anyio
import anyio.abc
from pydantic import BaseModel, ConfigDict

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "PathEscapeError", "TestRun", "confine", "open_confined", "run_command"]

DEFAULT_MAX_OUTPUT_BYTES = 20_000
_KILL_GRACE_S = 5.0
_MAX_PATH_BYTES = 4_096  # Linux's PATH_MAX and NAME_MAX: longer paths fail in every file call
_MAX_NAME_BYTES = 255
_RUN_TAG = "AGENTDAG_RUN_TAG"
_MAX_SWEEPS = 5
_MAX_SYMLINKS = 40  # Linux's limit on symlinks followed in one lookup
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NOFOLLOW met a symlink: ELOOP (EMLINK on FreeBSD), or ENOTDIR along with O_DIRECTORY.
_SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})


class PathEscapeError(ValueError):
    """A path names a place outside the confinement root, or is not a usable relative path."""


def confine(root: Path, path: str) -> Path:
    """The resolved location of the relative `path` inside `root` (which must be resolved already).

    The result may not exist yet (for a file about to be written); every existing part of it is inside `root`.

    Raises:
        PathEscapeError: `path` is empty, absolute, holds a NUL byte, climbs out with `..`, resolves
            through a symlink to a place outside `root`, or is no usable file name (too long, or a lone
            surrogate).
    """
    _refuse_malformed(path)
    try:
        resolved = (root / path).resolve()
        encoded = os.fsencode(resolved)
    # RuntimeError: a symlink loop (before Python 3.13); ValueError: a lone surrogate, which no file name holds.
    except (OSError, RuntimeError, ValueError) as error:
        raise PathEscapeError(f"the path {path!r} cannot be resolved: {error}") from None
    if not resolved.is_relative_to(root):
        raise PathEscapeError(f"the path {path!r} resolves outside the workspace (through a symlink)")
    if len(encoded) >= _MAX_PATH_BYTES or any(len(os.fsencode(part)) > _MAX_NAME_BYTES for part in resolved.parts):
        raise PathEscapeError(f"the path {path[:60]!r}… is too long for the file system")
    return resolved


def open_confined(root: Path, path: str, flags: int, *, make_folders: bool = False) -> tuple[int, PurePosixPath]:
    """Open the relative `path` inside `root` (resolved already) without ever following a name out of it.

    After refusing a malformed path (empty, NUL, absolute, `..` out, as `confine` does), it walks the path
    from a descriptor of the root: each folder is opened relative to the one before it with `O_NOFOLLOW`,
    and the last component with `flags | O_NOFOLLOW | O_NONBLOCK` (so a FIFO does not block the open). A
    symlink met on the way, even one swapped in after a `confine` check, is read relative to its folder and
    its target walked in its place; a target that climbs above the root is refused. Nothing is looked up by
    a name that starts outside the root. The caller owns the descriptor returned.

    Args:
        root: the confinement root.
        path: a path relative to it.
        flags: `os.open` flags for the last component (`O_CREAT` creates a file, never a folder).
        make_folders: create the missing folders on the way.

    Returns:
        The descriptor and where it was found, relative to the root (`.` for the root itself); a path
        that ends in the root or a folder (`.`, `pkg/..`) gives a read-only descriptor of that folder.

    Raises:
        PathEscapeError: a malformed path, a symlink that leads out (also one swapped in after a `confine`
            check of the same path), or a symlink loop.
        OSError: the open failed (`FileNotFoundError`, `NotADirectoryError`, `IsADirectoryError`, …).
    """
    _refuse_malformed(path)
    pending = list(reversed(path.split("/")))  # the components still to walk, the next one last
    folders = [os.open(root, _FOLDER_FLAGS)]  # from the root down to the folder being walked
    names: list[str] = []
    hops = 0
    try:
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not names:
                    raise PathEscapeError(f"the path {path!r} resolves outside the workspace (through a symlink)")
                os.close(folders.pop())
                names.pop()
                continue
            last = all(rest in ("", ".") for rest in pending)
            try:
                if last:
                    return _open_last(name, flags, folders[-1]), PurePosixPath(*names, name)
                folders.append(_open_folder(name, folders[-1], make_folders=make_folders))
                names.append(name)
                continue
            except OSError as error:
                if error.errno not in _SYMLINK_ERRNOS:
                    raise
                try:
                    target = os.readlink(name, dir_fd=folders[-1])
                except OSError:
                    raise error from None  # not a symlink after all
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise PathEscapeError(f"the path {path!r} cannot be resolved: too many levels of symbolic links")
            if target.startswith("/"):
                if not PurePosixPath(target).is_relative_to(root):
                    raise PathEscapeError(f"the path {path!r} resolves outside the workspace (through a symlink)")
                while len(folders) > 1:  # an absolute target inside the root: walk it from the root
                    os.close(folders.pop())
                names.clear()
                target = PurePosixPath(target).relative_to(root).as_posix()
            pending.extend(reversed(target.split("/")))
        return os.dup(folders[-1]), PurePosixPath(*names)
    finally:
        for folder in folders:
            os.close(folder)


def _open_last(name: str, flags: int, folder: int) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666, dir_fd=folder)


def _open_folder(name: str, folder: int, *, make_folders: bool) -> int:
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        if not make_folders:
            raise
    with contextlib.suppress(FileExistsError):  # made by someone else meanwhile: open whatever is there
        os.mkdir(name, dir_fd=folder)
    return os.open(name, _FOLDER_FLAGS, dir_fd=folder)


def _refuse_malformed(path: str) -> None:
    """Refuse what no lookup is needed to refuse: an empty path, a NUL byte, an absolute path, `..` out."""
    if not path.strip():
        raise PathEscapeError("the path is empty; use '.' for the workspace root")
    if "\x00" in path:
        raise PathEscapeError(f"the path {path!r} contains a NUL byte")
    if os.path.isabs(path) or PurePosixPath(path).is_absolute():
        raise PathEscapeError(f"absolute paths are refused ({path!r}); give a path relative to the workspace root")
    depth = 0
    for part in PurePosixPath(path.replace("\\", "/")).parts:
        depth = depth - 1 if part == ".." else depth + (part != ".")
        if depth < 0:
            raise PathEscapeError(f"the path {path!r} leads outside the workspace ('..' climbs above the root)")


# Runs in the child: limit the address space, then become the command (no shell, no preexec_fn).
_LAUNCHER = """\
import os, resource, sys
limit = int(sys.argv[1])
if limit > 0:
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as error:
    sys.stderr.write(f"cannot run {sys.argv[2]!r}: {error}\\n")
    sys.exit(127)
"""


class TestRun(BaseModel):
    """The outcome of a test command.

    Attributes:
        exit_code: the command's exit status; negative for a signal (-9 after a timeout).
        passed: whether it exited 0 within the timeout.
        output: standard output and error, interleaved; the middle is cut out when it is too long.
    """

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="forbid", frozen=True)

    exit_code: int
    passed: bool
    timed_out: bool
    output: str


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float,
    memory_bytes: int = 0,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    env: Mapping[str, str] | None = None,
) -> TestRun:
    """Run `argv` (no shell) in `cwd` in a new session, killing its whole process group on timeout.

    A leading `python` or `python3` runs this interpreter. Output (stdout and stderr, interleaved) keeps its
    first and last `max_output_bytes / 2` bytes. When the command exits, any process it left behind in its
    group is killed too; cancelling the call kills the group as well.

    Args:
        argv: the command and its arguments.
        cwd: where it runs.
        timeout_s: wall-clock limit.
        memory_bytes: the address space limit (RLIMIT_AS) of the command; 0 for none.
        max_output_bytes: the bound on the returned output.
        env: the command's environment (default: this process's).
    """
    program = [sys.executable, *argv[1:]] if argv[0] in ("python", "python3") else list(argv)
    output = _BoundedOutput(max_output_bytes)
    launcher = [sys.executable, "-c", _LAUNCHER, str(memory_bytes), *program]
    tag = secrets.token_hex(16)
    async with await anyio.open_process(
        launcher,
        cwd=cwd,
        env={**(os.environ if env is None else env), _RUN_TAG: tag},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as process:
        try:
            with anyio.move_on_after(timeout_s) as deadline:
                async with anyio.create_task_group() as group:
                    group.start_soon(_drain, process, output)
                    await process.wait()
                    _kill_run(process.pid, tag)  # leftovers would hold the pipe open
        finally:
            _kill_run(process.pid, tag)
            with anyio.CancelScope(shield=True), anyio.move_on_after(_KILL_GRACE_S):
                await process.wait()
    timed_out = deadline.cancelled_caught
    exit_code = process.returncode if process.returncode is not None else -signal.SIGKILL
    if timed_out:
        output.feed(f"\n[timed out after {timeout_s:g} s: the process group was killed]\n".encode())
    return TestRun(
        exit_code=exit_code, passed=exit_code == 0 and not timed_out, timed_out=timed_out, output=output.text()
    )


async def _drain(process: anyio.abc.Process, output: _BoundedOutput) -> None:
    if process.stdout is not None:
        async for chunk in process.stdout:
            output.feed(chunk)


def _kill_run(pid: int, tag: str) -> None:
    """Kill the command's process group, then every process that still carries the run's tag.

    A process that left the group (`setsid`, a daemon) is found by the tag its environment inherited.
    """
    with contextlib.suppress(OSError):  # the group is gone already
        os.killpg(pid, signal.SIGKILL)
    marker = f"{_RUN_TAG}={tag}".encode()
    for _ in range(_MAX_SWEEPS):  # again, for processes forked while the last sweep ran
        tagged = _tagged_processes(marker)
        if not tagged:
            return
        for other in tagged:
            with contextlib.suppress(OSError):
                os.kill(other, signal.SIGKILL)


def _tagged_processes(marker: bytes) -> list[int]:
    """The live processes whose environment holds `marker` (none where there is no /proc)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:  # a zombie's environment reads as empty; another user's cannot be read
            with open(f"/proc/{name}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


class _BoundedOutput:
    """The first and last `limit / 2` bytes of a stream, and how much was cut out between them."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = self._half - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        del self._tail[: max(len(self._tail) - self._half, 0)]

    def text(self) -> str:
        omitted = self._total - len(self._head) - len(self._tail)
        middle = f"\n[... {omitted} bytes of output omitted ...]\n".encode() if omitted else b""
        return bytes(self._head + middle + self._tail).decode("utf-8", errors="replace")
