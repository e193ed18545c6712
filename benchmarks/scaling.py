"""Scaling benchmark: test-time scaling strategies side by side, accuracy against tokens.

`agentdag bench scaling --strategy NAME[,NAME...] --dataset FILE --model simulated|local|URL --limit N --json`
runs every strategy on the same questions and reports, per strategy, accuracy, B_total (`tokens_total`),
B_seq (`tokens_seq`), backend calls and wall time, plus the Pareto front of accuracy against tokens (and a
PNG of it when matplotlib is installed: `pip install 'agentdag[plots]'`).

Data: GSM8K's test split (`math/gsm8k_test.jsonl` of a data folder, MIT; see `data_paths`), any JSON
Lines file with `question` and `answer`, or `arithmetic`: seeded sums and
products a very small model can sometimes get right. `--model simulated` is `SimulatedModel`: a known
answer distribution and traces that reveal their answers gradually, so savings are measured, not guessed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from rich.table import Table

from agentdag.errors import ModelError
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models import ModelConfig, open_model
from agentdag.models.base import Model
from agentdag.scaling import (
    AdaptiveTerminationConfig,
    BestOfNConfig,
    PDRConfig,
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

from .data_paths import resolve_dataset
from .simulated import SimulatedModel

__all__ = ["STRATEGIES", "create_scaling_table", "load_questions", "run_scaling_bench"]

PROMPT = "{question}\n\nSolve the problem step by step, then end with the line: The answer is <number>."
CALIBRATION_QUESTIONS = 8
BASELINE = "best_of_n"


def _presets(samples: int, prefix_tokens: int) -> dict[str, ScalingConfig]:
    half, quarter = max(1, samples // 2), max(1, samples // 4)
    return {
        "single": SingleConfig(temperature=0.7),
        "best_of_n": BestOfNConfig(n=samples),
        "best_of_n_judge": BestOfNConfig(n=samples, selector="judge"),
        "best_of_n_logprob": BestOfNConfig(n=samples, selector="logprob"),
        "self_consistency": SelfConsistencyConfig(rule="beta", max_n=samples),
        "esc": SelfConsistencyConfig(rule="window", window=max(2, quarter), max_n=samples),
        "pdr": PDRConfig(rounds=(half, quarter, 1) if quarter < half else (half, 1)),
        "sr": PDRConfig(rounds=(1, 1, 1), distill="shared_top_k", top_k=1),
        "prune": PruneConfig(n=samples, prefix_tokens=prefix_tokens, judge_threshold=0.2),
        "adaptive_termination": AdaptiveTerminationConfig(n=max(2, quarter), max_rounds=4),
        "adaptive_termination_threshold": AdaptiveTerminationConfig(
            n=max(2, quarter), max_rounds=4, rule="threshold", threshold=0.0
        ),
    }


STRATEGIES = tuple(_presets(8, 64))
"""The strategy names the benchmark knows (presets sized by `samples`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Question:
    question: str
    answer: str


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

    Args:
        strategies: names from `STRATEGIES` (an empty list runs them all).
        dataset: a JSON Lines file with `question` and `answer`, "arithmetic" (generated, seeded), a math data
            set's name (`gsm8k`), or None for GSM8K's test split.
        data_dir: the data folder to look in alone (default: `$AGENTDAG_DATA`, else `../shared/data`, then
            the fetch cache; see `data_paths`).
        model: "simulated", "local" (the embedded model) or the URL of an OpenAI-compatible server.
        limit: questions asked.
        seed: seeds the samples, the simulated model and the arithmetic questions.
        plot: where to write the PNG of accuracy against tokens (skipped, with a note, without matplotlib).
        samples: the sample count the presets are sized by (default 16 simulated, 4 for real models).
        max_tokens: each sample's completion limit (default 320 simulated, 160 for real models).
        on_result: called with each strategy's figures as soon as it finishes (for progress output).

    Returns:
        `config`, `strategies` (name to `accuracy`, `tokens_total`, `tokens_seq`, `calls`, `wall_s`, `samples`,
        `pruned`, `errors` (questions whose run failed, counted wrong), `tokens_vs_best_of_n`,
        `samples_vs_best_of_n`), `pareto` (names on the accuracy/tokens front,
        cheapest first) and `plot` (the PNG's path, or why there is none).

    Raises:
        ValueError: an unknown strategy or model name.
        FileNotFoundError: the data set is missing (the message names the fetch command).
    """
    simulated = model == "simulated"
    samples = samples or (16 if simulated else 4)
    max_tokens = max_tokens or (320 if simulated else 160)
    presets = _presets(samples, prefix_tokens=max(8, max_tokens // 5))
    names = strategies or list(presets)
    unknown = [name for name in names if name not in presets]
    if unknown:
        raise ValueError(f"unknown strategies {', '.join(unknown)}; known: {', '.join(presets)}")
    source = _resolve_dataset(dataset, data_dir)
    pool = load_questions(source, limit=limit + CALIBRATION_QUESTIONS, seed=seed)
    questions = pool[:limit]
    calibration = pool[limit:] or pool[:CALIBRATION_QUESTIONS]
    figures: dict[str, dict[str, Any]] = {}
    async with _open_bench_model(model, pool, seed) as backend:
        for name in names:
            config = presets[name]
            calibrated: dict[str, Any] = {}
            if isinstance(config, AdaptiveTerminationConfig) and config.rule == "threshold":
                requests = [_request(item, seed, index, max_tokens) for index, item in enumerate(calibration, 7919)]
                threshold, ledger = await calibrate_threshold(backend, requests, n=config.n)
                config = config.model_copy(update={"threshold": threshold})
                calibrated = {"threshold": round(threshold, 4), "calibration_tokens": ledger.usage.total_tokens}
            figures[name] = await _run_strategy(create_strategy(config, backend), questions, seed, max_tokens)
            if calibrated:
                figures[name].update(calibrated)
                figures[name]["tokens_total"] += calibrated["calibration_tokens"]
            if on_result is not None:
                on_result(name, figures[name])
    _compare(figures)
    front = _pareto(figures)
    report: dict[str, Any] = {
        "config": {
            "dataset": source if isinstance(source, str) else source.name,
            "model": model,
            "questions": len(questions),
            "samples": samples,
            "max_tokens": max_tokens,
            "seed": seed,
        },
        "strategies": figures,
        "pareto": front,
    }
    if plot is not None:
        report["plot"] = _plot(figures, front, plot)
    return report


def load_questions(source: Path | str, *, limit: int, seed: int = 0) -> list[_Question]:
    """The first `limit` questions of a JSON Lines file, or `limit` generated ones for "arithmetic"."""
    if source == "arithmetic":
        return _arithmetic(limit, seed)
    questions: list[_Question] = []
    with Path(source).open(encoding="utf-8") as lines:
        for line in lines:
            if len(questions) >= limit:
                break
            if line.strip():
                record = json.loads(line)
                questions.append(_Question(question=str(record["question"]), answer=str(record["answer"]).strip()))
    return questions


def _arithmetic(count: int, seed: int) -> list[_Question]:
    rng = random.Random(f"arithmetic|{seed}")
    questions: list[_Question] = []
    for _ in range(count):
        kind = rng.choice(("+", "-", "*"))
        a, b = (rng.randint(2, 12), rng.randint(2, 9)) if kind == "*" else (rng.randint(10, 60), rng.randint(2, 30))
        value = a + b if kind == "+" else a - b if kind == "-" else a * b
        questions.append(_Question(question=f"What is {a} {kind} {b}?", answer=str(value)))
    return questions


def _resolve_dataset(dataset: Path | str | None, data_dir: Path | None) -> Path | str:
    if dataset is not None and str(dataset) == "arithmetic":
        return "arithmetic"
    return resolve_dataset(dataset, kind="math", default="gsm8k_test.jsonl", data_dir=data_dir)


@asynccontextmanager
async def _open_bench_model(model: str, questions: list[_Question], seed: int) -> AsyncIterator[Model]:
    if model == "simulated":
        yield SimulatedModel([(item.question, item.answer) for item in questions], seed=seed)
        return
    async with open_model(ModelConfig.from_name(model, others=["simulated"])) as opened:
        yield opened


def _request(item: _Question, seed: int, index: int, max_tokens: int) -> ModelRequest:
    return ModelRequest(
        messages=(Message(role="user", content=PROMPT.format(question=item.question)),),
        settings=ModelSettings(seed=seed * 100_003 + index * 1_009, max_tokens=max_tokens),
    )


async def _run_strategy(strategy: Model, questions: list[_Question], seed: int, max_tokens: int) -> dict[str, Any]:
    correct = tokens_total = tokens_seq = calls = samples = pruned = errors = 0
    started = time.perf_counter()
    for index, item in enumerate(questions):
        try:
            response = await strategy.request(_request(item, seed, index, max_tokens))
        except ModelError:
            errors += 1  # counted as wrong; the tokens of a failed run are not reported back
            continue
        report = report_of(response)
        found = extract_number(response.text)
        correct += found is not None and same_number(found, item.answer)
        tokens_total += report.tokens_total
        tokens_seq += report.tokens_seq
        calls += report.calls
        samples += report.samples
        pruned += report.pruned
    return {
        "accuracy": round(correct / len(questions), 4) if questions else 0.0,
        "tokens_total": tokens_total,
        "tokens_seq": tokens_seq,
        "calls": calls,
        "wall_s": round(time.perf_counter() - started, 3),
        "samples": samples,
        "pruned": pruned,
        "errors": errors,
    }


def _compare(figures: dict[str, dict[str, Any]]) -> None:
    baseline = figures.get(BASELINE)
    if baseline is None:
        return
    for values in figures.values():
        values["tokens_vs_best_of_n"] = round(values["tokens_total"] / max(1, baseline["tokens_total"]), 3)
        values["samples_vs_best_of_n"] = round(values["samples"] / max(1, baseline["samples"]), 3)


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


def _plot(figures: Mapping[str, Mapping[str, Any]], front: list[str], path: Path) -> str:
    try:
        pyplot: Any = import_module("matplotlib.pyplot")
    except ImportError:
        return "skipped: matplotlib is not installed (pip install 'agentdag[plots]')"
    import_module("matplotlib").use("Agg")
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for name, values in figures.items():
        axes.scatter(values["tokens_total"], values["accuracy"], color="tab:red" if name in front else "tab:blue")
        axes.annotate(
            name, (values["tokens_total"], values["accuracy"]), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    axes.plot(
        [figures[n]["tokens_total"] for n in front],
        [figures[n]["accuracy"] for n in front],
        color="tab:red",
        linewidth=1,
    )
    axes.set_xscale("log")
    axes.set_xlabel("tokens (B_total, all questions)")
    axes.set_ylabel("accuracy")
    axes.set_title("test-time scaling: accuracy against tokens (red: Pareto front)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return str(path)


def create_scaling_table(report: Mapping[str, Any]) -> Table:
    """A rich table of a `run_scaling_bench` report: one row per strategy, the Pareto front marked."""
    config = report["config"]
    table = Table(title=f"scaling bench: {config['dataset']}, model {config['model']}, {config['questions']} questions")
    for column in (
        "strategy",
        "accuracy",
        "tokens",
        "tokens seq",
        "vs best_of_n",
        "calls",
        "samples",
        "wall s",
        "front",
    ):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name, values in report["strategies"].items():
        table.add_row(
            name,
            f"{values['accuracy']:.3f}",
            str(values["tokens_total"]),
            str(values["tokens_seq"]),
            f"{values['tokens_vs_best_of_n']:.2f}" if "tokens_vs_best_of_n" in values else "-",
            str(values["calls"]),
            str(values["samples"]),
            f"{values['wall_s']:.2f}",
            "*" if name in report["pareto"] else "",
        )
    return table
