"""The settings a run is made of: `PlannerConfig` (planner, joiner, replanning) and `Limits` (concurrency, time).

They are the `planner:` and `limits:` sections of a task file, and what `Agent` and `Executor` take whole;
their defaults are declared here and nowhere else. This module depends on pydantic only, so that reading a
task file does not load the planner or the executor.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_TIMEOUT_S", "Limits", "PlannerConfig"]

DEFAULT_TIMEOUT_S = 300.0
"""The deadline of one tool call attempt, for tools whose policy sets none."""


class Limits(BaseModel):
    """Concurrency and time limits of a run (`limits:` in task.yaml).

    Attributes:
        max_concurrency: at most this many tool calls at once (None: no global cap).
        tool_concurrency: per-tool caps, by tool name; they override a tool's own `policy.max_concurrency`.
        timeout_s: deadline of one tool call attempt, for tools that set none (None: no deadline).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrency: int | None = Field(default=None, ge=1)
    tool_concurrency: dict[str, int] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=DEFAULT_TIMEOUT_S, gt=0)


class PlannerConfig(BaseModel):
    """How the planner, the joiner and replanning behave (`planner:` in task.yaml).

    Attributes:
        style: plan format: "json" (constrained decoding; the default, which small models can follow)
            or "llmcompiler" (numbered text).
        template: a template shipped in `planners/` by name, or a path to a YAML file; default: `style`.
        max_repairs: how many times an invalid plan goes back to the model with its problems.
        max_replans: how many times the joiner may ask for a new plan.
        fallback: after the last repair, "partial" runs the valid nodes; "direct" answers without tools
            when no node was valid.
        max_tokens: the longest planner reply, in tokens.
        max_nodes: the most nodes one plan may hold (the JSON schema enforces it; for either style the
            reading stops after that many nodes).
        temperature: sampling temperature of planner and joiner calls.
        seed: the sampling seed of planner and joiner calls (None: the server's choice); a scaling strategy
            gives each of its samples this seed plus the sample's index, so a seeded run samples the same.
        observation_chars: tool outputs shown to the joiner and to replans are cut to this many characters.
        max_total_tokens: token budget of the run (planner, joiner and model tools); no replan past it.
        max_seconds: time budget of the run; when it runs out, running nodes are cancelled.
        refine: mid-run refinement: whenever a node finishes while others are pending, the planner may
            add nodes or cancel pending ones without waiting for the rest of the graph.
        max_refinements: the most refinement calls per run (only with `refine: true`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    style: Literal["json", "llmcompiler"] = "json"
    template: str | None = None
    max_repairs: int = Field(default=2, ge=0, le=10)
    max_replans: int = Field(default=2, ge=0, le=20)
    fallback: Literal["partial", "direct"] = "partial"
    max_tokens: int = Field(default=1024, ge=16)
    max_nodes: int = Field(default=16, ge=1, le=256)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    observation_chars: int = Field(default=1500, ge=100)
    max_total_tokens: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    refine: bool = False
    max_refinements: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _refuse_unused(self) -> PlannerConfig:
        if "max_refinements" in self.model_fields_set and not self.refine:
            raise ValueError("`max_refinements` has no effect here: it applies only with refine: true; remove it")
        return self
