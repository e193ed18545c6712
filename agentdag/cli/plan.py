"""`agentdag plan` and `agentdag trace show`: a task's DAG without running it, and a run's trace again."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentdag.assembly import open_agent, open_tools
from agentdag.cli.output import EXIT_DONE, EXIT_FAILED, escape, stdout_console, write_text
from agentdag.models.function import FunctionModel
from agentdag.pictures import draw_plan, draw_timeline, ensure_plots_available, plan_to_dot, plan_to_mermaid
from agentdag.plan import Node, dependencies_of, validate_plan
from agentdag.summary import summarize
from agentdag.taskfile import load_task_file
from agentdag.toolsets.registry import ToolRegistry
from agentdag.trace import TraceFileError, read_trace
from agentdag.view import render_summary

__all__ = ["plan_command", "trace_show_command"]


async def plan_command(arguments: argparse.Namespace) -> int:
    """Print or draw the task's DAG: its fixed plan, validated, or the planner's draft."""
    task = load_task_file(arguments.task)
    if arguments.format == "png":
        ensure_plots_available()
    if task.plan is not None:
        nodes = list(task.plan)
        # Validation needs the tools' schemas only: the `llm` tool is described without opening a model.
        placeholder = FunctionModel(lambda _: "", name="not-opened")
        async with open_tools(task, base_dir=arguments.task.parent, model=placeholder) as tools:
            problems = validate_plan(nodes, ToolRegistry(tools))
        if problems:
            raise task.locate(problems)
    else:
        async with open_agent(task, base_dir=arguments.task.parent, run_nodes=False) as agent:
            draft = await agent.draft(task.task)
        nodes, problems = list(draft.nodes), list(draft.problems)
        stderr = Console(stderr=True)
        for note in draft.notes:
            stderr.print(f"[dim]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            valid = f" (a run would start only nodes {', '.join(str(node.id) for node in nodes)})" if nodes else ""
            stderr.print(
                f"[bold red]the planner's plan is invalid after {task.planner.max_repairs} repair(s){valid}:[/]\n"
                + escape(lines),
                soft_wrap=True,
            )
            return EXIT_FAILED  # no chart of a plan that failed: nothing on stdout
    if arguments.format == "png":
        output = arguments.output or Path(f"{arguments.task.stem}-plan.png")
        draw_plan(nodes, output, title=task.task)
        print(output)
    elif arguments.format == "text" and arguments.output is None:
        _print_plan(nodes)
    else:
        text = {
            "json": lambda: json.dumps({"nodes": [node.model_dump(mode="json") for node in nodes]}, indent=2) + "\n",
            "mermaid": lambda: plan_to_mermaid(nodes),
            "dot": lambda: plan_to_dot(nodes),
            "text": lambda: "\n".join(f"{node.id}: {node.tool} {json.dumps(node.arguments)}" for node in nodes) + "\n",
        }[arguments.format]()
        if arguments.output is None:
            sys.stdout.write(text)
        else:
            write_text(arguments.output, text)
    return EXIT_DONE


def _print_plan(nodes: Sequence[Node]) -> None:
    console = stdout_console()
    table = Table(title="plan", show_lines=False)
    for column in ("id", "tool", "arguments", "depends on"):
        table.add_column(column)
    known = {node.id for node in nodes}
    for node in nodes:
        dependencies = ", ".join(str(item) for item in sorted(dependencies_of(node, known))) or "-"
        table.add_row(str(node.id), node.tool, json.dumps(node.arguments, ensure_ascii=False), dependencies)
    console.print(table)


async def trace_show_command(arguments: argparse.Namespace) -> int:
    """Render a trace's summary again (or its result as JSON, or its timeline)."""
    trace = read_trace(arguments.file)
    try:
        summary = summarize(trace.result)
    except ValueError as error:
        raise TraceFileError(f"{arguments.file}: the result line is {error}") from None
    if arguments.timeline is not None:
        try:
            steps = [(str(line["kind"]), float(line["time"])) for line in trace.events if line["type"] == "run"]
        except (KeyError, TypeError, ValueError):
            raise TraceFileError(f"{arguments.file}: a planner/joiner event line lacks its kind or time") from None
        draw_timeline(summary, arguments.timeline, title=str(trace.header.get("task", "")), steps=steps)
    if arguments.json:
        print(json.dumps({key: value for key, value in trace.result.items() if key != "type"}, ensure_ascii=False))
        return EXIT_DONE if summary.status == "done" else EXIT_FAILED
    console = stdout_console()
    header = trace.header
    console.print(
        f"[bold]{escape(str(header.get('task', '')))}[/]\n"
        f"[dim]{escape(str(header.get('task_file', '')))} · started {header.get('started_at', '?')} · "
        f"{len(trace.events)} events · tools: {escape(', '.join(map(str, header.get('tools', []))))}[/]",
        soft_wrap=True,
    )
    console.print(render_summary(summary, width=console.width), soft_wrap=True)
    if arguments.timeline is not None:
        console.print(f"[bold]timeline:[/] {escape(str(arguments.timeline))}", highlight=False)
    return EXIT_DONE if summary.status == "done" else EXIT_FAILED
