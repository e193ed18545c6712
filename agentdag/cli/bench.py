"""`agentdag bench`, `agentdag data fetch` and `agentdag serve`: the benchmark harness, its data, the model server."""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table

from agentdag.cli.output import EXIT_DONE, stdout_console
from agentdag.errors import AgentdagError
from agentdag.models.config import ModelConfig
from agentdag.models.embedded import serve_forever
from agentdag.view import shorten

__all__ = [
    "Command",
    "bench_command",
    "data_fetch_command",
    "figures_table",
    "harness_view",
    "serve_command",
    "swe_table",
]

Command = Callable[[argparse.Namespace], Awaitable[int]]
BenchRenderer = Callable[[dict[str, Any]], RenderableType]


async def serve_command(arguments: argparse.Namespace) -> int:
    """Serve the embedded model until interrupted."""
    config = ModelConfig(slots=arguments.slots, ctx_per_slot=arguments.ctx_per_slot, threads=arguments.threads)
    console = Console(stderr=True)

    def announce(url: str) -> None:
        console.print(f"agentdag: serving the embedded model at {url} (Ctrl-C stops it)")

    await serve_forever(config, announce)
    return EXIT_DONE


async def data_fetch_command(arguments: argparse.Namespace) -> int:
    """Fetch, verify and convert benchmark data sets (or list them)."""
    fetching = importlib.import_module("agentdag.benchmarks.data_fetch")
    dest = importlib.import_module("agentdag.benchmarks.data_paths").fetch_destination(arguments.data_dir)
    console = stdout_console()
    if arguments.list:
        console.print(fetching.create_data_table(dest))
        return EXIT_DONE
    try:
        code: int = await fetching.run_fetch_command(
            names=arguments.names,
            dest=dest,
            force=arguments.force,
            verify=not arguments.no_verify,
            timeout_s=arguments.timeout_s,
            print_line=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
        )
    except ValueError as error:
        raise AgentdagError(str(error)) from None
    return code


def bench_command(module: str, function: str, options: Sequence[str], render: BenchRenderer) -> Command:
    """A `bench` subcommand: run `agentdag.benchmarks.<module>.<function>` with the named options."""

    async def command(arguments: argparse.Namespace) -> int:
        runner = _load_bench(module, function)
        try:
            report = await runner(**{name: getattr(arguments, name) for name in options})
        except (ValueError, FileNotFoundError) as error:
            raise AgentdagError(str(error)) from None
        if arguments.json:
            print(json.dumps(report))
        else:
            stdout_console().print(render(report))
        return EXIT_DONE

    return command


def figures_table(title: str) -> BenchRenderer:
    """A renderer of flat figures as a two-column table."""

    def render(figures: dict[str, Any]) -> Table:
        table = Table(title=title)
        table.add_column("figure")
        table.add_column("value")
        for key, value in figures.items():
            table.add_row(key, str(value))
        return table

    return render


def harness_view(module: str, function: str) -> BenchRenderer:
    """A renderer that calls `agentdag.benchmarks.<module>.<function>(report)`, imported when it first renders."""

    def render(report: dict[str, Any]) -> RenderableType:
        view: RenderableType = getattr(importlib.import_module(f"agentdag.benchmarks.{module}"), function)(report)
        return view

    return render


def swe_table(report: dict[str, Any]) -> Table:
    """The SWE benchmark's table: one row per case, the summary as its caption."""
    table = Table(title=f"SWE: {report['config']['dataset']}, {report['config']['agent']} agent")
    columns = ("case", "resolved", "pass@n", "selected", "passing", "wall (s)", "model calls", "test runs", "error")
    for column in columns:
        table.add_column(column)
    fields = ("resolved", "pass_at_n", "selected", "candidates_passing", "wall_s", "model_calls", "test_runs")
    for item in report["items"]:
        table.add_row(item["id"], *(str(item[field]) for field in fields), shorten(item["error"] or "", 60))
    summary = ", ".join(f"{key} {value}" for key, value in report["summary"].items())
    table.caption = summary
    return table


def _load_bench(module: str, function: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Import a benchmark harness from `benchmarks/` (installed as `agentdag.benchmarks`) by name.

    Imported on demand: the harnesses live outside the core package's import graph.
    """
    loaded = importlib.import_module(f"agentdag.benchmarks.{module}")
    runner: Callable[..., Awaitable[dict[str, Any]]] = getattr(loaded, function)
    return runner
