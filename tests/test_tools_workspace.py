from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from agentdag.tools.confine import PathEscapeError, confine, run_command
from agentdag.tools.workspace import WorkspaceConfig, create_server
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

# Writes its own pid and a child's to a file, then loops forever; the child sleeps "forever".
LOOPING_PROGRAM = """\
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open("pids.txt", "w") as pids:
    pids.write(f"{child.pid}\\n")
print("started", flush=True)
while True:
    pass
"""


def is_alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped by its new parent counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def is_gone(pid: int, *, within_s: float = 5.0) -> bool:
    """Whether the process is dead within `within_s` (an orphan is reaped by init a moment after its kill)."""
    for _ in range(int(within_s / 0.05)):
        if not is_alive(pid):
            return True
        await anyio.sleep(0.05)
    return not is_alive(pid)


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "code.py").write_text("def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n")
    (root / "test_code.py").write_text(
        "from pkg.code import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    )
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path)
    (root / "inner_link").symlink_to(root / "pkg" / "code.py")
    return root


def config(root: Path, **changes: Any) -> WorkspaceConfig:
    return WorkspaceConfig(root=root, **{"timeout_s": 20.0, **changes})


# -- confinement ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x", "outside the workspace"),
        ("pkg/../../x", "outside the workspace"),
        ("/etc/passwd", "absolute"),
        ("escape", "symlink"),
        ("escape_dir/secret.txt", "symlink"),
        ("", "empty"),
        ("a\x00b", "NUL"),
    ],
)
def test_confine_refuses_escapes(workspace: Path, path: str, reason: str) -> None:
    with pytest.raises(PathEscapeError, match=reason):
        confine(workspace.resolve(), path)


def test_confine_allows_paths_inside(workspace: Path) -> None:
    root = workspace.resolve()
    assert confine(root, ".") == root
    assert confine(root, "pkg/../test_code.py") == root / "test_code.py"
    assert confine(root, "inner_link") == root / "pkg" / "code.py"
    assert confine(root, "new/dir/file.py") == root / "new" / "dir" / "file.py"


# -- file tools, in process -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tool_annotations(workspace: Path) -> None:
    async with Client(create_server(config(workspace))) as client:
        tools = {tool.name: tool.annotations for tool in (await client.list_tools()).tools}
    assert set(tools) == {"list_files", "read_file", "write_file", "patch_file", "run_tests"}
    for name in ("list_files", "read_file"):
        assert tools[name] is not None and tools[name].read_only_hint is True  # type: ignore[union-attr]
    for name in ("write_file", "patch_file", "run_tests"):
        annotations = tools[name]
        assert annotations is not None and annotations.read_only_hint is False and annotations.destructive_hint


@pytest.mark.asyncio
async def test_list_read_write(workspace: Path) -> None:
    async with Client(create_server(config(workspace))) as client:
        listing = await client.call_tool("list_files", {})
        assert listing.structured_content == {
            "files": ["escape", "inner_link", "pkg/code.py", "test_code.py"],
            "truncated": False,
        }
        assert (await client.call_tool("list_files", {"path": "pkg"})).structured_content == {
            "files": ["pkg/code.py"],
            "truncated": False,
        }
        assert text_of(await client.call_tool("read_file", {"path": "pkg/code.py", "start_line": 2, "end_line": 2}))
        assert text_of(await client.call_tool("read_file", {"path": "pkg/code.py", "start_line": 5})) == (
            "def sub(a, b):\n    return a - b\n"
        )
        out_of_range = await client.call_tool("read_file", {"path": "pkg/code.py", "start_line": 50})
        assert out_of_range.is_error and "it has 6 lines" in text_of(out_of_range)
        written = await client.call_tool("write_file", {"path": "docs/notes.md", "content": "hello\n"})
        assert not written.is_error
        assert (workspace / "docs" / "notes.md").read_text() == "hello\n"
        assert text_of(await client.call_tool("read_file", {"path": "docs/notes.md"})) == "hello\n"
        missing = await client.call_tool("read_file", {"path": "nope.py"})
        assert missing.is_error and "does not exist" in text_of(missing)
        folder = await client.call_tool("write_file", {"path": "pkg", "content": "x"})
        assert folder.is_error and "folder" in text_of(folder)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "escape", "escape_dir/secret.txt"])
async def test_every_file_tool_refuses_escapes(workspace: Path, path: str) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_files", {"path": path}),
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "pwned"}),
        ("patch_file", {"path": path, "old": "outside", "new": "pwned"}),
    ]
    async with Client(create_server(config(workspace))) as client:
        for name, arguments in calls:
            result = await client.call_tool(name, arguments)
            assert result.is_error, (name, path)
            assert "outside the workspace" in text_of(result) or "absolute" in text_of(result)
    assert (workspace.parent / "secret.txt").read_text() == "outside"
    assert not (workspace.parent / "x").exists()


@pytest.mark.asyncio
async def test_patch_needs_exactly_one_match(workspace: Path) -> None:
    async with Client(create_server(config(workspace))) as client:
        twice = await client.call_tool("patch_file", {"path": "pkg/code.py", "old": "return a - b", "new": "x"})
        assert twice.is_error
        assert "matches 2 times" in text_of(twice) and "lines 2, 6" in text_of(twice)
        never = await client.call_tool("patch_file", {"path": "pkg/code.py", "old": "return a * b", "new": "x"})
        assert never.is_error and "0 matches" in text_of(never)
        (workspace / "dots.txt").write_text("...\n")
        overlapping = await client.call_tool("patch_file", {"path": "dots.txt", "old": "..", "new": "x"})
        assert overlapping.is_error and "matches 2 times" in text_of(overlapping)
        patched = await client.call_tool(
            "patch_file",
            {
                "path": "pkg/code.py",
                "old": "def add(a, b):\n    return a - b",
                "new": "def add(a, b):\n    return a + b",
            },
        )
        assert not patched.is_error and "line 1" in text_of(patched)
        run = await client.call_tool("run_tests", {})
    assert (workspace / "pkg" / "code.py").read_text().startswith("def add(a, b):\n    return a + b\n")
    assert run.structured_content is not None
    assert run.structured_content["passed"] is True, run.structured_content["output"]
    assert run.structured_content["exit_code"] == 0
    assert "1 passed" in run.structured_content["output"]


# -- running tests ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_run_tests_failure_and_bad_commands(workspace: Path) -> None:
    async with Client(create_server(config(workspace, test_command="python -c 'raise SystemExit(1)'"))) as client:
        failed = await client.call_tool("run_tests", {})
        assert failed.structured_content is not None
        assert failed.structured_content["passed"] is False
        assert failed.structured_content["exit_code"] == 1
        assert failed.structured_content["timed_out"] is False
        unknown = await client.call_tool("run_tests", {"command": "no-such-program-xyz --flag"})
        assert unknown.structured_content is not None
        assert unknown.structured_content["exit_code"] == 127
        assert "cannot run 'no-such-program-xyz'" in unknown.structured_content["output"]
        unbalanced = await client.call_tool("run_tests", {"command": "python -c 'print(1)"})
        assert unbalanced.is_error and "cannot split" in text_of(unbalanced)
        # No shell: metacharacters are plain arguments.
        echoed = await client.call_tool(
            "run_tests", {"command": "python -c 'import sys; print(sys.argv[1:])' ; rm -rf ."}
        )
    assert echoed.structured_content is not None
    assert "[';', 'rm', '-rf', '.']" in echoed.structured_content["output"]
    assert (workspace / "test_code.py").exists()


@pytest.mark.asyncio
async def test_timeout_kills_the_whole_process_group(workspace: Path) -> None:
    (workspace / "loop.py").write_text(LOOPING_PROGRAM)
    server = create_server(config(workspace, test_command="python loop.py", timeout_s=1.5))
    async with Client(server) as client:
        started = time.perf_counter()
        result = await client.call_tool("run_tests", {})
        elapsed = time.perf_counter() - started
    assert result.structured_content is not None
    assert result.structured_content["timed_out"] is True
    assert result.structured_content["passed"] is False
    assert result.structured_content["exit_code"] == -9
    assert "started" in result.structured_content["output"]
    assert "timed out after 1.5 s" in result.structured_content["output"]
    assert elapsed < 6
    assert await is_gone(int((workspace / "pids.txt").read_text()))


@pytest.mark.asyncio
async def test_leftover_processes_are_killed_when_the_command_exits(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print(p.pid)"
    )
    started = time.perf_counter()
    result = await run_command(["python", "-c", script], cwd=tmp_path, timeout_s=20)
    assert time.perf_counter() - started < 10
    assert result.passed and not result.timed_out
    assert await is_gone(int(result.output.strip()))


@pytest.mark.asyncio
async def test_output_keeps_head_and_tail(tmp_path: Path) -> None:
    script = "print('HEAD'); print('x' * 100_000); print('TAIL')"
    result = await run_command(["python", "-c", script], cwd=tmp_path, timeout_s=20, max_output_bytes=1_000)
    assert result.output.startswith("HEAD\n")
    assert result.output.endswith("TAIL\n")
    assert "bytes of output omitted" in result.output
    assert len(result.output) < 1_100


@pytest.mark.asyncio
async def test_memory_limit(tmp_path: Path) -> None:
    script = "x = bytearray(512 * 2**20); print('allocated')"
    limited = await run_command(["python", "-c", script], cwd=tmp_path, timeout_s=20, memory_bytes=256 * 2**20)
    assert not limited.passed and "MemoryError" in limited.output
    unlimited = await run_command(["python", "-c", script], cwd=tmp_path, timeout_s=20, memory_bytes=0)
    assert unlimited.passed and "allocated" in unlimited.output


@pytest.mark.asyncio
async def test_cancelling_a_run_kills_the_process_group(tmp_path: Path) -> None:
    (tmp_path / "loop.py").write_text(LOOPING_PROGRAM)
    with anyio.move_on_after(1.5):
        await run_command(["python", "loop.py"], cwd=tmp_path, timeout_s=60)
    assert await is_gone(int((tmp_path / "pids.txt").read_text()))


# -- the real server, over stdio --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stdio_server(workspace: Path) -> None:
    (workspace / "loop.py").write_text(LOOPING_PROGRAM)
    parameters = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "agentdag.tools.workspace", "--root", str(workspace), "--test-command", "python loop.py"),
            *("--timeout-s", "1", "--memory-mb", "1024", "--max-output-bytes", "2000"),
        ],
    )
    async with Client(parameters) as client:
        refused = await client.call_tool("read_file", {"path": "../secret.txt"})
        assert refused.is_error
        read = await client.call_tool("read_file", {"path": "test_code.py"})
        assert text_of(read).startswith("from pkg.code import add")
        run = await client.call_tool("run_tests", {})
        assert run.structured_content is not None
        assert run.structured_content["timed_out"] is True
        assert len(run.structured_content["output"]) <= 2_200
    assert await is_gone(int((workspace / "pids.txt").read_text()))
