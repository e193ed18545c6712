"""The `agentdag` command line: run and plan task files, serve the embedded model, run benchmarks.

Exit codes: 0 the task is done, 1 the task failed (or, with `run --strict`, a node did not succeed), 2 bad input
(task file, plan, options), 130 interrupted (Ctrl-C), 141 the reader of stdout went away (a closed pipe), 143
terminated (SIGTERM).
This package is the only place that calls `anyio.run()`.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
from rich.console import Console

from agentdag.cli.bench import (
    bench_command,
    data_fetch_command,
    figures_table,
    harness_view,
    serve_command,
    swe_table,
)
from agentdag.cli.output import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    escape,
)
from agentdag.cli.plan import plan_command, trace_show_command
from agentdag.cli.run import run_command
from agentdag.errors import AgentdagError, ModelError, PlanError, TaskFileError

__all__ = ["main"]

_DATA_HELP = "the data folder to read (default: $AGENTDAG_DATA, else ../shared/data, then the fetch cache)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = create_parser()
    arguments = parser.parse_args(argv)
    console = Console(stderr=True)
    command: Callable[[argparse.Namespace], Awaitable[int]] = arguments.command
    try:
        code = anyio.run(_run_until_terminated, command, arguments)
        sys.stdout.flush()  # here, so that a reader that went away is a broken pipe below, not at exit
        return code
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except (TaskFileError, PlanError) as error:
        for line in str(error).splitlines():  # one line per problem, each naming its place
            console.print(f"[bold red]agentdag: bad input:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except ModelError as error:
        console.print(f"[bold red]agentdag: model failed:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except AgentdagError as error:
        console.print(f"[bold red]agentdag: error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]agentdag: interrupted[/]")
        return EXIT_INTERRUPTED
    except _Terminated:
        console.print("[yellow]agentdag: terminated[/]")
        return EXIT_TERMINATED


class _Terminated(Exception):
    """The process received SIGTERM; the command was cancelled and cleaned up as for Ctrl-C."""


async def _run_until_terminated(
    command: Callable[[argparse.Namespace], Awaitable[int]], arguments: argparse.Namespace
) -> int:
    """Run the command; SIGTERM cancels it, so that its cleanup runs (servers stopped, state saved, hint shown)."""
    code = EXIT_INTERRUPTED
    terminated = False
    failure: BaseException | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal terminated
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    terminated = True
                    group.cancel_scope.cancel()
                    return

        group.start_soon(watch)
        try:
            code = await command(arguments)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as error:  # kept out of the task group, which would wrap it in an exception group
            failure = error
        group.cancel_scope.cancel()
    if terminated:
        raise _Terminated
    if failure is not None:
        raise failure
    return code


def _discard_stdout() -> None:
    """Point stdout at the null device: its reader is gone, and Python would report the failed flush at exit."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (a test's capture): nothing will flush to a closed pipe


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentdag", description="Run LLM agents as parallel DAGs of tool calls.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a task file, or resume a run that did not finish")
    run.add_argument("task", type=Path, nargs="?", default=None, help="the task file (YAML)")
    run.add_argument(
        "--resume", type=Path, default=None, metavar="RUN_DIR", help="resume a run: finished nodes are not run again"
    )
    run.add_argument(
        "--run-dir", type=Path, default=None, metavar="DIR", help="the run's folder (default: runs/TIME-TASK/)"
    )
    run.add_argument("--no-state", action="store_true", help="save no run state (the run cannot be resumed)")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object (no live view)")
    run.add_argument("--quiet", action="store_true", help="print only the answer (no live view)")
    run.add_argument(
        "--trace",
        type=Path,
        default=None,
        metavar="PATH",
        help="the JSONL trace (default: in the run dir)",
    )
    run.add_argument("--no-trace", action="store_true", help="write no trace")
    cassette = run.add_mutually_exclusive_group()
    cassette.add_argument("--record", type=Path, default=None, metavar="CASSETTE", help="record every model call")
    cassette.add_argument(
        "--replay", type=Path, default=None, metavar="CASSETTE", help="answer model calls from a recording (offline)"
    )
    run.add_argument("--timeline", type=Path, default=None, metavar="PNG", help="save a Gantt chart of the nodes")
    run.add_argument("--otel", action="store_true", help="record OpenTelemetry spans (also: AGENTDAG_OTEL=1)")
    run.add_argument(
        "--strict", action="store_true", help="exit 1 unless every node succeeded, even when the task got its answer"
    )
    run.set_defaults(command=run_command)

    plan = commands.add_parser(
        "plan", help="print the task's DAG without running it (its fixed plan, or the planner's draft)"
    )
    plan.add_argument("task", type=Path, help="the task file (YAML)")
    plan.add_argument(
        "--format", choices=["text", "json", "mermaid", "dot", "png"], default="text", help="output format"
    )
    plan.add_argument(
        "--output", type=Path, default=None, metavar="PATH", help="write to a file (png default: TASK-plan.png)"
    )
    plan.set_defaults(command=plan_command)

    trace = commands.add_parser("trace", help="read run traces")
    traces = trace.add_subparsers(required=True, metavar="ACTION")
    show = traces.add_parser("show", help="render a trace's summary again")
    show.add_argument("file", type=Path, help="a trace written by `agentdag run` (JSONL), or its run folder")
    show.add_argument("--json", action="store_true", help="print the trace's result as one JSON object")
    show.add_argument("--timeline", type=Path, default=None, metavar="PNG", help="save a Gantt chart of the nodes")
    show.set_defaults(command=trace_show_command)

    serve = commands.add_parser("serve", help="serve the embedded model so that several runs share it")
    serve.add_argument("--slots", type=int, default=4, help="requests decoded in parallel (default 4)")
    serve.add_argument("--ctx-per-slot", type=int, default=4096, help="context window of each slot")
    serve.add_argument("--threads", type=positive, default=None, help="CPU threads (default: half the cores)")
    serve.set_defaults(command=serve_command)

    data = commands.add_parser("data", help="benchmark data sets: fetch them from their official sources")
    data_actions = data.add_subparsers(required=True, metavar="ACTION")
    fetch = data_actions.add_parser("fetch", help="download data sets, verify their SHA-256, convert them")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="the data sets to fetch (default: all; see --list)")
    fetch.add_argument(
        "--data",
        type=Path,
        default=None,
        dest="data_dir",
        metavar="DIR",
        help="where to store them (default: $AGENTDAG_DATA, else ~/.cache/agentdag/data)",
    )
    fetch.add_argument("--list", action="store_true", help="list the data sets and their sources; fetch nothing")
    fetch.add_argument("--force", action="store_true", help="fetch again the data sets already there")
    fetch.add_argument(
        "--no-verify", action="store_true", help="accept a download whose SHA-256 is not recorded or does not match"
    )
    fetch.add_argument("--timeout-s", type=float, default=1200.0, help="deadline of each file's download")
    fetch.set_defaults(command=data_fetch_command)

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benches = bench.add_subparsers(required=True, metavar="BENCHMARK")
    executor = benches.add_parser("executor", help="executor: wall time vs critical path, per-node overhead")
    executor.add_argument("--json", action="store_true", help="print one JSON object")
    executor.add_argument("--nodes", type=positive, default=1000, help="nodes of the sleeping DAG")
    executor.add_argument("--noop-nodes", type=positive, default=10_000, help="nodes of the no-op DAG")
    executor.add_argument("--seed", type=int, default=0, help="random seed of the first run's DAGs")
    executor.add_argument("--runs", type=positive, default=3, help="runs (seeds seed, seed+1, ...); medians reported")
    executor.add_argument("--backend", choices=["local", "ray"], default="local", help="where the nodes run")
    executor.add_argument("--address", default=None, help="a running Ray cluster, HOST:PORT (with --backend ray)")
    executor_options = ("nodes", "noop_nodes", "seed", "runs", "backend", "address")
    executor.set_defaults(
        command=bench_command("executor", "run_executor_bench", executor_options, figures_table("executor"))
    )
    durability = benches.add_parser("durability", help="cost of saved run state, gain of resume and of the tool cache")
    durability.add_argument("--json", action="store_true", help="print one JSON object")
    durability.add_argument("--nodes", type=positive, default=2000, help="no-op nodes timed with and without state")
    durability.add_argument("--sleep-ms", type=float, default=20.0, help="node time of the resume and cache runs")
    durability.add_argument("--runs", type=positive, default=3, help="runs of the state measurement; medians reported")
    durability.set_defaults(
        command=bench_command(
            "durability", "run_durability_bench", ("nodes", "sleep_ms", "runs"), figures_table("durability")
        )
    )
    server = benches.add_parser(
        "server", help="embedded server: tokens/s for 1 and for 4 concurrent requests, idle and with a core busy"
    )
    server.add_argument("--json", action="store_true", help="print one JSON object")
    server.add_argument("--max-tokens", type=positive, default=128, help="completion tokens per request")
    server.add_argument("--concurrency", type=positive, default=4, help="concurrent requests")
    server.add_argument("--threads", type=positive, default=None, help="CPU threads (default: the server's)")
    server.add_argument(
        "--no-contended", action="store_false", dest="contended", help="skip the phases with one core busy"
    )
    server_options = ("max_tokens", "concurrency", "threads", "contended")
    server.set_defaults(command=bench_command("server", "run_server_bench", server_options, figures_table("server")))
    search = benches.add_parser("search", help="multi-hop search: the DAG agent against the sequential ReAct agent")
    search.add_argument("--dataset", default=None, help="a JSONL file, or a search data set's name (see data fetch)")
    search.add_argument("--data", type=Path, default=None, dest="data_dir", metavar="DIR", help=_DATA_HELP)
    search.add_argument("--agent", choices=["dag", "react"], default="dag", help="the agent to measure")
    search.add_argument("--model", default="oracle", help="oracle, local (the embedded model) or a server URL")
    search.add_argument("--limit", type=positive, default=None, help="run only the first N cases")
    search.add_argument("--latency-ms", type=float, default=200.0, help="mean simulated latency of a search")
    search.add_argument("--seed", type=int, default=0, help="seed of the latency jitter")
    search.add_argument("--case-timeout-s", type=float, default=120.0, help="wall-time limit of one case")
    search.add_argument("--planner-style", choices=["json", "llmcompiler"], default="json", help="for real models")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search_options = (
        *("dataset", "data_dir", "agent", "model", "limit"),
        *("latency_ms", "seed", "case_timeout_s", "planner_style"),
    )
    search.set_defaults(
        command=bench_command(
            "search", "run_search_bench", search_options, harness_view("search", "create_search_table")
        )
    )
    swe = benches.add_parser("swe", help="code fixes in a workspace MCP server, judged by the tests")
    swe.add_argument("--dataset", default=None, help="a JSONL file, or a SWE data set's name (see data fetch)")
    swe.add_argument("--data", type=Path, default=None, dest="data_dir", metavar="DIR", help=_DATA_HELP)
    swe.add_argument("--agent", choices=["dag", "react"], default="dag", help="the agent to measure")
    swe.add_argument(
        "--model",
        default="oracle",
        help="oracle, noop or tamper (scripted controls; a list such as tamper,oracle gives them to the candidates "
        "in turn), local (the embedded model) or a server URL",
    )
    swe.add_argument("--limit", type=positive, default=None, help="run only the first N cases")
    swe.add_argument(
        "--candidates", type=positive, default=1, help="parallel attempts per case; one is selected without the judge"
    )
    swe.add_argument(
        "--case-timeout-s", type=float, default=300.0, help="wall-time limit of one case's attempts (judging follows)"
    )
    swe.add_argument("--json", action="store_true", help="print one JSON object")
    swe_options = ("dataset", "data_dir", "agent", "model", "limit", "candidates", "case_timeout_s")
    swe.set_defaults(command=bench_command("swe", "run_swe_bench", swe_options, swe_table))
    calls = benches.add_parser("calls", help="function calls: the first plan's calls scored with BFCL's AST rules")
    calls.add_argument(
        "--style", type=names, default=[], dest="styles", help="json,llmcompiler,native,best_of_n (default: all)"
    )
    calls.add_argument(
        "--dataset", default=None, help="a JSONL file or a calls data set's name (default: both BFCL sets)"
    )
    calls.add_argument("--data", type=Path, default=None, dest="data_dir", metavar="DIR", help=_DATA_HELP)
    calls.add_argument(
        "--model", default="oracle", help="oracle or noop (controls), local (the embedded model) or a URL"
    )
    calls.add_argument("--limit", type=positive, default=None, help="only the first N cases of each file")
    calls.add_argument("--case-timeout-s", type=float, default=300.0, help="wall-time limit of one style on one case")
    calls.add_argument("--json", action="store_true", help="print one JSON object")
    calls_options = ("styles", "dataset", "data_dir", "model", "limit", "case_timeout_s")
    calls.set_defaults(
        command=bench_command("calls", "run_calls_bench", calls_options, harness_view("calls", "create_calls_table"))
    )
    arithmetic = benches.add_parser(
        "arithmetic", help="generated compound arithmetic questions: plan and answer accuracy per planning lever"
    )
    arithmetic.add_argument("--model", default="local", help="local (the embedded model) or a server URL")
    arithmetic.add_argument("--seed", type=int, default=1, help="the seed that generates the cases (default 1)")
    arithmetic.add_argument("--limit", type=positive, default=20, help="how many cases (default 20)")
    arithmetic.add_argument(
        "--lever",
        type=names,
        default=["default"],
        dest="levers",
        help="default,plans,joiner,plans+joiner,no_repair,no_grammar (default: default)",
    )
    arithmetic.add_argument("--planner-seed", type=int, default=0, help="planner.seed of every run (default 0)")
    arithmetic.add_argument("--case-timeout-s", type=float, default=300.0, help="wall-time limit of one run")
    arithmetic.add_argument("--json", action="store_true", help="print one JSON object")
    arithmetic_options = ("model", "seed", "limit", "levers", "planner_seed", "case_timeout_s")
    arithmetic_view = harness_view("arithmetic", "create_arithmetic_table")
    arithmetic.set_defaults(
        command=bench_command("arithmetic", "run_arithmetic_bench", arithmetic_options, arithmetic_view)
    )
    scaling = benches.add_parser("scaling", help="test-time scaling strategies side by side: accuracy against tokens")
    scaling.add_argument("--strategy", type=names, default=[], dest="strategies", help="NAME[,NAME...] (default: all)")
    scaling.add_argument("--dataset", default=None, help="a JSONL file, a math data set's name, or 'arithmetic'")
    scaling.add_argument("--data", type=Path, default=None, dest="data_dir", metavar="DIR", help=_DATA_HELP)
    scaling.add_argument("--model", default="simulated", help="simulated, local (the embedded model) or a server URL")
    scaling.add_argument("--limit", type=positive, default=20, help="questions")
    scaling.add_argument("--seed", type=int, default=0, help="seed of the samples and the simulated model")
    scaling.add_argument(
        "--samples", type=positive, default=None, help="override the sample count of best-of-n, prune and SC"
    )
    scaling.add_argument("--plot", type=Path, default=None, help="write the accuracy-tokens Pareto plot (PNG) here")
    scaling.add_argument("--json", action="store_true", help="print one JSON object")
    scaling_options = ("strategies", "dataset", "data_dir", "model", "limit", "seed", "samples", "plot")
    scaling.set_defaults(
        command=bench_command(
            "scaling", "run_scaling_bench", scaling_options, harness_view("scaling", "create_scaling_view")
        )
    )
    load = benches.add_parser("load", help="many concurrent runs through the SDK: endings, latency, resources")
    load.add_argument("--model", default="scripted", help="scripted, local (the embedded model) or a server URL")
    load.add_argument("--runs", type=positive, default=200, help="runs started at once on one Agent")
    load.add_argument("--max-tokens", type=positive, default=64, help="real models: cap of every reply")
    load.add_argument("--deadline-s", type=float, default=1800.0, help="runs not ended by then count as deadlocked")
    load.add_argument("--settle-s", type=float, default=10.5, help="wait for idle worker threads to retire (0: no)")
    load.add_argument("--model-timeout-s", type=float, default=600.0, help="real models: deadline of one call")
    load.add_argument("--json", action="store_true", help="print one JSON object")
    load_options = ("model", "runs", "max_tokens", "deadline_s", "settle_s", "model_timeout_s")
    load.set_defaults(
        command=bench_command("load", "run_load_bench", load_options, harness_view("load", "create_load_table"))
    )
    return parser


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]
