"""`ScalingConfig`, the `scaling:` settings of a model role in task.yaml, and `create_strategy`.

A config names its strategy in `strategy:` (a discriminated union); a list of configs stacks, innermost first:
`[{strategy: pdr}, {strategy: best_of_n, n: 2}]` runs best-of-2 over two PDR runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from agentdag.models.base import Model
from agentdag.scaling.answers import AnswerKind, create_answer_rule
from agentdag.scaling.base import ScalingModel, Single
from agentdag.scaling.best_of_n import (
    BestOfN,
    JudgeSelect,
    LogprobSelect,
    MajorityVote,
    Selector,
    VerifierSelect,
    import_verifier,
)
from agentdag.scaling.budget import Budget
from agentdag.scaling.consistency import SelfConsistency
from agentdag.scaling.pdr import ParallelDistillRefine
from agentdag.scaling.plans import StructureSelect
from agentdag.scaling.prune import LexicalJudge, ModelJudge, Prune, TraceJudge
from agentdag.scaling.termination import AdaptiveTermination

__all__ = [
    "AdaptiveTerminationConfig",
    "BestOfNConfig",
    "PDRConfig",
    "PruneConfig",
    "ScalingConfig",
    "SelfConsistencyConfig",
    "SingleConfig",
    "create_strategy",
    "parse_scaling_config",
]


class _StrategyConfig(BaseModel):
    """Settings every strategy shares.

    A key that the chosen rule, judge or operator would ignore is refused rather than read and dropped:
    `_unused` names such keys with the setting they need.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def _unused(self) -> Mapping[str, str]:
        return {}

    @model_validator(mode="after")
    def _refuse_unused(self) -> _StrategyConfig:
        for key, needs in self._unused().items():
            if key in self.model_fields_set:
                raise ValueError(f"`{key}` has no effect here: it applies only with {needs}; remove it")
        return self

    answer: AnswerKind = Field(
        default="auto", description="How answers are extracted: auto, number, boxed (\\boxed{}) or text."
    )
    similarity: float | None = Field(
        default=None, gt=0, le=1, description="Also cluster answers whose character 3-gram cosine reaches this."
    )
    budget_tokens: int | None = Field(default=None, ge=1, description="Most tokens (in + out) one request spends.")
    budget_calls: int | None = Field(default=None, ge=1, description="Most model calls one request makes.")
    temperature: float | None = Field(
        default=0.7, ge=0, description="Sampling temperature of the samples; null keeps the request's."
    )


class SingleConfig(_StrategyConfig):
    """One sample with a report: the baseline."""

    strategy: Literal["single"] = "single"
    temperature: float | None = Field(default=None, ge=0, description="Null keeps the request's temperature.")


class BestOfNConfig(_StrategyConfig):
    """Best-of-n: n parallel samples, one chosen by the selector."""

    strategy: Literal["best_of_n"] = "best_of_n"
    n: int = Field(default=8, ge=1, le=256)
    selector: Literal["majority", "judge", "verifier", "logprob", "structure"] = Field(
        default="majority",
        description="majority (vote), judge (GenSelect), verifier, logprob, or structure (plans: the planner only).",
    )
    verifier: str | None = Field(default=None, description="For selector verifier: `package.module:function`.")
    judge_max_tokens: int = Field(default=64, ge=1)

    def _unused(self) -> Mapping[str, str]:
        return {} if self.selector == "judge" else {"judge_max_tokens": "selector: judge"}

    @model_validator(mode="after")
    def _check_verifier(self) -> BestOfNConfig:
        if (self.selector == "verifier") != (self.verifier is not None):
            raise ValueError("give `verifier: package.module:function` exactly when selector is verifier")
        return self


class SelfConsistencyConfig(_StrategyConfig):
    """Adaptive self-consistency: sample until the Beta or window rule fires, then vote."""

    strategy: Literal["self_consistency"] = "self_consistency"
    rule: Literal["beta", "window"] = "beta"
    max_n: int = Field(default=16, ge=1, le=256)
    threshold: float = Field(default=0.95, gt=0.5, lt=1)
    window: int = Field(default=5, ge=1)
    batch: int = Field(default=1, ge=1)

    def _unused(self) -> Mapping[str, str]:
        if self.rule == "window":
            return {"batch": "rule: beta", "threshold": "rule: beta"}
        return {"window": "rule: window"}


class PDRConfig(_StrategyConfig):
    """Parallel-Distill-Refine; `rounds: [1, 1, 1]` is Sequential Refinement."""

    strategy: Literal["pdr"] = "pdr"
    rounds: tuple[int, ...] = Field(default=(8, 4, 1), min_length=1)
    distill: Literal["summary", "shared_top_k", "per_sample_top_k", "random_k"] = "summary"
    top_k: int = Field(default=2, ge=1)
    workspace_tokens: int = Field(default=512, ge=16)
    seed: int = 0

    def _unused(self) -> Mapping[str, str]:
        unused = {} if self.distill == "random_k" else {"seed": "distill: random_k"}
        if self.distill == "summary":
            unused["top_k"] = "distill: shared_top_k, per_sample_top_k or random_k"
        return unused

    @model_validator(mode="after")
    def _check_rounds(self) -> PDRConfig:
        if any(count < 1 for count in self.rounds) or self.rounds[-1] != 1:
            raise ValueError(f"rounds must be positive draft counts ending in 1, got {list(self.rounds)}")
        return self


class PruneConfig(_StrategyConfig):
    """DeepPrune-style pruning of redundant parallel traces."""

    strategy: Literal["prune"] = "prune"
    n: int = Field(default=8, ge=1, le=256)
    prefix_tokens: int = Field(default=64, ge=1)
    judge: Literal["lexical", "model"] = "lexical"
    measure: Literal["jaccard", "ngram"] = Field(default="jaccard", description="The lexical judge's similarity.")
    judge_threshold: float = Field(default=0.5, ge=0, le=1, description="The lexical judge's similarity cut.")

    def _unused(self) -> Mapping[str, str]:
        return {"judge_threshold": "judge: lexical", "measure": "judge: lexical"} if self.judge == "model" else {}


class AdaptiveTerminationConfig(_StrategyConfig):
    """SEAT-style rounds stopped by semantic entropy."""

    strategy: Literal["adaptive_termination"] = "adaptive_termination"
    n: int = Field(default=4, ge=1, le=256)
    max_rounds: int = Field(default=5, ge=1)
    rule: Literal["secretary", "threshold"] = "secretary"
    threshold: float | None = Field(default=None, ge=0, description="For rule threshold: the entropy cut, nats.")
    stop_at_zero: bool = True
    context_tokens: int = Field(default=512, ge=16)

    def _unused(self) -> Mapping[str, str]:
        return {"threshold": "rule: threshold"} if self.rule == "secretary" else {}

    @model_validator(mode="after")
    def _check_threshold(self) -> AdaptiveTerminationConfig:
        if self.rule == "threshold" and self.threshold is None:
            raise ValueError("rule threshold needs `threshold:` (calibrate it with calibrate_threshold)")
        return self


ScalingConfig = Annotated[
    SingleConfig | BestOfNConfig | SelfConsistencyConfig | PDRConfig | PruneConfig | AdaptiveTerminationConfig,
    Field(discriminator="strategy"),
]
"""One strategy's settings, chosen by `strategy:`."""

_ADAPTER: TypeAdapter[ScalingConfig | list[ScalingConfig]] = TypeAdapter(ScalingConfig | list[ScalingConfig])


def parse_scaling_config(data: object) -> tuple[ScalingConfig, ...]:
    """Validate a `scaling:` value (one mapping, or a list of them innermost first) into configs.

    Raises:
        pydantic.ValidationError: the value does not match any strategy's settings.
    """
    parsed = _ADAPTER.validate_python(data)
    return tuple(parsed) if isinstance(parsed, list) else (parsed,)


def create_strategy(config: ScalingConfig | Sequence[ScalingConfig], model: Model) -> Model:
    """Wrap `model` in the configured strategy; a sequence of configs stacks them, the first innermost.

    Raises:
        ValueError: a best-of-n verifier cannot be imported.
    """
    configs: Sequence[ScalingConfig] = [config] if isinstance(config, BaseModel) else config
    wrapped = model
    for item in configs:
        wrapped = _create_one(item, wrapped)
    return wrapped


def _create_one(config: ScalingConfig, model: Model) -> ScalingModel:
    budget = Budget(max_tokens=config.budget_tokens, max_calls=config.budget_calls)
    rule = create_answer_rule(config.answer, similarity=config.similarity)
    match config:
        case SingleConfig():
            return Single(model, answers=rule, budget=budget, temperature=config.temperature)
        case BestOfNConfig():
            return BestOfN(
                model,
                n=config.n,
                selector=_selector(config),
                answers=rule,
                budget=budget,
                temperature=config.temperature,
            )
        case SelfConsistencyConfig():
            return SelfConsistency(
                model,
                rule=config.rule,
                max_n=config.max_n,
                threshold=config.threshold,
                window=config.window,
                batch=config.batch,
                answers=rule,
                budget=budget,
                temperature=config.temperature,
            )
        case PDRConfig():
            return ParallelDistillRefine(
                model,
                rounds=config.rounds,
                distill=config.distill,
                top_k=config.top_k,
                workspace_tokens=config.workspace_tokens,
                seed=config.seed,
                answers=rule,
                budget=budget,
                temperature=config.temperature,
            )
        case PruneConfig():
            judge: TraceJudge = (
                ModelJudge(model)
                if config.judge == "model"
                else LexicalJudge(threshold=config.judge_threshold, measure=config.measure)
            )
            return Prune(
                model,
                n=config.n,
                prefix_tokens=config.prefix_tokens,
                judge=judge,
                answers=rule,
                budget=budget,
                temperature=config.temperature,
            )
        case AdaptiveTerminationConfig():
            return AdaptiveTermination(
                model,
                n=config.n,
                max_rounds=config.max_rounds,
                rule=config.rule,
                threshold=config.threshold,
                stop_at_zero=config.stop_at_zero,
                context_tokens=config.context_tokens,
                answers=rule,
                budget=budget,
                temperature=config.temperature,
            )
    raise AssertionError(f"unknown strategy config {config!r}")


def _selector(config: BestOfNConfig) -> Selector:
    if config.selector == "judge":
        return JudgeSelect(max_tokens=config.judge_max_tokens)
    if config.selector == "logprob":
        return LogprobSelect()
    if config.selector == "structure":
        return StructureSelect()
    if config.selector == "verifier":
        assert config.verifier is not None
        return VerifierSelect(import_verifier(config.verifier))
    return MajorityVote()
