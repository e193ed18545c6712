"""The calls benchmark's figures: per style, accuracy (overall and by category), tokens and wall time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

__all__ = ["create_calls_table", "summarize_calls"]


def summarize_calls(items: Sequence[Mapping[str, Any]], styles: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per style: cases, correct, accuracy (also over the records whose ground truth fits its schema), accuracy
    by BFCL category, token totals and means, wall time."""
    summary: dict[str, dict[str, Any]] = {}
    categories = sorted({item["category"] for item in items})
    for style in styles:
        rows = [item["styles"][style] for item in items]
        count = len(rows)
        correct = sum(row["correct"] for row in rows)
        fitting = [item["styles"][style]["correct"] for item in items if "ground_truth_outside_schema" not in item]
        by_category = {}
        for category in categories:
            scored = [item["styles"][style]["correct"] for item in items if item["category"] == category]
            by_category[category] = round(sum(scored) / len(scored), 4)
        prompt = sum(row["prompt_tokens"] for row in rows)
        completion = sum(row["completion_tokens"] for row in rows)
        wall = sum(row["wall_s"] for row in rows)
        summary[style] = {
            "cases": count,
            "correct": correct,
            "accuracy": round(correct / count, 4) if count else 0.0,
            "accuracy_in_schema": round(sum(fitting) / len(fitting), 4) if fitting else 0.0,
            "by_category": by_category,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "tokens_per_case": round((prompt + completion) / count, 1) if count else 0.0,
            "model_calls": sum(row["model_calls"] for row in rows),
            "wall_s": round(wall, 3),
            "wall_s_per_case": round(wall / count, 3) if count else 0.0,
            "errors": sum(row["error"] is not None for row in rows),
        }
    return summary


def create_calls_table(report: Mapping[str, Any]) -> Table:
    """One row per style; the configuration and the token count's source as the caption."""
    config = report["config"]
    table = Table(title=f"calls: {', '.join(config['datasets'])}, model {config['model']}")
    columns = ("style", "accuracy", "correct", "by category", "tokens/case", "model calls", "wall (s)", "errors")
    for column in columns:
        table.add_column(column)
    for style, figures in report["summary"].items():
        categories = ", ".join(f"{name} {value:.3f}" for name, value in figures["by_category"].items())
        table.add_row(
            style,
            f"{figures['accuracy']:.3f}",
            f"{figures['correct']}/{figures['cases']}",
            categories,
            f"{figures['tokens_per_case']:.1f}",
            str(figures["model_calls"]),
            f"{figures['wall_s']:.2f}",
            str(figures["errors"]),
        )
    best_of_n = config["best_of_n"]
    table.caption = (
        f"first plans scored with BFCL's AST rules; no tool runs. best_of_n: n={best_of_n['n']}, "
        f"overrides {best_of_n['overrides']}. Tokens {config['tokens']}."
    )
    return table
