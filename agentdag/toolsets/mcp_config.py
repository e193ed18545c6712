"""The declaration of an MCP server (`mcp_servers:` in task.yaml).

It is kept apart from the client so that loading a task file does not import the MCP SDK.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["McpServerConfig"]


class McpServerConfig(BaseModel):
    """An MCP server a task uses (`mcp_servers:` in task.yaml).

    Attributes:
        name: a name for messages (and the tool-name prefix when `prefix` is set).
        command: start the server as a subprocess and talk over stdio: a command line or a list of words.
        url: connect to a server over streamable HTTP instead.
        env: extra environment variables for the subprocess.
        cwd: working directory of the subprocess.
        tools: offer only these tools of the server (default: all).
        prefix: name the tools `<name>.<tool>`, so that two servers may have tools of the same name.
        max_concurrency: at most this many calls in flight on the server at once.
        timeout_s: deadline of one call.
        startup_timeout_s: deadline for starting the server and listing its tools.
        max_restarts: how many times a server that died is started again during a run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    command: str | list[str] | None = None
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    tools: list[str] | None = None
    prefix: bool = False
    max_concurrency: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    startup_timeout_s: float = Field(default=30.0, gt=0)
    max_restarts: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of `command` (a stdio subprocess) or `url` (streamable HTTP)")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("`command` is empty")
        if isinstance(self.command, str) and not shlex.split(self.command):
            raise ValueError("`command` is empty")
        return self

    def argv(self) -> list[str]:
        """The subprocess command as a list of words (`python` means this interpreter)."""
        words = shlex.split(self.command) if isinstance(self.command, str) else list(self.command or [])
        if words and words[0] in ("python", "python3"):
            words[0] = sys.executable
        return words
