"""What every command shares: exit codes, consoles, and text made safe to print."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from agentdag.errors import AgentdagError
from agentdag.trace import Redactor

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BROKEN_PIPE",
    "EXIT_DONE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "escape",
    "stdout_console",
    "write_text",
]

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 130, 141, 143  # 128 + SIGINT, SIGPIPE, SIGTERM


def escape(text: str) -> str:
    """`text` for rich markup: API keys redacted, brackets escaped."""
    # Every message printed through here is also cleared of API keys (see agentdag.trace.Redactor).
    return str(Redactor.from_environment().redact(text)).replace("[", r"\[")


class _StdoutConsole(Console):
    """A console whose closed pipe is a `BrokenPipeError` for `main` to end quietly on (rich exits 1 itself)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console() -> Console:
    """The console for results: as wide as the terminal, or 120 columns when writing to a pipe or file."""
    console = _StdoutConsole()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = _StdoutConsole(width=120)
    return console


def write_text(path: Path, text: str) -> None:
    """Write a text file; a failure is one `AgentdagError` naming the path."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise AgentdagError(f"{path}: cannot write: {error.strerror}") from None
