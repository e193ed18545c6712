"""Planner templates: few-shot examples chosen by the tools offered and by likeness to the task."""

from __future__ import annotations

from agentdag.templates import PlannerExample, load_template, select_examples


def test_examples_are_chosen_by_likeness_among_those_whose_tools_are_offered() -> None:
    template = load_template("json").model_copy(
        update={
            "examples": (
                PlannerExample(task="Who wrote Hamlet, and who wrote Faust?", plan="{}", tools=("search",)),
                PlannerExample(task="Add 15 and 27, then double it.", plan="{}", tools=("calculate",)),
                PlannerExample(task="What is (3 + 4) * 5, and what is 60 / 12?", plan="{}", tools=("calculate",)),
                PlannerExample(task="What is 7 * 6 minus 5 * 4?", plan="{}", tools=("calculate",)),
            ),
            "max_examples": 2,
        }
    )
    chosen = select_examples(template, ["calculate"], "What is (12 + 30) * 2, and what is 100 / 4?")
    # Numbers stand for any number: the compound question is most alike, and it comes last, next to the task.
    assert [example.task for example in chosen] == [
        "What is 7 * 6 minus 5 * 4?",
        "What is (3 + 4) * 5, and what is 60 / 12?",
    ]
    assert select_examples(template, [], "anything") == []
    none = template.model_copy(update={"max_examples": 0})
    assert select_examples(none, ["calculate", "search"], "x") == []


def test_every_shipped_example_is_shown_for_some_task_and_names_only_tools_it_declares() -> None:
    for name in ("json", "llmcompiler"):
        template = load_template(name)
        for example in template.examples:
            assert example.tools, example.task
            assert example in select_examples(template, example.tools, example.task)  # most like itself
