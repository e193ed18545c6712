from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from agentdag.benchmarks.scaling import (
    JUDGED,
    STRATEGIES,
    create_scaling_table,
    create_scaling_view,
    load_questions,
    run_scaling_bench,
)
from rich.console import Console

from agentdag.cli import main
from agentdag.scaling import parse_scaling_config

FIGURES = {"accuracy", "tokens_total", "completion_tokens", "tokens_seq", "calls", "wall_s", "overrides", "settings"}
OVERRIDES = {
    "single": {},
    "best_of_n": {},
    "best_of_n_judge": {"selector": "judge"},
    "best_of_n_logprob": {"selector": "logprob"},
    "self_consistency": {},
    "esc": {"rule": "window"},
    "pdr": {},
    "sr": {"rounds": [1, 1, 1]},
    "prune": {},
    JUDGED: {},
    "adaptive_termination": {},
    "adaptive_termination_threshold": {"rule": "threshold"},
}
"""What each strategy changes of its config's shipped defaults (the calibrated threshold and the judge aside)."""


@pytest.mark.asyncio
async def test_every_strategy_runs_on_the_simulated_model(tmp_path: Path) -> None:
    plot = tmp_path / "front.png"
    report = await run_scaling_bench(strategies=[], dataset="arithmetic", model="simulated", limit=3, plot=plot)
    report = json.loads(json.dumps(report))  # JSON-able
    assert set(report["strategies"]) == set(STRATEGIES)
    for name, figures in report["strategies"].items():
        assert set(figures) >= FIGURES, name
        assert 0.0 <= figures["accuracy"] <= 1.0
        assert 0 < figures["tokens_seq"] <= figures["tokens_total"]
        assert 0 < figures["completion_tokens"] < figures["tokens_total"]
    assert report["pareto"]
    assert report["calibration"] and report["measured"]["traces"]["count"] > 0
    assert 0.0 <= report["lexical_judge_auroc"] <= 1.0 and 0.0 <= report["simulated_judge_auroc"] <= 1.0
    if importlib.util.find_spec("matplotlib") is not None:
        assert report["plot"] == str(plot) and plot.stat().st_size > 0
    else:
        assert "matplotlib is not installed" in report["plot"]
    assert create_scaling_table(report).row_count == len(STRATEGIES)
    console = Console(width=240, record=True)
    console.print(create_scaling_view(report))
    shown = console.export_text()
    assert "simulator calibration" in shown and "lexical judge AUROC" in shown and "DEER" in shown


@pytest.mark.asyncio
async def test_every_strategy_runs_with_its_shipped_defaults_but_for_its_listed_overrides() -> None:
    report = await run_scaling_bench(strategies=[], dataset="arithmetic", model="simulated", limit=2)
    report = json.loads(json.dumps(report))
    for name, figures in report["strategies"].items():
        settings = dict(figures["overrides"])  # the overrides of config settings
        if name == JUDGED:
            assert settings.pop("judge").startswith("simulated: AUROC 0.87, threshold 0.796")
        overrides = {key: value for key, value in settings.items() if key != "threshold"}
        if name == "adaptive_termination_threshold":
            assert isinstance(settings["threshold"], float)
        assert overrides == OVERRIDES[name], name
        used = parse_scaling_config({"strategy": figures["settings"]["strategy"], **settings})[0]
        assert used.model_dump(mode="json") == figures["settings"], name  # nothing else differs from the defaults
    assert report["config"]["samples"] is None and report["config"]["max_tokens"] == 16_000


@pytest.mark.asyncio
async def test_a_sample_count_is_an_override_the_report_states() -> None:
    report = await run_scaling_bench(
        strategies=["best_of_n", "self_consistency", "prune"],
        dataset="arithmetic",
        model="simulated",
        limit=1,
        samples=4,
    )
    overrides = {name: figures["overrides"] for name, figures in report["strategies"].items()}
    assert overrides == {"best_of_n": {"n": 4}, "self_consistency": {"max_n": 4}, "prune": {"n": 4}}
    assert report["strategies"]["best_of_n"]["samples"] == 4


@pytest.mark.asyncio
async def test_the_deepprune_target_is_reported_from_the_run_not_assumed() -> None:
    report = await run_scaling_bench(
        strategies=["best_of_n", "prune", JUDGED], dataset="arithmetic", model="simulated", limit=4
    )
    figures = report["strategies"]
    for key, name in (("deepprune", JUDGED), ("lexical", "prune")):
        target = report["targets"][key]
        saved = 1 - figures[name]["tokens_total"] / figures["best_of_n"]["tokens_total"]
        delta = 100 * (figures[name]["accuracy"] - figures["best_of_n"]["accuracy"])
        assert target["tokens_saved"] == pytest.approx(saved, abs=1e-3)
        assert target["accuracy_vs_best_of_n_points"] == pytest.approx(delta, abs=0.1)
        assert target["holds"] == (target["tokens_saved"] >= 0.65 and target["accuracy_vs_best_of_n_points"] >= -3)
    judged = figures[JUDGED]
    assert judged["judge_comparisons"] > 0 and 0 < judged["judge_tokens"] < judged["tokens_total"]
    assert judged["calls"] == judged["samples"] + judged["judge_comparisons"]  # each comparison is charged a call


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
    with pytest.raises(ValueError, match="prune_judge87 needs --model simulated"):
        await run_scaling_bench(strategies=[JUDGED], dataset="arithmetic", model="local", limit=1)


def test_arithmetic_questions_are_seeded_and_correct() -> None:
    first, again = load_questions("arithmetic", limit=20, seed=1), load_questions("arithmetic", limit=20, seed=1)
    assert first == again
    for item in first:
        expression = item.question.removeprefix("What is ").removesuffix("?")
        assert str(eval(expression)) == item.answer


def test_the_cli_states_the_sample_override_and_prints_the_calibration(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["bench", "scaling", "--model", "simulated", "--dataset", "arithmetic", "--limit", "1"]
    assert main([*arguments, "--strategy", "best_of_n,prune", "--samples", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {name: figures["overrides"] for name, figures in report["strategies"].items()} == {
        "best_of_n": {"n": 2},
        "prune": {"n": 2},
    }
    assert main([*arguments, "--strategy", "single"]) == 0
    shown = capsys.readouterr().out
    assert "simulator calibration" in shown and "refine_gain" in shown
