"""The Ray backend: ready nodes run on a Ray cluster; scheduling stays in the executor.

`RayBackend` is an async context manager. Opening it connects this process to Ray, unless it is
connected already: to the cluster at `address`, else where Ray itself looks (`RAY_ADDRESS`, then a
cluster started with `ray start` on this machine), else to a local cluster it starts. Closing it
disconnects only a connection it made, which also stops a local cluster it started. It needs anyio's
asyncio backend: Ray's object refs are awaited with asyncio (on trio, opening it raises `AgentdagError`).

Where each node runs:

* sync function tools: a Ray remote function per call, in a worker's main thread, with the tool's
  resources from `RayConfig.tools` (Ray's default otherwise: one CPU);
* async function tools and MCP tools: a pool of async Ray actors (Ray refuses `async def` remote
  functions). Tools without a `RayConfig.tools` entry share one pool; a tool with an entry gets a pool
  of its own, whose actors hold those resources. Each actor opens its own MCP sessions;
* any other tool (the `llm` model tool, wrappers): in this process, as the local backend would.

A tool says how it travels (`Tool.remote`: a spec that rebuilds it on a worker, with whether it blocks a
thread and which MCP session it needs); the backend never looks at a tool's class.

An output larger than `RayConfig.inline_bytes` (as JSON) stays in Ray's object store. The node's
record then holds a small JSON placeholder, `{"$ray": <object id>, "bytes": N, "preview": "..."}`, which
traces and the joiner see; dependents receive the value itself on their worker, and `fetch` returns it
to the driver.

Failures read as they would locally: the tool's own exception (so `ToolArgumentsError` and
`InvalidReferenceError` keep their meaning), and a clear `ToolError` when a worker dies. When the
executor cancels an attempt (its deadline, `cancel`, the run's end), the remote call is cancelled too:
an actor call gets asyncio's cancellation; a remote function gets a `KeyboardInterrupt`, and its worker
is killed if it has not stopped within `RayConfig.cancel_grace_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread

from agentdag.backends.base import Backend, NodeCall
from agentdag.backends.ray_config import RayConfig, RayResources
from agentdag.errors import AgentdagError, ToolError
from agentdag.plan import Node
from agentdag.references import find_references, resolve_references
from agentdag.toolsets.base import JsonValue, RemoteSpec, Tool

if TYPE_CHECKING:
    from agentdag.backends.ray_worker import NodeJob

__all__ = ["RayBackend", "RayConfig", "RayResources"]

_CLOSE_TIMEOUT_S = 30.0


@dataclass(slots=True, eq=False)
class _Actor:
    """One actor of a pool: its handle, calls in flight, and the `serve` calls holding its MCP sessions."""

    handle: Any
    in_flight: int = 0
    sessions: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _ActorPool:
    """Up to `size` actors, created when every existing one is busy."""

    create: Callable[[], Any]
    size: int
    actors: list[_Actor] = field(default_factory=list)
    retired: list[_Actor] = field(default_factory=list)

    def pick(self) -> _Actor:
        """The least busy actor, or a new one if all are busy and the pool has room."""
        chosen = min(self.actors, key=lambda actor: actor.in_flight, default=None)
        if chosen is None or (chosen.in_flight > 0 and len(self.actors) < self.size):
            chosen = _Actor(self.create())
            self.actors.append(chosen)
        return chosen

    def discard(self, actor: _Actor) -> None:
        """Stop sending calls to an actor that died (later calls get a new one)."""
        if actor in self.actors:
            self.actors.remove(actor)
            self.retired.append(actor)


class RayBackend(Backend):
    """Runs ready nodes on a Ray cluster; use as an async context manager on anyio's asyncio backend.

    Args:
        config: the cluster and placement settings (default: a local cluster of all cores).
    """

    name = "ray"

    def __init__(self, config: RayConfig | None = None) -> None:
        self.config = config or RayConfig()
        self._ray: ModuleType | None = None
        self._worker: ModuleType | None = None
        self._connected = False
        self._kept: dict[str, Any] = {}
        self._shipped: dict[Tool, tuple[list[Any], RemoteSpec]] = {}
        self._pools: dict[str, _ActorPool] = {}

    async def __aenter__(self) -> Self:
        """Connect to the cluster, or start a local one (which takes seconds)."""
        _require_asyncio()
        if self._ray is not None:
            raise AgentdagError("this RayBackend is open already")
        ray = _import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"address": self.config.address, "include_dashboard": False}
            if self.config.num_cpus is not None:
                options["num_cpus"] = self.config.num_cpus
            if self.config.object_store_memory is not None:
                options["object_store_memory"] = self.config.object_store_memory
            try:
                # On this thread, not a worker thread: Ray installs its SIGTERM handler only from the
                # main thread. Starting a local cluster blocks the event loop for a few seconds, once.
                ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise AgentdagError(f"cannot start or reach the Ray cluster: {error}") from None
            self._connected = True
        from agentdag.backends import ray_worker

        self._ray, self._worker = ray, ray_worker
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the actors' MCP sessions, end the actors, free kept outputs, and disconnect if it connected."""
        ray = self._ray
        if ray is None:
            return
        with anyio.CancelScope(shield=True):
            await self._close_actors()
            self._kept.clear()
            self._shipped.clear()
            self._pools.clear()
            if self._connected:
                # Stops a local cluster this process started; from a cluster it joined, only disconnects.
                await anyio.to_thread.run_sync(ray.shutdown)
                self._connected = False
        self._ray = self._worker = None

    # -- the protocol ------------------------------------------------------------------------------

    async def call(self, call: NodeCall) -> JsonValue:
        """Run one attempt of the node on the cluster (or here, for tools that cannot travel)."""
        if self._ray is None:
            raise AgentdagError("open the RayBackend (`async with RayBackend(...)`) before running nodes on it")
        spec = call.tool.remote()
        if spec is None:
            return await self._call_here(call)
        if spec.blocking:
            return await self._call_function(call)
        return await self._call_actor(call, spec)

    def prepare(self, node: Node, inputs: Mapping[int, JsonValue]) -> dict[str, JsonValue] | None:
        """The resolved arguments, or None when an input stays in the object store (the worker resolves them)."""
        if any(self._kept_ref(value) is not None for value in inputs.values()):
            return None
        return super().prepare(node, inputs)

    def durable(self, output: JsonValue) -> bool:
        """False for the placeholder of an output kept in the object store: it ends with the backend."""
        return self._kept_ref(output) is None

    async def fetch(self, output: JsonValue) -> JsonValue:
        """The full value of a node's output, from the object store if the backend keeps it.

        Raises:
            ToolError: the object store lost the value.
        """
        ref = self._kept_ref(output)
        if ref is None:
            return output
        assert self._ray is not None
        try:
            return await ref
        except self._ray.exceptions.RayError as error:
            raise ToolError(f"the Ray object store lost an output: {_first_line(error)}") from None

    # -- running calls -----------------------------------------------------------------------------

    async def _call_function(self, call: NodeCall) -> JsonValue:
        assert self._worker is not None
        job, kept = self._job(call)
        options = dict(self._resources(call.tool.name))
        remote = self._worker.run_function.options(**options) if options else self._worker.run_function
        box, _ = self._ship(call.tool)
        outcome_ref, value_ref = remote.remote(box, job, *kept)
        return await self._outcome(outcome_ref, value_ref, tool=call.tool.name, on_actor=False)

    async def _call_actor(self, call: NodeCall, spec: RemoteSpec) -> JsonValue:
        assert self._ray is not None
        box, _ = self._ship(call.tool)
        pool = self._pool(call.tool.name)
        actor = pool.pick()
        session = spec.session
        if session is not None and session[0] not in actor.sessions:
            key, server = session
            actor.sessions[key] = actor.handle.serve.remote(key, server)
        job, kept = self._job(call)
        actor.in_flight += 1
        try:
            outcome_ref, value_ref = actor.handle.call.remote(box, job, *kept)
            return await self._outcome(outcome_ref, value_ref, tool=call.tool.name, on_actor=True)
        except self._ray.exceptions.RayActorError as error:
            pool.discard(actor)
            raise ToolError(f"the Ray actor running tool {call.tool.name!r} died: {_first_line(error)}") from None
        finally:
            actor.in_flight -= 1

    async def _call_here(self, call: NodeCall) -> JsonValue:
        arguments = call.arguments
        if arguments is None:
            inputs = {node_id: await self.fetch(output) for node_id, output in call.inputs.items()}
            arguments = resolve_references(call.node.arguments, inputs)
        return await call.tool.call(arguments)

    async def _outcome(self, outcome_ref: Any, value_ref: Any, *, tool: str, on_actor: bool) -> JsonValue:
        """Await a call's outcome; on cancellation, stop the remote call before letting go.

        Raises:
            RayActorError: the actor died (the caller retires it).
            Exception: the tool's own exception, or a `ToolError` for a failure of the cluster.
        """
        assert self._ray is not None
        exceptions = self._ray.exceptions
        try:
            outcome = await outcome_ref
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._stop(outcome_ref, value_ref, on_actor=on_actor)
            raise
        except exceptions.RayError as error:
            # The second return holds the same error; reading it keeps Ray from logging it as unhandled.
            await _read_quietly(value_ref)
            if isinstance(error, exceptions.RayTaskError):
                raise _unwrap(error, exceptions) from None
            if isinstance(error, exceptions.RayActorError):
                raise
            raise ToolError(f"tool {tool!r} failed on the Ray cluster: {_first_line(error)}") from None
        if not outcome.kept:
            return outcome.value
        handle = value_ref.hex()
        self._kept[handle] = value_ref
        return {"$ray": handle, "bytes": outcome.size, "preview": outcome.preview}

    async def _stop(self, outcome_ref: Any, value_ref: Any, *, on_actor: bool) -> None:
        """Cancel a remote call and wait for it to end; kill a remote function's worker if it will not."""
        assert self._ray is not None
        ray = self._ray
        # A remote function gets a KeyboardInterrupt, an actor call asyncio's cancellation (Ray allows
        # nothing stronger for actor calls short of killing the actor).
        ray.cancel(outcome_ref)
        with anyio.move_on_after(self.config.cancel_grace_s):
            await _read_quietly(outcome_ref)
            await _read_quietly(value_ref)
            return
        if not on_actor:
            ray.cancel(outcome_ref, force=True)  # a blocking C call ignores KeyboardInterrupt; end its worker

    # -- shipping tools and inputs -----------------------------------------------------------------

    def _job(self, call: NodeCall) -> tuple[NodeJob, list[Any]]:
        """The job for a worker, and the refs of the kept outputs it needs (in the job's `kept` order)."""
        assert self._worker is not None
        inline = self.config.inline_bytes
        if call.arguments is not None:
            return self._worker.NodeJob(
                tool=call.tool.name, arguments=call.arguments, planned={}, inputs={}, kept=(), inline_bytes=inline
            ), []
        referenced = {reference.node_id for reference in find_references(call.node.arguments)}
        inputs: dict[int, JsonValue] = {}
        kept_ids: list[int] = []
        kept_refs: list[Any] = []
        for node_id, output in call.inputs.items():
            if node_id not in referenced:
                continue
            ref = self._kept_ref(output)
            if ref is None:
                inputs[node_id] = output
            else:
                kept_ids.append(node_id)
                kept_refs.append(ref)
        job = self._worker.NodeJob(
            tool=call.tool.name,
            arguments=None,
            planned=dict(call.node.arguments),
            inputs=inputs,
            kept=tuple(kept_ids),
            inline_bytes=inline,
        )
        return job, kept_refs

    def _ship(self, tool: Tool) -> tuple[list[Any], RemoteSpec]:
        """A one-item list with the object ref of the tool's spec, and the spec; put once per tool.

        Inside a list, Ray passes the ref itself, so a worker fetches the spec once and caches the tool.
        """
        assert self._ray is not None
        shipped = self._shipped.get(tool)
        if shipped is None:
            spec = tool.remote()
            assert spec is not None, "only tools that can travel are shipped"
            shipped = self._shipped[tool] = ([self._ray.put(spec)], spec)
        return shipped

    def _resources(self, tool: str) -> dict[str, Any]:
        resources = self.config.tools.get(tool)
        return resources.options() if resources is not None else {}

    def _pool(self, tool: str) -> _ActorPool:
        """The tool's own pool if it has resources, else the shared one."""
        key = tool if tool in self.config.tools else ""
        pool = self._pools.get(key)
        if pool is None:
            assert self._ray is not None
            assert self._worker is not None
            # Async tools wait on I/O, so by default an actor holds no CPU (Ray's default would
            # reserve one to place it, and a small cluster would run out of places for actors).
            options: dict[str, Any] = {"num_cpus": 0, **self._resources(tool)}
            actor_class = self._ray.remote(self._worker.ToolHost).options(max_restarts=0, max_task_retries=0, **options)
            pool = self._pools[key] = _ActorPool(create=actor_class.remote, size=self.config.actors)
        return pool

    def _kept_ref(self, output: JsonValue) -> Any:
        if isinstance(output, dict):
            handle = output.get("$ray")
            if isinstance(handle, str):
                return self._kept.get(handle)
        return None

    async def _close_actors(self) -> None:
        """Let every actor close its MCP sessions, wait for them (bounded), then end the actors."""
        assert self._ray is not None
        ray = self._ray
        actors = [actor for pool in self._pools.values() for actor in [*pool.actors, *pool.retired]]
        for actor in actors:
            actor.handle.close.remote()
        with anyio.move_on_after(_CLOSE_TIMEOUT_S):
            for actor in actors:
                for serving in actor.sessions.values():
                    with contextlib.suppress(ray.exceptions.RayError):  # the actor died, and its sessions
                        await serving
        for actor in actors:
            ray.kill(actor.handle, no_restart=True)


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise AgentdagError(
            "the Ray backend needs anyio's asyncio backend (Ray's object refs are awaited with asyncio); "
            "run with anyio.run(..., backend='asyncio')"
        ) from None


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise AgentdagError("the Ray backend needs Ray: pip install 'agentdag[ray]'") from None
    return ray


async def _read_quietly(ref: Any) -> None:
    """Wait for a remote result and drop it, whatever it is (a cancelled or failed call's)."""
    with contextlib.suppress(Exception):  # the call has ended, which is all that is wanted here
        await ref


def _unwrap(error: Any, exceptions: Any) -> Exception:
    """The tool's own exception from a `RayTaskError`, so that it reads as it would locally."""
    cause = error.cause
    if isinstance(cause, exceptions.TaskCancelledError):
        return ToolError("the call was cancelled on the Ray cluster")
    if isinstance(cause, Exception) and not isinstance(cause, exceptions.RayError):
        return cause
    return ToolError(_first_line(cause if isinstance(cause, BaseException) else error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
