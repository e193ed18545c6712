"""The `workspace` MCP server: list, read, write and patch files under one root directory, and run its tests.

Run it over stdio (or streamable HTTP on 127.0.0.1 with `--http PORT`)::

    python -m agentdag.tools.workspace --root DIR --test-command "python -m pytest -q" --timeout-s 60 \
        --max-file-bytes 4194304

With `--copy-of DIR` instead of `--root DIR` the server works on a fresh temporary copy of DIR, removed
when it exits, so an example or a demo never changes the files it starts from.

Tools:

* `list_files(path=".") -> {files, truncated}` (read-only): the files under `path`, recursively;
* `read_file(path, start_line=None, end_line=None) -> str` (read-only): the text, or lines `start..end` (1-based);
* `write_file(path, content) -> str`: create or replace a file (and its folders);
* `patch_file(path, old, new) -> str`: replace the one exact occurrence of `old`;
* `run_tests(command=None) -> {exit_code, passed, timed_out, output}`: run the test command in the root.

Every path is relative to the root; absolute paths, `..` that climbs out and symlinks that lead out are
refused as tool errors, and the file is opened by walking its path from a descriptor of the root
(`confine.open_confined`), so a symlink swapped in meanwhile cannot lead out either. Only regular files are
read or written (a FIFO, socket or device is refused without blocking), none larger than `--max-file-bytes`
(checked before any byte is read or written), and the file work runs in a worker thread, one call at a time,
so it never stalls the event loop. Tests run without a shell (`shlex.split`), in their own session, under an address
space limit; on timeout the whole process group is killed (some buggy programs loop forever), and the
output keeps its head and tail within a bound.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import posixpath
import shlex
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from .confine import DEFAULT_MAX_OUTPUT_BYTES, PathEscapeError, TestRun, confine, open_confined, run_command
from .transport import add_transport_arguments, serve

__all__ = ["FileListing", "TestRun", "WorkspaceConfig", "create_server", "main", "run_command"]

DEFAULT_TEST_COMMAND = "python -m pytest -q"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_MB = 2048
DEFAULT_MAX_FILE_BYTES = 4 * 2**20
MAX_LISTED_FILES = 1_000
MAX_READ_CHARS = 200_000
SKIPPED_FOLDERS = frozenset({".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv"})

_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False)
_OVERWRITE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False)
_MODIFY = ToolAnnotations(read_only_hint=False, idempotent_hint=False, destructive_hint=True, open_world_hint=False)
_READ_CHUNK_BYTES = 2**20
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceConfig:
    """Where the workspace is and how its tests run.

    Attributes:
        root: the directory every path is relative to (resolved by `create_server`).
        test_command: what `run_tests` runs by default, split like a POSIX shell would (no shell runs it);
            a leading `python`/`python3` means this server's interpreter.
        timeout_s: the test run's wall-clock limit, after which its whole process group is killed.
        memory_mb: the test run's address space limit (RLIMIT_AS) in MiB; 0 for none.
        max_output_bytes: how much output `run_tests` returns (its head and tail when longer).
        max_file_bytes: the largest file `read_file` and `patch_file` read and `write_file` and `patch_file`
            write, checked before any byte is read or written.
    """

    root: Path
    test_command: str = DEFAULT_TEST_COMMAND
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


class FileListing(BaseModel):
    """Files under a folder, relative to the workspace root, sorted; `truncated` if some were left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: list[str]
    truncated: bool = False


def create_server(config: WorkspaceConfig) -> MCPServer[Any]:
    """An MCP server with the file and test tools over `config.root`.

    File operations run in a worker thread one at a time, so each call is atomic with respect to the others
    (two parallel patches of one file both apply) and none stalls the event loop; tests run as subprocesses
    alongside them.

    Raises:
        NotADirectoryError: the root is not a directory.
    """
    root = config.root.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"the workspace root {config.root} is not a directory")
    limit = config.max_file_bytes
    file_work = anyio.CapacityLimiter(1)
    server: MCPServer[Any] = MCPServer(
        "agentdag-workspace",
        instructions="Files of one code workspace: paths are relative to its root. Run its tests with run_tests.",
        log_level="WARNING",
    )

    async def in_thread(function: Callable[..., _T], *args: Any) -> _T:
        return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=file_work)

    @server.tool(annotations=_READ_ONLY, structured_output=True)
    async def list_files(path: str = ".") -> FileListing:
        """List the files under `path` (a folder or a file, relative to the workspace root), recursively."""
        return await in_thread(_list, root, path)

    read_description = (
        "Return a text file's content, or only lines `start_line` to `end_line` (1-based, inclusive); "
        f"files over {limit} bytes are refused."
    )

    @server.tool(annotations=_READ_ONLY, description=read_description)
    async def read_file(
        path: str,
        start_line: Annotated[int | None, Field(ge=1, description="first line to return (1-based)")] = None,
        end_line: Annotated[int | None, Field(ge=1, description="last line to return (inclusive)")] = None,
    ) -> str:
        """Return a text file's content, or only lines `start_line` to `end_line` (1-based, inclusive)."""
        text = await in_thread(_read, root, path, limit)
        if start_line is None and end_line is None:
            if len(text) > MAX_READ_CHARS:
                raise ToolError(f"{path!r} has {len(text)} characters; read it in parts with start_line/end_line")
            return text
        lines = text.splitlines(keepends=True)
        first, last = start_line or 1, end_line or len(lines)
        if first > last or first > max(len(lines), 1):
            raise ToolError(f"no lines {first}-{last} in {path!r}: it has {len(lines)} lines")
        part = "".join(lines[first - 1 : last])
        if len(part) > MAX_READ_CHARS:
            raise ToolError(f"lines {first}-{last} of {path!r} hold {len(part)} characters; ask for fewer lines")
        return part

    write_description = (
        "Create or replace a text file (relative to the workspace root) with `content`, creating its folders; "
        f"at most {limit} bytes."
    )

    @server.tool(annotations=_OVERWRITE, description=write_description)
    async def write_file(path: str, content: str) -> str:
        """Create or replace a text file (relative to the workspace root) with `content`, creating its folders."""
        data = _encoded(content, limit, f"the content for {path!r}")  # before any file is touched
        where = await in_thread(_write, root, path, data)
        return f"wrote {len(content)} characters to {where}"

    @server.tool(annotations=_MODIFY)
    async def patch_file(path: str, old: str, new: str) -> str:
        """Replace the exact text `old` with `new` in a file; `old` must occur exactly once (add context if not)."""
        if not old:
            raise ToolError("`old` is empty; give the exact text to replace")
        for name, text in (("old", old), ("new", new)):
            if len(text) > limit:
                raise ToolError(f"`{name}` has {len(text)} characters, more than the {limit}-byte limit on files")
        return await in_thread(_patch, root, path, old, new, limit)

    run_tests_description = (
        f"Run the workspace's tests (`{config.test_command}`, or `command` instead) in its root, with a "
        f"{config.timeout_s:g} s timeout; returns {{exit_code, passed, timed_out, output}}."
    )

    @server.tool(annotations=_MODIFY, structured_output=True, description=run_tests_description)
    async def run_tests(
        command: Annotated[str | None, Field(description="a command to run instead of the default one")] = None,
    ) -> TestRun:
        """Run the workspace's tests (or `command`) in its root; returns {exit_code, passed, timed_out, output}."""
        text = command if command is not None else config.test_command
        try:
            argv = shlex.split(text)
        except ValueError as error:
            raise ToolError(f"cannot split the command {text!r}: {error}") from None
        if not argv:
            raise ToolError("the command is empty")
        try:
            return await run_command(
                argv,
                cwd=root,
                timeout_s=config.timeout_s,
                memory_bytes=config.memory_mb * 2**20,
                max_output_bytes=config.max_output_bytes,
            )
        except OSError as error:
            raise ToolError(f"cannot run {text!r}: {error.strerror or error}") from None

    return server


def _open(root: Path, path: str, flags: int, *, make_folders: bool = False) -> tuple[int, PurePosixPath]:
    """A descriptor of the regular file at `path` (refusing anything else before a byte moves) and its place."""
    try:
        confine(root, path)  # refuses with the clearest message; open_confined holds if the files change meanwhile
        fd, where = open_confined(root, path, flags, make_folders=make_folders)
    except PathEscapeError as error:
        raise ToolError(str(error)) from None
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"{path!r} does not exist") from None
    except IsADirectoryError:
        raise ToolError(f"{path!r} is a folder") from None
    except OSError as error:
        if error.errno == errno.ENXIO:  # opening a FIFO with no reader for writing, without blocking
            raise ToolError(f"{path!r} is not a regular file; only regular files are read or written") from None
        raise ToolError(f"cannot open {path!r}: {error.strerror or error}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ToolError(f"{path!r} is a folder; use list_files")
        raise ToolError(f"{path!r} is not a regular file (a FIFO, socket or device); only regular files are read")
    return fd, where


def _read_all(fd: int, path: str, limit: int) -> str:
    """The file's text, refused by its size before reading, and after reading at most `limit + 1` bytes."""
    size = os.fstat(fd).st_size
    if size > limit:
        raise ToolError(f"{path!r} has {size} bytes, more than the {limit}-byte limit on files")
    data = bytearray()
    while len(data) <= limit:  # the file may have grown since fstat
        chunk = os.read(fd, min(_READ_CHUNK_BYTES, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise ToolError(f"{path!r} has more than the {limit}-byte limit on files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{path!r} is not a UTF-8 text file") from None


def _encoded(text: str, limit: int, what: str) -> bytes:
    """`text` as UTF-8, refused when longer than `limit` bytes (by its length first, before encoding it)."""
    if len(text) > limit:
        raise ToolError(f"{what} has {len(text)} characters, more than the {limit}-byte limit on files")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError(f"{what} is not encodable as UTF-8 (a lone surrogate)") from None
    if len(data) > limit:
        raise ToolError(f"{what} has {len(data)} bytes in UTF-8, more than the {limit}-byte limit on files")
    return data


def _replace_content(fd: int, data: bytes, path: str) -> None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as error:
        raise ToolError(f"cannot write {path!r}: {error.strerror or error}") from None


def _read(root: Path, path: str, limit: int) -> str:
    fd, _ = _open(root, path, os.O_RDONLY)
    try:
        return _read_all(fd, path, limit)
    finally:
        os.close(fd)


def _write(root: Path, path: str, data: bytes) -> str:
    fd, where = _open(root, path, os.O_WRONLY | os.O_CREAT, make_folders=True)  # no O_TRUNC before the check
    try:
        _replace_content(fd, data, path)
    finally:
        os.close(fd)
    return where.as_posix()


def _patch(root: Path, path: str, old: str, new: str, limit: int) -> str:
    fd, where = _open(root, path, os.O_RDWR)
    try:
        text = _read_all(fd, path, limit)
        lines = _match_lines(text, old)
        if not lines:
            raise ToolError(f"`old` was not found in {path!r} (0 matches); read the file and copy the text exactly")
        if len(lines) > 1:
            raise ToolError(
                f"`old` matches {len(lines)} times in {path!r} (at lines {', '.join(map(str, lines))}); "
                "include more surrounding text so it matches once"
            )
        _replace_content(fd, _encoded(text.replace(old, new, 1), limit, f"the patched {path!r}"), path)
    finally:
        os.close(fd)
    return f"patched {where.as_posix()} at line {lines[0]}"


def _match_lines(text: str, old: str) -> list[int]:
    """The line of every occurrence of `old`, overlapping ones included (they make a patch ambiguous too)."""
    lines, start = [], text.find(old)
    while start != -1:
        lines.append(text.count("\n", 0, start) + 1)
        start = text.find(old, start + 1)
    return lines


def _list(root: Path, path: str) -> FileListing:
    try:
        confine(root, path)
        fd, where = open_confined(root, path, os.O_RDONLY)
    except PathEscapeError as error:
        raise ToolError(str(error)) from None
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"{path!r} does not exist") from None
    except OSError as error:
        raise ToolError(f"cannot open {path!r}: {error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return FileListing(files=[where.as_posix()])
        if not stat.S_ISDIR(mode):
            raise ToolError(f"{path!r} is not a regular file or a folder")
        files: list[str] = []
        # Walks by descriptor from the one just opened, and does not follow symlinked folders.
        for folder, folders, names, _ in os.fwalk(".", dir_fd=fd):
            folders[:] = sorted(name for name in folders if name not in SKIPPED_FOLDERS)
            files.extend(posixpath.normpath(posixpath.join(where.as_posix(), folder, name)) for name in sorted(names))
            if len(files) > MAX_LISTED_FILES:
                return FileListing(files=sorted(files)[:MAX_LISTED_FILES], truncated=True)
        return FileListing(files=sorted(files))
    finally:
        os.close(fd)


# -- command line -------------------------------------------------------------------------------------


def create_parser() -> argparse.ArgumentParser:
    """The command line of `python -m agentdag.tools.workspace`."""
    parser = argparse.ArgumentParser(
        prog="python -m agentdag.tools.workspace",
        description="MCP server: list/read/write/patch files confined to a root folder and run its tests. "
        "Tools: list_files, read_file, write_file, patch_file, run_tests.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", type=Path, metavar="DIR", help="the workspace folder (edited in place)")
    where.add_argument(
        "--copy-of",
        type=Path,
        metavar="DIR",
        help="serve a fresh temporary copy of DIR instead, removed when the server exits (DIR is never changed)",
    )
    parser.add_argument(
        "--test-command",
        default=DEFAULT_TEST_COMMAND,
        help="run_tests' default command, split like a shell would but run without one; a leading python means "
        "this interpreter (default: %(default)r)",
    )
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, help="test run time limit (default: 60)")
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=DEFAULT_MEMORY_MB,
        help="test run address space limit in MiB, 0 for none (default: 2048)",
    )
    parser.add_argument(
        "--max-output-bytes",
        type=int,
        default=DEFAULT_MAX_OUTPUT_BYTES,
        help="bound on run_tests' output; the head and tail are kept (default: 20000)",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        default=DEFAULT_MAX_FILE_BYTES,
        help="the largest file read_file and patch_file read and write_file writes (default: %(default)s)",
    )
    add_transport_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the workspace until the client disconnects."""
    args = create_parser().parse_args(argv)
    if args.copy_of is not None:
        if not args.copy_of.is_dir():
            sys.exit(f"workspace: --copy-of {args.copy_of} is not a directory")
        # A client that stops the server with SIGTERM still gets the copy removed.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with tempfile.TemporaryDirectory(prefix="agentdag-workspace-") as scratch:
            root = Path(scratch) / args.copy_of.resolve().name
            shutil.copytree(args.copy_of, root, ignore=shutil.ignore_patterns(*SKIPPED_FOLDERS))
            _serve_root(root, args)
        return
    _serve_root(args.root, args)


def _serve_root(root: Path, args: argparse.Namespace) -> None:
    config = WorkspaceConfig(
        root=root,
        test_command=args.test_command,
        timeout_s=args.timeout_s,
        memory_mb=args.memory_mb,
        max_output_bytes=args.max_output_bytes,
        max_file_bytes=args.max_file_bytes,
    )
    try:
        server = create_server(config)
    except OSError as error:
        sys.exit(f"workspace: {error}")
    serve(server, args)


if __name__ == "__main__":
    main()
