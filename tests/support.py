"""Helpers for tests whose tools may run in other processes (Ray workers), where no event crosses over.

Tools pickled to Ray workers refer to these by module, so the workers import this module too (the test
session's Ray cluster puts `tests/` on their path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from agentdag.errors import ModelError
from agentdag.executor import Execution
from agentdag.models import find_model_file


async def until(condition: Callable[[], bool], execution: Execution | None = None) -> None:
    """Wait for a condition that other processes make true (the test's timeout bounds the wait).

    With `execution`, stop at once if one of its nodes fails, since the condition will never hold then.
    """
    while not condition():  # no event crosses processes, so poll
        if execution is not None:
            failed = execution.result().with_status("failed")
            assert not failed, f"node {failed[0].id} failed: {failed[0].error}"
        await anyio.sleep(0.01)


async def append_line(path: str | Path, line: str) -> None:
    """Append a line to a file (small appends do not interleave, whichever process makes them)."""
    async with await anyio.open_file(path, "a") as file:
        await file.write(line + "\n")


def lines(path: Path) -> list[str]:
    """The lines of a file, or none if it does not exist yet."""
    return path.read_text().splitlines() if path.exists() else []


def require_embedded_model() -> Path:
    """The default model's GGUF; called at a module's top, skips the module without xllamacpp or the model."""
    pytest.importorskip("xllamacpp", reason="the embedded server needs xllamacpp: pip install 'agentdag[embedded]'")
    try:
        return find_model_file()
    except ModelError as missing:
        pytest.skip(f"no embedded model: {missing}", allow_module_level=True)
