"""The Ray backend's settings, apart from the backend so that task files can name them without importing it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["RayConfig", "RayResources"]

_MIN_OBJECT_STORE = 78_643_200  # Ray refuses a smaller object store (75 MiB)


class RayResources(BaseModel):
    """What one call of a tool holds on the cluster (`tools:` of `RayConfig`).

    Attributes:
        num_cpus: CPUs per call (sync tools) or per actor of the tool's pool (async tools).
        num_gpus: GPUs, likewise.
        resources: custom resources, likewise (e.g. `{"search_quota": 1}`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The Ray `.options(...)` these resources mean (unset ones are left to Ray)."""
        chosen: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        options = {key: value for key, value in chosen.items() if value is not None}
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


class RayConfig(BaseModel):
    """How the Ray backend reaches its cluster and places nodes.

    Attributes:
        address: a running cluster (`host:6379`, `auto`); None lets Ray look (`RAY_ADDRESS`, a cluster
            started with `ray start` on this machine) and else starts a local one.
        num_cpus: CPUs of a local cluster (default: all cores).
        object_store_memory: bytes of a local cluster's object store (at least 75 MiB).
        actors: async actors per pool; calls go to the least busy one.
        inline_bytes: outputs larger than this, as JSON, stay in the object store.
        cancel_grace_s: how long a cancelled sync tool may take to stop before its worker is killed.
        tools: resources per tool name; a sync tool's calls and an async tool's actors hold them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    object_store_memory: int | None = Field(default=None, ge=_MIN_OBJECT_STORE)
    actors: int = Field(default=2, ge=1)
    inline_bytes: int = Field(default=100_000, ge=0)
    cancel_grace_s: float = Field(default=1.0, ge=0)
    tools: dict[str, RayResources] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _local_options_need_a_local_cluster(self) -> RayConfig:
        if self.address is not None and (self.num_cpus is not None or self.object_store_memory is not None):
            raise ValueError("num_cpus and object_store_memory size a local cluster; leave them out with `address`")
        return self
