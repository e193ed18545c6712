"""`ModelConfig`, the `model:` section of task.yaml, and `open_model`, which turns it into a running model."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from agentdag.errors import ModelError
from agentdag.models._server_state import find_running_server
from agentdag.models.base import Model
from agentdag.models.cassette import CassetteError, CassetteModel
from agentdag.models.embedded import EmbeddedServer, find_model_file
from agentdag.models.openai import OpenAIModel

__all__ = ["DEFAULT_OPENAI_BASE_URL", "ModelConfig", "open_model"]

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_OPENAI_ONLY = ("base_url", "model", "api_key")


class ModelConfig(BaseModel):
    """Which model a run uses: the embedded llama.cpp server (the default) or any OpenAI-compatible server.

    Unset options fall back to the environment when the provider is `openai`: `AGENTDAG_BASE_URL` (then
    `OPENAI_BASE_URL`), `AGENTDAG_MODEL`, `AGENTDAG_API_KEY` (then `OPENAI_API_KEY`). Giving `base_url`, or
    setting `AGENTDAG_BASE_URL`, implies `provider: openai` unless the provider is named explicitly.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["embedded", "openai"] = Field(
        default="embedded",
        description="`embedded`: llama.cpp inside agentdag; `openai`: any OpenAI-compatible server.",
    )
    base_url: str | None = Field(default=None, description="The API root, usually ending in /v1.")
    model: str | None = Field(
        default=None, description="The served model's name; if unset and the server serves one model, that one."
    )
    api_key: SecretStr | None = Field(default=None, description="Bearer token for the server.")
    timeout_s: float = Field(default=120.0, gt=0, description="Deadline of one model call attempt, in seconds.")
    max_retries: int = Field(default=2, ge=0, description="Retries of transient failures (connect, 429, 5xx).")
    slots: int = Field(default=4, ge=1, description="Embedded: requests decoded in parallel.")
    ctx_per_slot: int = Field(default=4096, ge=256, description="Embedded: context window of each slot.")
    threads: int | None = Field(
        default=None, ge=1, description="Embedded: CPU threads (default: half the usable cores)."
    )
    model_path: Path | None = Field(default=None, description="Embedded: a GGUF file instead of SmolLM2-135M.")
    reuse_server: bool = Field(default=True, description="Embedded: reuse a running `agentdag serve`.")
    verbose: bool = Field(default=False, description="Embedded: let llama.cpp log to stderr.")
    record: Path | None = Field(
        default=None, description="Append every model call to this cassette (JSONL); also AGENTDAG_RECORD."
    )
    replay: Path | None = Field(
        default=None,
        description="Answer every model call from this cassette and open no model server; also AGENTDAG_REPLAY.",
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_provider(cls, data: object) -> object:
        if isinstance(data, dict) and "provider" not in data and data.get("base_url") is not None:
            return {**data, "provider": "openai"}
        return data

    @model_validator(mode="after")
    def _check_provider_options(self) -> ModelConfig:
        if self.provider == "embedded":
            given = [name for name in _OPENAI_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} only apply to provider 'openai'; remove them or set provider: openai "
                    f"(the embedded server takes model_path instead)"
                )
        return self

    @classmethod
    def from_name(cls, name: str, *, others: Sequence[str] = ()) -> ModelConfig:
        """The config for a model named on a command line: `local` (the embedded model) or a server URL.

        Args:
            name: "local", or the `http(s)://` API root of an OpenAI-compatible server.
            others: names the caller handles itself (e.g. scripted models), listed in the error.

        Raises:
            ValueError: `name` is neither.
        """
        if name == "local":
            return cls()
        if name.startswith(("http://", "https://")):
            return cls(provider="openai", base_url=name)
        choices = ", ".join([*others, "local"])
        raise ValueError(f"--model must be {choices} or an http(s) URL, not {name!r}")

    def effective_provider(self) -> Literal["embedded", "openai"]:
        """The provider to use: `openai` if the provider was left unset and `AGENTDAG_BASE_URL` is set."""
        if "provider" not in self.model_fields_set and os.environ.get("AGENTDAG_BASE_URL"):
            return "openai"
        return self.provider


@asynccontextmanager
async def open_model(config: ModelConfig | None = None) -> AsyncIterator[Model]:
    """Open the configured model, and close it (and any server started for it) on exit.

    The embedded provider reuses a running `agentdag serve` when there is one, else starts its own server
    for the duration of the block. The openai provider connects to the configured server.

    With `replay` (or `AGENTDAG_REPLAY`) set, the model answers from that cassette and no server is
    opened; with `record` (or `AGENTDAG_RECORD`), every call is appended to that cassette.

    Raises:
        ModelError: the embedded server is not installed or cannot start, or no model name can be found.
        CassetteError: the cassette cannot be read or written.
    """
    config = config or ModelConfig()
    replay = config.replay or _path_from_environment("AGENTDAG_REPLAY")
    record = config.record or _path_from_environment("AGENTDAG_RECORD")
    if replay is not None and record is not None:
        raise CassetteError("record and replay were both asked for; choose one")
    if replay is not None:
        yield CassetteModel.replaying(replay)
        return
    async with AsyncExitStack() as stack:
        model = await _open_server(config, stack)
        if record is None:
            yield model
            return
        cassette = CassetteModel.recording(model, record)
        try:
            yield cassette
        finally:
            cassette.close_file()


async def _open_server(config: ModelConfig, stack: AsyncExitStack) -> Model:
    """The configured server's model; what it opens is closed by `stack`."""
    if config.effective_provider() != "openai":
        return await _open_embedded(config, stack)
    client = _connect(config)
    stack.push_async_callback(_close, client)
    if not client.name:
        client.name = await _discover_model_name(client)
    return client


def _path_from_environment(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _connect(config: ModelConfig) -> OpenAIModel:
    base_url = (
        config.base_url
        or os.environ.get("AGENTDAG_BASE_URL")
        or os.environ.get("OPENAI_BASE_URL")
        or DEFAULT_OPENAI_BASE_URL
    )
    api_key = (
        config.api_key.get_secret_value()
        if config.api_key
        else os.environ.get("AGENTDAG_API_KEY") or os.environ.get("OPENAI_API_KEY")
    )
    return OpenAIModel(
        base_url=base_url,
        model=config.model or os.environ.get("AGENTDAG_MODEL") or "",
        api_key=api_key,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
    )


async def _open_embedded(config: ModelConfig, stack: AsyncExitStack) -> Model:
    running = await find_running_server() if config.reuse_server else None
    wanted_path = config.model_path or find_model_file()
    if running is not None and Path(running.model_path) == wanted_path:
        url, name = running.url, running.model
    else:
        server = EmbeddedServer(
            model_path=wanted_path,
            slots=config.slots,
            ctx_per_slot=config.ctx_per_slot,
            threads=config.threads,
            verbose=config.verbose,
        )
        await stack.enter_async_context(server)
        url, name = server.url, server.model_name
    model = OpenAIModel(
        base_url=url,
        model=name,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        server=f"embedded llama.cpp server at {url}",
    )
    stack.push_async_callback(_close, model)
    return model


async def _close(model: Model) -> None:
    with anyio.CancelScope(shield=True):
        await model.aclose()


async def _discover_model_name(model: OpenAIModel) -> str:
    names = await model.list_served_models()
    if len(names) == 1:
        return names[0]
    offered = f"it serves {', '.join(names)}" if names else "it lists no models"
    raise ModelError(
        f"no model name given and {offered}; set `model:` in task.yaml or AGENTDAG_MODEL",
        source=model.server,
    )
