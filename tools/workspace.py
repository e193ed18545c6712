"""The `workspace` MCP server: list, read, write and patch files under one root directory, and run its tests.

Run it over stdio (or streamable HTTP on 127.0.0.1 with `--http PORT`)::

    python -m agentdag.tools.workspace --root DIR --test-command "python -m pytest -q" --timeout-s 60

With `--copy-of DIR` instead of `--root DIR` the server works on a fresh temporary copy of DIR, removed
when it exits, so an example or a demo never changes the files it starts from.

Tools:

* `list_files(path=".") -> {files, truncated}` (read-only): the files under `path`, recursively;
* `read_file(path, start_line=None, end_line=None) -> str` (read-only): the text, or lines `start..end` (1-based);
* `write_file(path, content) -> str`: create or replace a file (and its folders);
* `patch_file(path, old, new) -> str`: replace the one exact occurrence of `old`;
* `run_tests(command=None) -> {exit_code, passed, timed_out, output}`: run the test command in the root.

Every path is relative to the root; absolute paths, `..` that climbs out and symlinks that lead out are
refused as tool errors. Tests run without a shell (`shlex.split`), in their own session, under an address
space limit; on timeout the whole process group is killed (some buggy programs loop forever), and the
output keeps its head and tail within a bound.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from .confine import DEFAULT_MAX_OUTPUT_BYTES, PathEscapeError, TestRun, confine, run_command
from .transport import add_transport_arguments, serve

__all__ = ["FileListing", "TestRun", "WorkspaceConfig", "create_server", "main", "run_command"]

DEFAULT_TEST_COMMAND = "python -m pytest -q"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_MB = 2048
MAX_LISTED_FILES = 1_000
MAX_READ_CHARS = 200_000
SKIPPED_FOLDERS = frozenset({".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv"})

_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False)
_OVERWRITE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False)
_MODIFY = ToolAnnotations(read_only_hint=False, idempotent_hint=False, destructive_hint=True, open_world_hint=False)


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
    """

    root: Path
    test_command: str = DEFAULT_TEST_COMMAND
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES


class FileListing(BaseModel):
    """Files under a folder, relative to the workspace root, sorted; `truncated` if some were left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: list[str]
    truncated: bool = False


def create_server(config: WorkspaceConfig) -> MCPServer[Any]:
    """An MCP server with the file and test tools over `config.root`.

    File operations are small and run on the event loop's thread, so each call is atomic with respect to the
    others (two parallel patches of one file both apply); tests run as subprocesses without blocking it.

    Raises:
        NotADirectoryError: the root is not a directory.
    """
    root = config.root.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"the workspace root {config.root} is not a directory")
    server: MCPServer[Any] = MCPServer(
        "agentdag-workspace",
        instructions="Files of one code workspace: paths are relative to its root. Run its tests with run_tests.",
        log_level="WARNING",
    )

    @server.tool(annotations=_READ_ONLY, structured_output=True)
    async def list_files(path: str = ".") -> FileListing:
        """List the files under `path` (a folder or a file, relative to the workspace root), recursively."""
        start = _confined(root, path)
        if start.is_file():
            return FileListing(files=[start.relative_to(root).as_posix()])
        if not start.is_dir():
            raise ToolError(f"{path!r} does not exist")
        return _list(root, start)

    @server.tool(annotations=_READ_ONLY)
    async def read_file(
        path: str,
        start_line: Annotated[int | None, Field(ge=1, description="first line to return (1-based)")] = None,
        end_line: Annotated[int | None, Field(ge=1, description="last line to return (inclusive)")] = None,
    ) -> str:
        """Return a text file's content, or only lines `start_line` to `end_line` (1-based, inclusive)."""
        text = _read_text(_confined(root, path), path)
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

    @server.tool(annotations=_OVERWRITE)
    async def write_file(path: str, content: str) -> str:
        """Create or replace a text file (relative to the workspace root) with `content`, creating its folders."""
        target = _confined(root, path)
        if target == root or target.is_dir():
            raise ToolError(f"{path!r} is a folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        except OSError as error:
            raise ToolError(f"cannot write {path!r}: {error.strerror or error}") from None
        return f"wrote {len(content)} characters to {target.relative_to(root).as_posix()}"

    @server.tool(annotations=_MODIFY)
    async def patch_file(path: str, old: str, new: str) -> str:
        """Replace the exact text `old` with `new` in a file; `old` must occur exactly once (add context if not)."""
        target = _confined(root, path)
        if not old:
            raise ToolError("`old` is empty; give the exact text to replace")
        text = _read_text(target, path)
        lines = _match_lines(text, old)
        if not lines:
            raise ToolError(f"`old` was not found in {path!r} (0 matches); read the file and copy the text exactly")
        if len(lines) > 1:
            raise ToolError(
                f"`old` matches {len(lines)} times in {path!r} (at lines {', '.join(map(str, lines))}); "
                "include more surrounding text so it matches once"
            )
        try:
            target.write_text(text.replace(old, new, 1), encoding="utf-8")
        except OSError as error:
            raise ToolError(f"cannot write {path!r}: {error.strerror or error}") from None
        return f"patched {target.relative_to(root).as_posix()} at line {lines[0]}"

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


def _confined(root: Path, path: str) -> Path:
    try:
        return confine(root, path)
    except PathEscapeError as error:
        raise ToolError(str(error)) from None


def _read_text(target: Path, path: str) -> str:
    if target.is_dir():
        raise ToolError(f"{path!r} is a folder; use list_files")
    try:
        return target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ToolError(f"{path!r} does not exist") from None
    except UnicodeDecodeError:
        raise ToolError(f"{path!r} is not a UTF-8 text file") from None
    except OSError as error:
        raise ToolError(f"cannot read {path!r}: {error.strerror or error}") from None


def _match_lines(text: str, old: str) -> list[int]:
    """The line of every occurrence of `old`, overlapping ones included (they make a patch ambiguous too)."""
    lines, start = [], text.find(old)
    while start != -1:
        lines.append(text.count("\n", 0, start) + 1)
        start = text.find(old, start + 1)
    return lines


def _list(root: Path, start: Path) -> FileListing:
    files: list[str] = []
    for folder, folders, names in os.walk(start):  # does not follow symlinked folders
        folders[:] = sorted(name for name in folders if name not in SKIPPED_FOLDERS)
        here = Path(folder)
        files.extend((here / name).relative_to(root).as_posix() for name in sorted(names))
        if len(files) > MAX_LISTED_FILES:
            return FileListing(files=sorted(files)[:MAX_LISTED_FILES], truncated=True)
    return FileListing(files=sorted(files))


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
    )
    try:
        server = create_server(config)
    except OSError as error:
        sys.exit(f"workspace: {error}")
    serve(server, args)


if __name__ == "__main__":
    main()
