"""The arithmetic benchmark: its generated cases, its scoring, and its levers, with scripted models."""

from __future__ import annotations

import re

import pytest
from agentdag.benchmarks.arithmetic import LEVERS, create_arithmetic_table, create_cases, run_arithmetic_bench
from agentdag.tools.calculator import evaluate
from replies import finish, is_joiner, node, plan

from agentdag.messages import ModelRequest
from agentdag.models import FunctionModel

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_cases_are_compound_whole_number_questions_fixed_by_their_seed() -> None:
    cases = create_cases(50, seed=3)
    assert cases == create_cases(50, seed=3)
    assert [case.task for case in cases] != [case.task for case in create_cases(50, seed=4)]
    for case in cases:
        assert len(case.expressions) in (2, 3)
        assert all(isinstance(value, int) for value in case.values)  # divisions are exact
        assert [evaluate(expression) for expression in case.expressions] == list(case.values)
        assert all(expression in case.task for expression in case.expressions)


def solver(*, repeat: bool = False, answer_with_values: bool = True) -> FunctionModel:
    """Plans one calculate node per sub-expression it finds in the task (or the first one twice)."""

    def reply(request: ModelRequest) -> str:
        task = request.messages[-1].content
        if is_joiner(request):
            results = re.findall(r"-?\d+", task.split("Results:")[-1]) if "Results:" in task else []
            return finish(", ".join(results) if answer_with_values else "I do not know")
        expressions = re.findall(r"what is ([^,?]+)", task.split("Task:")[-1], flags=re.IGNORECASE)
        if repeat:
            expressions = [expressions[0], expressions[0]]
        return plan(*(node(index, "calculate", expression=text) for index, text in enumerate(expressions, 1)))

    return FunctionModel(reply)


async def test_a_plan_of_every_part_and_an_answer_with_every_value_score_right() -> None:
    report = await run_arithmetic_bench(model=solver(), seed=1, limit=3, levers=["default", "no_repair"])
    for item in report["items"]:
        for row in item["levers"].values():
            assert row["error"] is None, row
            assert (row["plan_right"], row["answer_right"]) == (True, True), row
    assert report["summary"]["default"]["cases"] == 3
    assert "arithmetic" in str(create_arithmetic_table(report).title)


async def test_a_repeated_call_or_an_answer_without_the_values_scores_wrong() -> None:
    repeated = await run_arithmetic_bench(model=solver(repeat=True), seed=1, limit=2)
    assert not any(item["levers"]["default"]["plan_right"] for item in repeated["items"])
    assert all(item["levers"]["default"]["repeated_call"] for item in repeated["items"])
    vague = await run_arithmetic_bench(model=solver(answer_with_values=False), seed=1, limit=2)
    assert not any(item["levers"]["default"]["answer_right"] for item in vague["items"])


async def test_unknown_levers_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown lever"):
        await run_arithmetic_bench(model=solver(), levers=["magic"])
    assert "plans+joiner" in LEVERS
