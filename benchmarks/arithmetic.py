"""Arithmetic benchmark: does the planner compute every part of a compound question, and does the answer say it?

`agentdag bench arithmetic --model local --seed 1 --limit 20 --lever default,plans,joiner`

The cases are generated, of the same shape as the README's main example ("What is (12 + 30) * 2, and what
is 100 / 4?"): two or three independent sub-expressions asked together, each one or two operations on whole
numbers, with whole-number values. A seed fixes the cases; tune on one seed and report on another.

Each case runs the whole agent (plan, calculator nodes, join) with the calculator tools, once per lever:

- `default`: the settings a task file gets when it sets nothing;
- `plans`: the planner under best-of-n with the `structure` selector (its other settings the strategy's
  defaults): the plan that validates, covers the task's numbers and repeats no call;
- `joiner`: the joiner under adaptive self-consistency (its defaults), a vote over its answers;
- `plans+joiner`: both;
- `no_repair`: `max_repairs: 0`, to see what the repair loop is worth;
- `no_grammar`: the LLMCompiler text format (no constrained decoding), to see what the grammar is worth.

Scores per case: `plan_right`, every sub-expression's value is the output of a node that ran and no call was
repeated; `answer_right`, the run is done and every value appears in the answer as a number.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from agentdag.tools.calculator import TOOLS, evaluate
from rich.table import Table

from agentdag.agent import Agent
from agentdag.config import PlannerConfig
from agentdag.models import Model, ModelConfig, open_model
from agentdag.result import RunResult
from agentdag.scaling import BestOfNConfig, ScalingConfig, SelfConsistencyConfig, create_strategy
from agentdag.usage import RunMeter

__all__ = ["LEVERS", "ArithmeticCase", "create_arithmetic_table", "create_cases", "run_arithmetic_bench", "score_run"]

LEVERS = ("default", "plans", "joiner", "plans+joiner", "no_repair", "no_grammar")
_PLANS = BestOfNConfig(selector="structure")
_JOINER = SelfConsistencyConfig()
_SHAPES = (
    "{a} + {b}",
    "{a} - {b}",
    "{a} * {b}",
    "{p} / {b}",
    "({a} + {b}) * {c}",
    "({a} - {b}) * {c}",
    "{a} * {b} + {c}",
)
_ASKS = ("What is {0}, and what is {1}?", "What is {0}, what is {1}, and what is {2}?")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_REPEATED = "repeated earlier"  # the planner's notes when a plan repeats a call (agentdag.planning)


@dataclass(frozen=True, slots=True, kw_only=True)
class ArithmeticCase:
    """One generated question: its text, its sub-expressions and their values."""

    id: str
    task: str
    expressions: tuple[str, ...]
    values: tuple[int | float, ...]


def create_cases(count: int, *, seed: int) -> list[ArithmeticCase]:
    """`count` questions of two or three independent parts; the same seed gives the same questions."""
    generator = random.Random(seed)
    cases: list[ArithmeticCase] = []
    for index in range(count):
        parts = 2 if generator.random() < 0.7 else 3
        expressions = tuple(_create_expression(generator) for _ in range(parts))
        task = _ASKS[parts - 2].format(*expressions)
        values = tuple(evaluate(expression) for expression in expressions)
        cases.append(ArithmeticCase(id=f"s{seed}-{index}", task=task, expressions=expressions, values=values))
    return cases


def _create_expression(generator: random.Random) -> str:
    shape = generator.choice(_SHAPES)
    a, b = generator.randint(2, 99), generator.randint(2, 99)
    # A division's numerator is a multiple of its divisor, so every value is a whole number.
    return shape.format(a=a, b=b, c=generator.randint(2, 9), p=b * generator.randint(2, 20))


def score_run(case: ArithmeticCase, result: RunResult) -> dict[str, Any]:
    """Whether the run's nodes computed every value with no repeated call, and whether its answer gives them."""
    outputs = [record.output for record in result.records.values() if record.status == "done"]
    computed = [any(_same(output, value) for output in outputs) for value in case.values]
    repeated = any(_REPEATED in note for note in result.notes)
    answered = _numbers(str(result.answer)) if result.status == "done" else []
    said = [any(_same(number, value) for number in answered) for value in case.values]
    return {
        "plan_right": all(computed) and not repeated,
        "answer_right": all(said),
        "computed": sum(computed),
        "repeated_call": repeated,
    }


def _same(found: object, value: int | float) -> bool:
    if isinstance(found, bool) or not isinstance(found, int | float):
        return False
    return math.isclose(found, value, rel_tol=1e-9, abs_tol=1e-9)


def _numbers(text: str) -> list[float]:
    return [float(match.replace(",", "")) for match in _NUMBER.findall(text)]


async def run_arithmetic_bench(
    *,
    model: str | Model = "local",
    seed: int = 1,
    limit: int = 20,
    levers: Sequence[str] = ("default",),
    planner_seed: int = 0,
    case_timeout_s: float = 300.0,
    on_case: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `limit` generated cases under each lever and return `{"config", "summary", "items"}` (JSON-able).

    Args:
        model: "local" (the embedded model), the URL of an OpenAI-compatible server, or a `Model`.
        seed: the seed that generates the cases (tune on one, report on another).
        limit: how many cases.
        levers: from `LEVERS`.
        planner_seed: the planner's sampling seed (`planner.seed`), so sampled levers can be repeated.
        case_timeout_s: the wall-time limit of one run; past it the case scores 0 with an error.
        on_case: called with each item as soon as its case finishes (for progress output).

    Raises:
        ValueError: an unknown lever.
    """
    unknown = [lever for lever in levers if lever not in LEVERS]
    if unknown:
        raise ValueError(f"unknown lever {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    cases = create_cases(limit, seed=seed)
    items: list[dict[str, Any]] = []
    async with _open_model(model) as opened:
        for case in cases:
            item: dict[str, Any] = {"id": case.id, "task": case.task, "values": list(case.values), "levers": {}}
            for lever in levers:
                item["levers"][lever] = await _run_case(
                    case, lever, opened, planner_seed=planner_seed, timeout_s=case_timeout_s
                )
            items.append(item)
            if on_case is not None:
                on_case(item)
    config = {
        "model": model if isinstance(model, str) else type(model).__name__,
        "seed": seed,
        "limit": limit,
        "levers": list(levers),
        "planner_seed": planner_seed,
        "plans": _PLANS.model_dump(),
        "joiner": _JOINER.model_dump(),
    }
    return {"config": config, "summary": _summarize(items, levers), "items": items}


@asynccontextmanager
async def _open_model(model: str | Model) -> AsyncIterator[Model]:
    if isinstance(model, Model):
        yield model
        return
    async with open_model(ModelConfig.from_name(model)) as opened:
        yield opened


async def _run_case(
    case: ArithmeticCase, lever: str, model: Model, *, planner_seed: int, timeout_s: float
) -> dict[str, Any]:
    meter = RunMeter()
    started = time.perf_counter()
    row: dict[str, Any] = {"plan_right": False, "answer_right": False, "error": None}
    try:
        with anyio.move_on_after(timeout_s) as scope:
            result = await _create_agent(lever, model, planner_seed=planner_seed).run(case.task, meter=meter)
            row |= score_run(case, result) | {"status": result.status, "answer": str(result.answer)[:200]}
            row["run_error"] = result.error
        if scope.cancelled_caught:
            row["error"] = f"timed out after {timeout_s:g} s"
    except Exception as failure:  # one case's failure is data in its row, never the end of the run
        row["error"] = f"{type(failure).__name__}: {failure}"
    usage = meter.total
    return row | {
        "wall_s": round(time.perf_counter() - started, 3),
        "model_calls": usage.calls,
        "tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _create_agent(lever: str, model: Model, *, planner_seed: int) -> Agent:
    planner_scaling: ScalingConfig | None = _PLANS if "plans" in lever else None
    joiner_scaling: ScalingConfig | None = _JOINER if "joiner" in lever else None
    planner = PlannerConfig(seed=planner_seed)
    if lever == "no_repair":
        planner = planner.model_copy(update={"max_repairs": 0})
    if lever == "no_grammar":
        planner = planner.model_copy(update={"style": "llmcompiler"})
    return Agent(
        tools=TOOLS,
        planner_model=create_strategy(planner_scaling, model) if planner_scaling else model,
        joiner_model=create_strategy(joiner_scaling, model) if joiner_scaling else model,
        planner=planner,
    )


def _summarize(items: Sequence[Mapping[str, Any]], levers: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for lever in levers:
        rows = [item["levers"][lever] for item in items]
        count = len(rows) or 1
        summary[lever] = {
            "cases": len(rows),
            "plan_accuracy": round(sum(row["plan_right"] for row in rows) / count, 3),
            "answer_accuracy": round(sum(row["answer_right"] for row in rows) / count, 3),
            "tokens_per_case": round(sum(row["tokens"] for row in rows) / count, 1),
            "wall_s_per_case": round(sum(row["wall_s"] for row in rows) / count, 2),
            "errors": sum(row["error"] is not None for row in rows),
        }
    return summary


def create_arithmetic_table(report: Mapping[str, Any]) -> Table:
    """One row per lever: plan and answer accuracy, tokens and wall time per case, errors."""
    config = report["config"]
    table = Table(title=f"arithmetic: {config['limit']} cases of seed {config['seed']}, model {config['model']}")
    for column in ("lever", "plan accuracy", "answer accuracy", "tokens/case", "wall/case (s)", "errors"):
        table.add_column(column)
    for lever, row in report["summary"].items():
        fields = ("plan_accuracy", "answer_accuracy", "tokens_per_case", "wall_s_per_case", "errors")
        table.add_row(lever, *(str(row[field]) for field in fields))
    return table
