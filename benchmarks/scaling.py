"""Scaling benchmark: test-time scaling strategies side by side, accuracy against tokens.

`agentdag bench scaling --strategy NAME[,NAME...] --dataset FILE --model simulated|local|URL --limit N --json`
runs every strategy on the same questions and reports, per strategy, accuracy, B_total (`tokens_total`),
completion tokens, B_seq (`tokens_seq`), model calls and wall time, each against best-of-n (token ratio,
accuracy difference in points with its paired standard error), plus the Pareto front of accuracy against
tokens (and a PNG of it when matplotlib is installed: `pip install 'agentdag[plots]'`).

Fairness, as the report states it:

* Defaults. Every strategy runs with its config class's shipped defaults; a strategy's `overrides` lists what
  it changes (what makes it a variant, e.g. `selector: judge`, and the sample count when `samples` is given)
  and `settings` the full config it ran with.
* Calibration. `--model simulated` is `SimulatedModel`, calibrated to published statistics (trace lengths,
  per-sample accuracy, answer agreement, prefix similarity; see `calibration.py`): the report carries the
  table of each parameter with its source, and what the run's own traces measured, including the AUROC of
  the shipped lexical judge on their 64-token prefixes (`lexical_judge_auroc`).
* A judge of known quality. `prune_judge87` is pruning with `SimulatedJudge` at DeepPrune's AUROC (0.87):
  it tests the pruning algorithm given a judge that good, not the simulator's texts. `targets` checks
  DeepPrune's claim (at least 65% fewer tokens than best-of-n within 3 points) on it, and reports the same
  figures for lexical pruning. Nothing is tuned to meet it.

Data: GSM8K's test split (`math/gsm8k_test.jsonl` of a data folder, MIT; see `data_paths`), any JSON Lines
file with `question` and `answer`, or `arithmetic`: seeded sums and products a very small model can sometimes
get right (see `math_data.py`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdag.errors import ModelError
from agentdag.messages import Message, ModelRequest, ModelSettings, Usage
from agentdag.models import ModelConfig, open_model
from agentdag.models.base import Model
from agentdag.scaling import (
    AdaptiveTerminationConfig,
    BestOfNConfig,
    LexicalJudge,
    PDRConfig,
    Prune,
    PruneConfig,
    ScalingConfig,
    SelfConsistencyConfig,
    SingleConfig,
    calibrate_threshold,
    create_strategy,
    extract_number,
    report_of,
    same_number,
)

from .calibration import describe_calibration, measure_traces
from .data_paths import resolve_dataset
from .judging import SimulatedJudge, auroc
from .math_data import MathQuestion, load_questions
from .scaling_view import create_scaling_table, create_scaling_view, plot_front
from .simulated import SimulatedModel

__all__ = [
    "JUDGED",
    "STRATEGIES",
    "create_scaling_table",
    "create_scaling_view",
    "load_questions",
    "run_scaling_bench",
]

PROMPT = "{question}\n\nSolve the problem step by step, then end with the line: The answer is <number>."
CALIBRATION_QUESTIONS = 8
BASELINE = "best_of_n"
SIMULATED_MAX_TOKENS = 16_000  # DEER's budget, under which the simulator's trace lengths were reported
DEEPPRUNE_TOKENS_SAVED = 0.65
DEEPPRUNE_POINTS = 3.0


JUDGED = "prune_judge87"
"""The pruning run whose judge is `SimulatedJudge` at DeepPrune's AUROC (simulated model only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Preset:
    """A strategy as the benchmark runs it: its config class's shipped defaults, and what it changes."""

    default: ScalingConfig
    changes: Mapping[str, Any]
    judged: bool = False  # prune with SimulatedJudge instead of the shipped lexical judge
    calibrated: bool = False  # the entropy threshold is calibrated on held-out questions first

    def config(self, more: Mapping[str, Any]) -> ScalingConfig:
        """The shipped defaults with this preset's changes (and `more`), validated.

        Only the changes are given: a setting the config would ignore is refused when it is set, not when
        it is left at its default.
        """
        config: ScalingConfig = type(self.default).model_validate({**self.changes, **more})
        return config

    def overrides(self, more: Mapping[str, Any]) -> dict[str, Any]:
        """The settings that differ from the shipped defaults."""
        changed = {**self.changes, **more}
        return {key: value for key, value in changed.items() if getattr(self.default, key) != value}


def _presets(samples: int | None) -> dict[str, _Preset]:
    n: dict[str, Any] = {} if samples is None else {"n": samples}
    max_n: dict[str, Any] = {} if samples is None else {"max_n": samples}
    return {
        "single": _Preset(default=SingleConfig(), changes={}),
        "best_of_n": _Preset(default=BestOfNConfig(), changes=n),
        "best_of_n_judge": _Preset(default=BestOfNConfig(), changes={"selector": "judge", **n}),
        "best_of_n_logprob": _Preset(default=BestOfNConfig(), changes={"selector": "logprob", **n}),
        "self_consistency": _Preset(default=SelfConsistencyConfig(), changes=max_n),
        "esc": _Preset(default=SelfConsistencyConfig(), changes={"rule": "window", **max_n}),
        "pdr": _Preset(default=PDRConfig(), changes={}),
        "sr": _Preset(default=PDRConfig(), changes={"rounds": (1, 1, 1)}),
        "prune": _Preset(default=PruneConfig(), changes=n),
        JUDGED: _Preset(default=PruneConfig(), changes=n, judged=True),
        "adaptive_termination": _Preset(default=AdaptiveTerminationConfig(), changes={}),
        "adaptive_termination_threshold": _Preset(
            default=AdaptiveTerminationConfig(), changes={"rule": "threshold"}, calibrated=True
        ),
    }


STRATEGIES = tuple(_presets(None))
"""The strategy names the benchmark knows, each run with its config's shipped defaults but for its `overrides`."""


async def run_scaling_bench(
    *,
    strategies: list[str],
    dataset: Path | str | None = None,
    data_dir: Path | None = None,
    model: str = "simulated",
    limit: int = 20,
    seed: int = 0,
    plot: Path | None = None,
    samples: int | None = None,
    max_tokens: int | None = None,
    on_result: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the strategies on the same questions and return the JSON-able figures.

    Every strategy runs with its config class's shipped defaults except the settings listed in its
    `overrides` (what makes it that variant, e.g. `selector: judge`, and `samples` when given).

    Args:
        strategies: names from `STRATEGIES` (an empty list runs them all; `prune_judge87` needs the simulated
            model).
        dataset: a JSON Lines file with `question` and `answer`, "arithmetic" (generated, seeded), a math data
            set's name (`gsm8k`), or None for GSM8K's test split.
        data_dir: the data folder to look in alone (default: `$AGENTDAG_DATA`, else `../shared/data`, then
            the fetch cache; see `data_paths`).
        model: "simulated", "local" (the embedded model) or the URL of an OpenAI-compatible server.
        limit: questions asked.
        seed: seeds the samples, the simulated model and judge, and the arithmetic questions.
        plot: where to write the PNG of accuracy against tokens (skipped, with a note, without matplotlib).
        samples: if given, overrides the sample count (`n`, or `max_n`) of best-of-n, pruning and
            self-consistency.
        max_tokens: each sample's completion limit (default 16,000 simulated, DEER's budget; 160 for real models).
        on_result: called with each strategy's figures as soon as it finishes (for progress output).

    Returns:
        `config`, `strategies` (name to `accuracy`, `tokens_total`, `tokens_seq`, `calls`, `wall_s`, `samples`,
        `pruned`, `errors` (questions whose run failed, counted wrong), `tokens_vs_best_of_n`,
        `accuracy_vs_best_of_n_points`, `overrides` and `settings`), `targets` (DeepPrune's claim checked on
        `prune_judge87`, and the same figures for `prune`), `pareto` (names on the accuracy/tokens front,
        cheapest first), `plot` (the PNG's path, or why there is none) and, for the simulated model,
        `calibration` (each parameter with its source), `measured` (the run's traces and both judges on them),
        `lexical_judge_auroc` and `simulated_judge_auroc`.

    Raises:
        ValueError: an unknown strategy or model name, or `prune_judge87` without the simulated model.
        FileNotFoundError: the data set is missing (the message names the fetch command).
    """
    simulated = model == "simulated"
    max_tokens = max_tokens or (SIMULATED_MAX_TOKENS if simulated else 160)
    presets = _presets(samples)
    names = strategies or [name for name in presets if simulated or not presets[name].judged]
    unknown = [name for name in names if name not in presets]
    if unknown:
        raise ValueError(f"unknown strategies {', '.join(unknown)}; known: {', '.join(presets)}")
    if not simulated and any(presets[name].judged for name in names):
        raise ValueError(f"{JUDGED} needs --model simulated: its judge knows the simulated traces' answers")
    source = _resolve_dataset(dataset, data_dir)
    pool = load_questions(source, limit=limit + CALIBRATION_QUESTIONS, seed=seed)
    questions = pool[:limit]
    calibration = pool[limit:] or pool[:CALIBRATION_QUESTIONS]
    figures: dict[str, dict[str, Any]] = {}
    correct: dict[str, list[bool]] = {}
    report: dict[str, Any] = {}
    async with _open_bench_model(model, pool, seed) as opened:
        for name in names:
            figures[name], correct[name] = await _run_preset(
                presets[name], opened, questions, calibration, seed, max_tokens
            )
            if on_result is not None:
                on_result(name, figures[name])
        if isinstance(opened, SimulatedModel):
            report |= _simulator_figures(opened, [item.question for item in questions], seed)
    _compare(figures, correct)
    front = _pareto(figures)
    report = {
        "config": {
            "dataset": source if isinstance(source, str) else source.name,
            "model": model,
            "questions": len(questions),
            "samples": samples,
            "max_tokens": max_tokens,
            "seed": seed,
            "wall_s_note": "wall_s is the harness's own time; the simulated model does not sleep, read B_seq "
            "(tokens_seq) as the latency proxy"
            if simulated
            else "wall_s includes the model's latency",
        },
        **report,
        "strategies": figures,
        "targets": _targets(figures),
        "pareto": front,
    }
    if plot is not None:
        report["plot"] = plot_front(figures, front, plot)
    return report


async def _run_preset(
    preset: _Preset,
    model: Model,
    questions: list[MathQuestion],
    calibration: list[MathQuestion],
    seed: int,
    max_tokens: int,
) -> tuple[dict[str, Any], list[bool]]:
    """Build the preset's strategy (calibrating its threshold first if it has one) and run it."""
    more: dict[str, Any] = {}  # settings fixed at run time
    spent = Usage()
    if preset.calibrated and isinstance(preset.default, AdaptiveTerminationConfig):
        requests = [_request(item, seed, index, max_tokens) for index, item in enumerate(calibration, 7919)]
        threshold, ledger = await calibrate_threshold(model, requests, n=preset.default.n)
        more["threshold"] = round(threshold, 4) + 0.0  # + 0.0: no "-0.0" for a zero entropy
        spent = ledger.usage
    config = preset.config(more)
    strategy = create_strategy(config, model)
    overrides = preset.overrides(more)
    judge = None
    if preset.judged and isinstance(strategy, Prune) and isinstance(model, SimulatedModel):
        judge = strategy.judge = SimulatedJudge(model, seed=seed)
        overrides["judge"] = f"simulated: AUROC {judge.target_auroc}, threshold {judge.threshold:.3f} (d'/2)"
    figures, correct = await _run_strategy(strategy, questions, seed, max_tokens)
    if spent.calls:  # the pre-sampling pass is part of the strategy's cost
        figures["tokens_total"] += spent.total_tokens
        figures["completion_tokens"] += spent.completion_tokens
        figures["calibration_tokens"] = spent.total_tokens
    figures |= _judge_figures(judge) | {"overrides": overrides, "settings": config.model_dump(mode="json")}
    return figures, correct


def _judge_figures(judge: SimulatedJudge | None) -> dict[str, Any]:
    if judge is None:
        return {}
    measured = auroc([c.score for c in judge.comparisons if c.same], [c.score for c in judge.comparisons if not c.same])
    return {
        "judge_tokens": judge.tokens,
        "judge_comparisons": len(judge.comparisons),
        "judge_auroc_in_run": None if measured is None else round(measured, 3),
    }


def _simulator_figures(model: SimulatedModel, questions: list[str], seed: int) -> dict[str, Any]:
    """The calibration table and what the run's own traces show about it (both judges on their prefixes)."""
    shipped = PruneConfig()
    judge = SimulatedJudge(model, seed=seed)
    lexical = LexicalJudge(threshold=shipped.judge_threshold, measure=shipped.measure)
    measured = measure_traces(
        model, lexical=lexical, judge=judge, prefix_tokens=shipped.prefix_tokens, questions=questions
    )
    judges = measured["judges"] or {}
    return {
        "calibration": describe_calibration(model, judge=judge),
        "measured": measured,
        "lexical_judge_auroc": judges.get("lexical", {}).get("auroc"),
        "simulated_judge_auroc": judges.get("simulated", {}).get("auroc"),
    }


def _resolve_dataset(dataset: Path | str | None, data_dir: Path | None) -> Path | str:
    if dataset is not None and str(dataset) == "arithmetic":
        return "arithmetic"
    return resolve_dataset(dataset, kind="math", default="gsm8k_test.jsonl", data_dir=data_dir)


@asynccontextmanager
async def _open_bench_model(model: str, questions: list[MathQuestion], seed: int) -> AsyncIterator[Model]:
    if model == "simulated":
        yield SimulatedModel([(item.question, item.answer) for item in questions], seed=seed)
        return
    async with open_model(ModelConfig.from_name(model, others=["simulated"])) as opened:
        yield opened


def _request(item: MathQuestion, seed: int, index: int, max_tokens: int) -> ModelRequest:
    return ModelRequest(
        messages=(Message(role="user", content=PROMPT.format(question=item.question)),),
        settings=ModelSettings(seed=seed * 100_003 + index * 1_009, max_tokens=max_tokens),
    )


async def _run_strategy(
    strategy: Model, questions: list[MathQuestion], seed: int, max_tokens: int
) -> tuple[dict[str, Any], list[bool]]:
    """The strategy's figures over the questions, and which questions it answered correctly."""
    tokens_total = completion_tokens = tokens_seq = calls = samples = pruned = errors = 0
    correct: list[bool] = []
    started = time.perf_counter()
    for index, item in enumerate(questions):
        try:
            response = await strategy.request(_request(item, seed, index, max_tokens))
        except ModelError:
            errors += 1  # counted as wrong; the tokens of a failed run are not reported back
            correct.append(False)
            continue
        report = report_of(response)
        found = extract_number(response.text)
        correct.append(found is not None and same_number(found, item.answer))
        tokens_total += report.tokens_total
        completion_tokens += report.completion_tokens
        tokens_seq += report.tokens_seq
        calls += report.calls
        samples += report.samples
        pruned += report.pruned
    figures = {
        "accuracy": round(sum(correct) / len(questions), 4) if questions else 0.0,
        "tokens_total": tokens_total,
        "completion_tokens": completion_tokens,
        "tokens_seq": tokens_seq,
        "calls": calls,
        "wall_s": round(time.perf_counter() - started, 3),
        "samples": samples,
        "pruned": pruned,
        "errors": errors,
    }
    return figures, correct


def _compare(figures: dict[str, dict[str, Any]], correct: Mapping[str, list[bool]]) -> None:
    """Each strategy against best-of-n: token and sample ratios, and the accuracy difference in points with the
    standard error of that paired difference over the same questions."""
    baseline = figures.get(BASELINE)
    if baseline is None:
        return
    for name, values in figures.items():
        values["tokens_vs_best_of_n"] = round(values["tokens_total"] / max(1, baseline["tokens_total"]), 3)
        values["completion_tokens_vs_best_of_n"] = round(
            values["completion_tokens"] / max(1, baseline["completion_tokens"]), 3
        )
        values["accuracy_vs_best_of_n_points"] = round(100 * (values["accuracy"] - baseline["accuracy"]), 1)
        differences = [int(mine) - int(base) for mine, base in zip(correct[name], correct[BASELINE], strict=True)]
        spread = statistics.pstdev(differences) if len(differences) > 1 else 0.0
        values["accuracy_vs_best_of_n_se_points"] = round(100 * spread / math.sqrt(max(1, len(differences) - 1)), 1)
        values["samples_vs_best_of_n"] = round(values["samples"] / max(1, baseline["samples"]), 3)


def _targets(figures: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """DeepPrune's claim (its lower figure) checked on the judged run; the same figures for lexical pruning."""
    targets: dict[str, Any] = {}
    for key, name in (("deepprune", JUDGED), ("lexical", "prune")):
        values = figures.get(name)
        if values is None or "tokens_vs_best_of_n" not in values:
            continue
        saved, delta = 1 - values["tokens_vs_best_of_n"], values["accuracy_vs_best_of_n_points"]
        generated = 1 - values["completion_tokens_vs_best_of_n"]
        close = delta >= -DEEPPRUNE_POINTS
        targets[key] = {
            "strategy": name,
            "claim": "at least 65% fewer tokens than best_of_n within 3 points of its accuracy (DeepPrune)",
            "tokens_saved": round(saved, 3),
            "completion_tokens_saved": round(generated, 3),
            "accuracy_vs_best_of_n_points": delta,
            "accuracy_vs_best_of_n_se_points": values["accuracy_vs_best_of_n_se_points"],
            "judge_tokens_share": round(values.get("judge_tokens", 0) / max(1, values["tokens_total"]), 3),
            "holds": saved >= DEEPPRUNE_TOKENS_SAVED and close,
            "holds_on_completion_tokens": generated >= DEEPPRUNE_TOKENS_SAVED and close,
        }
    return targets


def _pareto(figures: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names not beaten by another strategy that is at least as accurate with at most as many tokens."""
    front = [
        name
        for name, mine in figures.items()
        if not any(
            other["accuracy"] >= mine["accuracy"]
            and other["tokens_total"] <= mine["tokens_total"]
            and (other["accuracy"], -other["tokens_total"]) != (mine["accuracy"], -mine["tokens_total"])
            for other in figures.values()
        )
    ]
    return sorted(front, key=lambda name: figures[name]["tokens_total"])
