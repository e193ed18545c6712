"""How a scaling benchmark report is shown: rich tables of the strategies and the calibration, and the PNG."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

__all__ = ["create_calibration_table", "create_scaling_table", "create_scaling_view", "plot_front"]

_COLUMNS = (
    "strategy",
    "acc",
    "Δ pts",  # accuracy against best_of_n, points ± standard error
    "tokens",
    "seq",
    "÷ bon",  # tokens against best_of_n
    "calls",
    "samples",
    "pruned",
    "wall s",
    "front",
    "overrides",
)


def create_scaling_view(report: Mapping[str, Any]) -> Group:
    """The strategies' table, and for the simulated model the calibration table below it."""
    tables = [create_scaling_table(report)]
    if "calibration" in report:
        tables.append(create_calibration_table(report))
    return Group(*tables)


def create_scaling_table(report: Mapping[str, Any]) -> Table:
    """A rich table of a `run_scaling_bench` report: one row per strategy, the Pareto front marked."""
    config = report["config"]
    title = f"scaling bench: {config['dataset']}, model {config['model']}, {config['questions']} questions"
    table = Table(title=title, caption_justify="left")
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column in ("strategy", "overrides") else "right")
    for name, values in report["strategies"].items():
        delta = (
            f"{values['accuracy_vs_best_of_n_points']:+.1f}±{values['accuracy_vs_best_of_n_se_points']:.1f}"
            if "accuracy_vs_best_of_n_points" in values
            else "-"
        )
        table.add_row(
            name,
            f"{values['accuracy']:.3f}",
            delta,
            str(values["tokens_total"]),
            str(values["tokens_seq"]),
            f"{values['tokens_vs_best_of_n']:.3f}" if "tokens_vs_best_of_n" in values else "-",
            str(values["calls"]),
            str(values["samples"]),
            str(values["pruned"]),
            f"{values['wall_s']:.2f}",
            "*" if name in report["pareto"] else "",
            ", ".join(f"{key}={value}" for key, value in values.get("overrides", {}).items()),
        )
    notes = ["Δ pts: accuracy against best_of_n in points ± its standard error; ÷ bon: tokens against best_of_n"]
    notes += [f"{key}: {_verdict(target)}" for key, target in report.get("targets", {}).items()]
    if report.get("lexical_judge_auroc") is not None:
        notes.append(
            f"lexical judge AUROC {report['lexical_judge_auroc']} (published 0.58-0.66), simulated judge AUROC "
            f"{report['simulated_judge_auroc']} (stated 0.87), on this run's 64-token prefixes"
        )
    notes.append(config.get("wall_s_note", ""))
    table.caption = "\n".join(note for note in notes if note)
    return table


def create_calibration_table(report: Mapping[str, Any]) -> Table:
    """The simulator's parameters with their sources, then what the run's own traces measured."""
    table = Table(title="simulator calibration")
    for column in ("parameter", "value", "source / measured on this run"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for item in report["calibration"]:
        table.add_row(item["parameter"], str(item["value"]), item["source"])
    traces = report["measured"]["traces"]
    for key, value in traces.items():
        table.add_row(f"measured {key}", str(value), f"over the first {traces.get('per_question')} traces per question")
    for name, figures in (report["measured"]["judges"] or {}).items():
        if isinstance(figures, dict):
            rates = (
                f"at threshold {figures['threshold']}: same-answer pairs judged same {figures['same_judged_same']}, "
                f"different-answer pairs judged same {figures['different_judged_same']}"
            )
            table.add_row(f"measured {name} judge AUROC", str(figures["auroc"]), rates)
    return table


def _verdict(target: Mapping[str, Any]) -> str:
    def holds(flag: bool) -> str:
        return "holds" if flag else "does not hold"

    return (
        f"{target['strategy']} saves {target['tokens_saved']:.1%} of best_of_n's tokens "
        f"({target['completion_tokens_saved']:.1%} of its completion tokens) at "
        f"{target['accuracy_vs_best_of_n_points']:+.1f} ± {target['accuracy_vs_best_of_n_se_points']:.1f} points: "
        f"{target['claim']} {holds(target['holds'])} ({holds(target['holds_on_completion_tokens'])} on completion "
        "tokens)"
    )


def plot_front(figures: Mapping[str, Mapping[str, Any]], front: list[str], path: Path) -> str:
    """Write the PNG of accuracy against tokens with the Pareto front; its path, or why it was skipped."""
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
