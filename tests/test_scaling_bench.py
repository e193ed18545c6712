from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from agentdag.benchmarks.scaling import STRATEGIES, create_scaling_table, load_questions, run_scaling_bench

FIGURES = {"accuracy", "tokens_total", "tokens_seq", "calls", "wall_s"}


@pytest.mark.asyncio
async def test_every_strategy_runs_on_the_simulated_model(tmp_path: Path) -> None:
    plot = tmp_path / "front.png"
    report = await run_scaling_bench(
        strategies=[], dataset="arithmetic", model="simulated", limit=6, samples=8, plot=plot
    )
    json.dumps(report)  # JSON-able
    assert set(report["strategies"]) == set(STRATEGIES)
    for name, figures in report["strategies"].items():
        assert set(figures) >= FIGURES, name
        assert 0.0 <= figures["accuracy"] <= 1.0
        assert 0 < figures["tokens_seq"] <= figures["tokens_total"]
    assert report["pareto"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert report["plot"] == str(plot) and plot.stat().st_size > 0
    else:
        assert "matplotlib is not installed" in report["plot"]
    assert create_scaling_table(report).row_count == len(STRATEGIES)


@pytest.mark.asyncio
async def test_a_dataset_file_and_a_strategy_subset(tmp_path: Path) -> None:
    data = tmp_path / "math.jsonl"
    data.write_text(
        "\n".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(5)) + "\n"
    )
    report = await run_scaling_bench(strategies=["single", "prune"], dataset=data, model="simulated", limit=3)
    assert list(report["strategies"]) == ["single", "prune"]
    assert report["config"]["questions"] == 3
    assert "plot" not in report


@pytest.mark.asyncio
async def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategies"):
        await run_scaling_bench(strategies=["magic"], dataset="arithmetic", model="simulated", limit=1)
    with pytest.raises(ValueError, match="--model"):
        await run_scaling_bench(strategies=["single"], dataset="arithmetic", model="gpt", limit=1)
    with pytest.raises(FileNotFoundError):
        await run_scaling_bench(strategies=["single"], dataset=Path("/nonexistent.jsonl"), model="simulated", limit=1)


def test_arithmetic_questions_are_seeded_and_correct() -> None:
    first, again = load_questions("arithmetic", limit=20, seed=1), load_questions("arithmetic", limit=20, seed=1)
    assert first == again
    for item in first:
        expression = item.question.removeprefix("What is ").removesuffix("?")
        assert str(eval(expression)) == item.answer
