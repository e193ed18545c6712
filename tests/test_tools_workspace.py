from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from agentdag.tools.confine import PathEscapeError, confine, open_confined, run_command
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


# -- confinement gaps: odd paths, symlinks made by a run, shells, processes that try to outlive the run ----


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("./../x", "outside the workspace"),
        ("pkg/./../../x", "outside the workspace"),
        ("..", "outside the workspace"),
        ("../", "outside the workspace"),
        ("..\\x", "outside the workspace"),  # a Windows-style separator is read as one too
        ("pkg\\..\\..\\x", "outside the workspace"),
        ("//etc/passwd", "absolute"),
        ("a" * 300, "too long"),
        ("a/" * 3_000 + "x", "too long"),
        ("a\ud800", "cannot be resolved"),  # a lone surrogate, which no file name can hold
        ("loop", "cannot be resolved"),
        ("ghost", "symlink"),  # a dangling link: writing through it would create a file outside
    ],
)
def test_confine_refuses_more_escapes(workspace: Path, path: str, reason: str) -> None:
    (workspace / "loop").symlink_to("loop")
    (workspace / "ghost").symlink_to(workspace.parent / "created_through_ghost.txt")
    with pytest.raises(PathEscapeError, match=reason):
        confine(workspace.resolve(), path)


@pytest.mark.parametrize(
    "path", ["C:\\x", "C:/x", "~/x", "\\\\server\\share", "file:///etc/passwd", "$HOME/x", "%2e%2e/x"]
)
def test_names_that_look_like_other_roots_stay_inside(workspace: Path, path: str) -> None:
    root = workspace.resolve()
    assert confine(root, path).is_relative_to(root)


# Makes links that lead out of the workspace, the way code under test could.
LINKING_PROGRAM = """\
import ast
import os
os.symlink("/etc", "etc_link")
os.symlink(os.path.join("..", "secret.txt"), "sneaky")
os.symlink(os.path.join("..", "created_through_ghost.txt"), "ghost")
os.symlink(os.path.abspath(".."), "up")
print("linked")
"""


@pytest.mark.asyncio
async def test_links_made_by_a_test_run_do_not_lead_the_file_tools_out(workspace: Path) -> None:
    (workspace / "link.py").write_text(LINKING_PROGRAM)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("read_file", {"path": "etc_link/passwd"}),
        ("read_file", {"path": "sneaky"}),
        ("patch_file", {"path": "sneaky", "old": "outside", "new": "pwned"}),
        ("write_file", {"path": "sneaky", "content": "pwned"}),
        ("write_file", {"path": "ghost", "content": "pwned"}),
        ("write_file", {"path": "up/new.txt", "content": "pwned"}),
        ("list_files", {"path": "up"}),
        ("list_files", {"path": "etc_link"}),
    ]
    async with Client(create_server(config(workspace, test_command="python link.py"))) as client:
        run = await client.call_tool("run_tests", {})
        assert run.structured_content is not None and "linked" in run.structured_content["output"]
        for name, arguments in calls:
            result = await client.call_tool(name, arguments)
            assert result.is_error and "outside the workspace" in text_of(result), (name, arguments)
        listing = await client.call_tool("list_files", {})
    assert listing.structured_content is not None
    assert not any(name.startswith(("up/", "etc_link/")) for name in listing.structured_content["files"])
    assert (workspace.parent / "secret.txt").read_text() == "outside"
    assert not (workspace.parent / "created_through_ghost.txt").exists()
    assert not (workspace.parent / "new.txt").exists()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "command",
    [
        "echo x; touch pwned",
        "echo x && touch pwned",
        "echo x | touch pwned",
        "echo x > pwned",
        "echo $(touch pwned)",
        "echo `touch pwned`",
        "echo x\ntouch pwned",
        "echo 'x' \"; touch pwned\"",
    ],
)
async def test_shell_syntax_in_a_command_is_plain_arguments(workspace: Path, command: str) -> None:
    async with Client(create_server(config(workspace))) as client:
        result = await client.call_tool("run_tests", {"command": command})
    assert result.structured_content is not None
    assert "pwned" in result.structured_content["output"]  # echo printed it, as an argument
    assert not (workspace / "pwned").exists()


SHELL_RUNNERS = {"system", "popen", "getoutput", "getstatusoutput", "create_subprocess_shell", "spawn"}
PROCESS_STARTERS = {"open_process", "run_process", "Popen", "create_subprocess_exec"}
SUBPROCESS_RUNNERS = {"run", "call", "check_call", "check_output"}  # as `subprocess.<name>` only


def shell_calls(source: str) -> list[str]:
    """Calls that would hand text to a shell: `shell=...`, os.system and friends, a process from a string."""
    found: list[str] = []
    for call in (node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)):
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        starts = name in PROCESS_STARTERS or (name in SUBPROCESS_RUNNERS and _is_subprocess(call.func))
        if (
            any(keyword.arg == "shell" and not _is_false(keyword.value) for keyword in call.keywords)
            or (name in SHELL_RUNNERS and isinstance(call.func, ast.Attribute))
            or (starts and call.args and _is_text(call.args[0]))
        ):
            found.append(f"{call.lineno}: {ast.unparse(call)[:80]}")
    return found


@pytest.mark.parametrize(
    "source",
    [
        "subprocess.run(argv, shell=True)",
        "os.system('make')",
        "os.popen(f'ls {path}')",
        "await asyncio.create_subprocess_shell(command)",
        "await anyio.open_process(f'pytest {name}')",
        "await anyio.run_process('pytest ' + name)",
        "subprocess.Popen('ls %s' % path)",
        "subprocess.check_output('git {}'.format(ref))",
    ],
)
def test_the_shell_detector_sees_each_way_to_reach_a_shell(source: str) -> None:
    assert shell_calls(source) != []
    assert shell_calls("subprocess.run([sys.executable, '-c', code], shell=False); server.run('stdio')") == []


def test_no_source_file_starts_a_shell() -> None:
    repository = Path(__file__).parent.parent
    found = {
        str(path.relative_to(repository)): calls
        for folder in ("agentdag", "tools", "benchmarks")
        for path in sorted((repository / folder).rglob("*.py"))
        if (calls := shell_calls(path.read_text()))
    }
    assert found == {}


def _is_subprocess(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "subprocess"


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _is_text(node: ast.expr) -> bool:
    """A string literal, an f-string, or text built with + or % or .format()."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_text(node.left) or _is_text(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


# Forks a child that leaves the process group (as a daemon does) and exits at once.
DAEMON_PROGRAM = """\
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        time.sleep(600)
    os._exit(0)
os.wait()
"""


@pytest.mark.asyncio
async def test_a_daemon_that_leaves_the_process_group_is_killed_too(tmp_path: Path) -> None:
    result = await run_command(["python", "-c", DAEMON_PROGRAM], cwd=tmp_path, timeout_s=30)
    # Before: the daemon held the output pipe open, so the run waited for the timeout and left it running.
    assert result.passed and not result.timed_out, result.output
    assert await is_gone(int(result.output.split()[0]))


# A tree of 1 + 6 + 36 sleeping processes, one of them in its own session, and a parent that never ends.
FORKING_PROGRAM = """\
import os, time
def record():
    with open("pids.txt", "a") as pids:
        pids.write(f"{os.getpid()}\\n")
record()
for child in range(6):
    if os.fork() == 0:
        if child == 0:
            os.setsid()
        for _ in range(6):
            if os.fork() == 0:
                record()
                time.sleep(600)
        record()
        time.sleep(600)
while len(open("pids.txt").read().split()) < 43:
    time.sleep(0.05)
print("all started", flush=True)
time.sleep(600)
"""


@pytest.mark.asyncio
async def test_a_tree_of_processes_is_killed_on_timeout(tmp_path: Path) -> None:
    result = await run_command(["python", "-c", FORKING_PROGRAM], cwd=tmp_path, timeout_s=10)
    assert result.timed_out and "all started" in result.output, result.output
    pids = [int(line) for line in (tmp_path / "pids.txt").read_text().split()]
    assert len(pids) == 43
    assert [pid for pid in pids if not await is_gone(pid)] == []


@pytest.mark.asyncio
async def test_the_memory_limit_holds_for_the_commands_children_too(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys; "
        "child = subprocess.run([sys.executable, '-c', 'bytearray(512 * 2**20)'], capture_output=True, text=True); "
        "print('child:', child.returncode, child.stderr.strip().splitlines()[-1])"
    )
    result = await run_command(["python", "-c", script], cwd=tmp_path, timeout_s=30, memory_bytes=256 * 2**20)
    assert "child: 1 MemoryError" in result.output


@pytest.mark.asyncio
async def test_a_command_reading_its_input_gets_end_of_file_not_a_hang(tmp_path: Path) -> None:
    result = await run_command(["python", "-c", "input()"], cwd=tmp_path, timeout_s=30)
    assert not result.timed_out and not result.passed
    assert "EOFError" in result.output


@pytest.mark.asyncio
async def test_binary_output_is_bounded_text(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4_000)"
    result = await run_command(["python", "-c", script], cwd=tmp_path, timeout_s=30, max_output_bytes=2_000)
    assert result.passed
    assert len(result.output.encode()) < 2_000 * 3 + 100  # replacement characters take 3 bytes each
    assert "bytes of output omitted" in result.output


# -- wedging and flooding: FIFOs, huge files, a folder swapped for a symlink ------------------------------


@pytest.mark.asyncio
async def test_a_fifo_is_refused_at_once_and_the_server_keeps_answering(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "agentdag.tools.workspace", "--root", str(workspace)]
    )
    async with Client(parameters) as client:
        for name, arguments in [
            ("read_file", {"path": "pipe"}),
            ("patch_file", {"path": "pipe", "old": "a", "new": "b"}),
            ("write_file", {"path": "pipe", "content": "x"}),
            ("list_files", {"path": "pipe"}),
        ]:
            # Before: read_file blocked the server's event loop in open() waiting for a writer, for good.
            with anyio.fail_after(10):
                refused = await client.call_tool(name, arguments)
            assert refused.is_error and "not a regular file" in text_of(refused), (name, text_of(refused))
        with anyio.fail_after(10):
            read = await client.call_tool("read_file", {"path": "test_code.py"})
    assert text_of(read).startswith("from pkg.code import add")
    assert (workspace / "pipe").is_fifo()


@pytest.mark.asyncio
async def test_an_oversized_write_is_refused_before_any_file_or_folder_is_made(workspace: Path) -> None:
    async with Client(create_server(config(workspace))) as client:
        # Over the default limit (4 MiB); before, any size was written (1 GiB took 3.4 GB in the server).
        big = await client.call_tool("write_file", {"path": "new/big.txt", "content": "x" * (5 * 2**20)})
        assert big.is_error and "limit on files" in text_of(big), text_of(big)
        assert not (workspace / "new").exists()
    async with Client(create_server(config(workspace, max_file_bytes=10))) as client:
        wide = await client.call_tool("write_file", {"path": "wide.txt", "content": "é" * 6})  # 12 bytes
        assert wide.is_error and "12 bytes" in text_of(wide)
        fits = await client.call_tool("write_file", {"path": "fits.txt", "content": "x" * 10})
        assert not fits.is_error
        grown = await client.call_tool("patch_file", {"path": "fits.txt", "old": "x" * 10, "new": "y" * 11})
        assert grown.is_error and "limit on files" in text_of(grown)
    assert not (workspace / "wide.txt").exists()
    assert (workspace / "fits.txt").read_text() == "x" * 10


@pytest.mark.asyncio
async def test_an_oversized_file_is_refused_by_its_size_without_being_read(workspace: Path) -> None:
    with (workspace / "sparse.bin").open("wb") as sparse:
        sparse.truncate(2 * 2**30)  # 2 GiB of holes: no disk, but reading it would take 2 GiB of memory
    async with Client(create_server(config(workspace))) as client:
        for name, arguments in [
            ("read_file", {"path": "sparse.bin"}),
            ("read_file", {"path": "sparse.bin", "start_line": 1, "end_line": 1}),
            ("patch_file", {"path": "sparse.bin", "old": "\0", "new": "x"}),
        ]:
            started = time.perf_counter()
            refused = await client.call_tool(name, arguments)
            assert time.perf_counter() - started < 1, name
            assert refused.is_error and f"has {2 * 2**30} bytes" in text_of(refused), text_of(refused)
    (workspace / "ten.txt").write_text("x" * 10)
    (workspace / "eleven.txt").write_text("x" * 11)
    async with Client(create_server(config(workspace, max_file_bytes=10))) as client:
        eleven = await client.call_tool("read_file", {"path": "eleven.txt"})
        assert eleven.is_error and "11 bytes" in text_of(eleven)
        assert text_of(await client.call_tool("read_file", {"path": "ten.txt"})) == "x" * 10


def test_a_folder_swapped_for_a_symlink_after_the_check_does_not_lead_out(workspace: Path) -> None:
    root = workspace.resolve()
    (root / "box").mkdir()
    (root / "box" / "secret.txt").write_text("inside")
    confine(root, "box/secret.txt")  # the check passes; now the folder is swapped for a link out
    (root / "box").rename(root / "box_before")
    (root / "box").symlink_to(workspace.parent)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(PathEscapeError, match="outside the workspace"):
            open_confined(root, "box/secret.txt", flags)
    assert (workspace.parent / "secret.txt").read_text() == "outside"
    # Links that stay inside still work, absolute or relative, in any component.
    (root / "box").unlink()
    (root / "box").symlink_to("box_before")
    (root / "abs").symlink_to(root / "box_before")
    for path in ("box/secret.txt", "abs/secret.txt", "box/../abs/./secret.txt", "inner_link"):
        fd, where = open_confined(root, path, os.O_RDONLY)
        os.close(fd)
        assert where.as_posix() in ("box_before/secret.txt", "pkg/code.py"), path


# Swaps the folder `box` for a symlink to a folder outside the workspace and back, as fast as it can.
SWAPPING_PROGRAM = """\
import os, sys
print("swapping", flush=True)
while True:
    os.rename("box", "box_real")
    os.rename("link", "box")
    os.rename("box", "link")
    os.rename("box_real", "box")
"""


@pytest.mark.asyncio
async def test_a_folder_swapped_for_a_symlink_while_the_server_reads_never_leads_out(workspace: Path) -> None:
    (workspace / "box").mkdir()
    (workspace / "box" / "secret.txt").write_text("inside")
    (workspace.parent / "outside").mkdir()
    (workspace.parent / "outside" / "secret.txt").write_text("outside")
    (workspace / "link").symlink_to(workspace.parent / "outside")
    texts: list[str] = []
    async with (
        await anyio.open_process([sys.executable, "-c", SWAPPING_PROGRAM], cwd=workspace) as swapper,
        Client(create_server(config(workspace))) as client,
    ):
        try:
            assert swapper.stdout is not None and b"swapping" in await swapper.stdout.receive()
            deadline = time.perf_counter() + 3
            while time.perf_counter() < deadline:
                result = await client.call_tool("read_file", {"path": "box/secret.txt"})
                if not result.is_error:
                    texts.append(text_of(result))
        finally:
            swapper.kill()
    # Before: the path was checked, then opened by name, so some reads went through the swapped-in link.
    assert "outside" not in texts
    assert "inside" in texts
