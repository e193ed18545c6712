"""The `agentdag` command line: run and plan task files, serve the embedded model, run benchmarks.

Exit codes: 0 the task is done, 1 the task failed, 2 bad input (task file, plan, options), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from agentdag.agent import Agent
from agentdag.backends.base import Backend, LocalBackend
from agentdag.errors import AgentdagError, ModelError, PlanError, TaskFileError
from agentdag.events import Event, RunEventSink
from agentdag.models.base import Model
from agentdag.models.config import ModelConfig, open_model
from agentdag.models.embedded import serve_forever
from agentdag.models.function import FunctionModel
from agentdag.models.metered import MeteredModel
from agentdag.pictures import draw_plan, draw_timeline, ensure_plots_available, plan_to_dot, plan_to_mermaid
from agentdag.plan import Node, dependencies_of, validate_plan
from agentdag.result import RunResult
from agentdag.store import RunStore, RunStoreError
from agentdag.summary import RunSummary, summarize
from agentdag.taskfile import (
    MODEL_TOOL,
    RayBackendConfig,
    TaskFile,
    load_task_file,
    load_task_tools,
    parse_task_file,
    resolve_servers,
    select_allowed_tools,
)
from agentdag.telemetry import OtelRecorder, otel_enabled
from agentdag.toolsets.base import Tool
from agentdag.toolsets.cache import ToolCache, cache_tools, default_cache_path
from agentdag.toolsets.registry import ToolRegistry
from agentdag.trace import Redactor, TraceFileError, TraceWriter, read_trace, result_to_json
from agentdag.view import RunView, render_answer, render_summary, shorten

__all__ = ["main"]

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
Command = Callable[[argparse.Namespace], Awaitable[int]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = _create_parser()
    arguments = parser.parse_args(argv)
    console = Console(stderr=True)
    command: Callable[[argparse.Namespace], Awaitable[int]] = arguments.command
    try:
        return anyio.run(command, arguments)
    except (TaskFileError, PlanError) as error:
        console.print(f"[bold red]agentdag: bad input:[/] {_escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except ModelError as error:
        console.print(
            f"[bold red]agentdag: model backend failed:[/] {_escape(str(error))}", highlight=False, soft_wrap=True
        )
        return EXIT_FAILED
    except AgentdagError as error:
        console.print(f"[bold red]agentdag: error:[/] {_escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]agentdag: interrupted[/]")
        return EXIT_INTERRUPTED


def _escape(text: str) -> str:
    # Every message printed through here is also cleared of API keys (see agentdag.trace.Redactor).
    return str(Redactor.from_environment().redact(text)).replace("[", r"\[")


def _create_parser() -> argparse.ArgumentParser:
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
    run.set_defaults(command=_run_command)

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
    plan.set_defaults(command=_plan_command)

    trace = commands.add_parser("trace", help="read run traces")
    traces = trace.add_subparsers(required=True, metavar="ACTION")
    show = traces.add_parser("show", help="render a trace's summary again")
    show.add_argument("file", type=Path, help="a trace written by `agentdag run` (JSONL)")
    show.add_argument("--json", action="store_true", help="print the trace's result as one JSON object")
    show.add_argument("--timeline", type=Path, default=None, metavar="PNG", help="save a Gantt chart of the nodes")
    show.set_defaults(command=_trace_show_command)

    serve = commands.add_parser("serve", help="serve the embedded model so that several runs share it")
    serve.add_argument("--slots", type=int, default=4, help="requests decoded in parallel (default 4)")
    serve.add_argument("--ctx-per-slot", type=int, default=4096, help="context window of each slot")
    serve.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    serve.set_defaults(command=_serve_command)

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benches = bench.add_subparsers(required=True, metavar="BENCHMARK")
    executor = benches.add_parser("executor", help="executor: wall time vs critical path, per-node overhead")
    executor.add_argument("--json", action="store_true", help="print one JSON object")
    executor.add_argument("--nodes", type=_positive, default=1000, help="nodes of the sleeping DAG")
    executor.add_argument("--noop-nodes", type=_positive, default=10_000, help="nodes of the no-op DAG")
    executor.add_argument("--seed", type=int, default=0, help="random seed of the first run's DAGs")
    executor.add_argument("--runs", type=_positive, default=3, help="runs (seeds seed, seed+1, ...); medians reported")
    executor.add_argument("--backend", choices=["local", "ray"], default="local", help="where the nodes run")
    executor.add_argument("--address", default=None, help="a running Ray cluster, HOST:PORT (with --backend ray)")
    executor_options = ("nodes", "noop_nodes", "seed", "runs", "backend", "address")
    executor.set_defaults(
        command=_bench("executor", "run_executor_bench", executor_options, _figures_table("executor"))
    )
    durability = benches.add_parser("durability", help="cost of saved run state, gain of resume and of the tool cache")
    durability.add_argument("--json", action="store_true", help="print one JSON object")
    durability.add_argument("--nodes", type=_positive, default=2000, help="no-op nodes timed with and without state")
    durability.add_argument("--sleep-ms", type=float, default=20.0, help="node time of the resume and cache runs")
    durability.add_argument("--runs", type=_positive, default=3, help="runs of the state measurement; medians reported")
    durability.set_defaults(
        command=_bench(
            "durability", "run_durability_bench", ("nodes", "sleep_ms", "runs"), _figures_table("durability")
        )
    )
    backend = benches.add_parser("backend", help="embedded model: tokens/s for 1 and for 4 concurrent requests")
    backend.add_argument("--json", action="store_true", help="print one JSON object")
    backend.add_argument("--max-tokens", type=_positive, default=128, help="completion tokens per request")
    backend.add_argument("--concurrency", type=_positive, default=4, help="concurrent requests")
    backend.set_defaults(
        command=_bench("backend", "run_backend_bench", ("max_tokens", "concurrency"), _figures_table("backend"))
    )
    search = benches.add_parser("search", help="multi-hop search: the DAG agent against the sequential ReAct agent")
    search.add_argument("--dataset", type=Path, default=None, help="a JSONL file of ../shared/data/search/")
    search.add_argument("--agent", choices=["dag", "react"], default="dag", help="the agent to measure")
    search.add_argument("--model", default="oracle", help="oracle, local (the embedded model) or a server URL")
    search.add_argument("--limit", type=_positive, default=None, help="run only the first N cases")
    search.add_argument("--latency-ms", type=float, default=200.0, help="mean simulated latency of a search")
    search.add_argument("--seed", type=int, default=0, help="seed of the latency jitter")
    search.add_argument("--case-timeout-s", type=float, default=120.0, help="wall-time limit of one case")
    search.add_argument("--planner-style", choices=["json", "llmcompiler"], default="json", help="for real models")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search_options = ("dataset", "agent", "model", "limit", "latency_ms", "seed", "case_timeout_s", "planner_style")
    search.set_defaults(command=_bench("search", "run_search_bench", search_options, _search_table))
    swe = benches.add_parser("swe", help="code fixes in a workspace MCP server, judged by the tests")
    swe.add_argument("--dataset", type=Path, default=None, help="a JSONL file of ../shared/data/swe/")
    swe.add_argument("--agent", choices=["dag", "react"], default="dag", help="the agent to measure")
    swe.add_argument(
        "--model",
        default="oracle",
        help="oracle, noop or tamper (scripted controls; a list such as tamper,oracle gives them to the candidates "
        "in turn), local (the embedded model) or a server URL",
    )
    swe.add_argument("--limit", type=_positive, default=None, help="run only the first N cases")
    swe.add_argument(
        "--candidates", type=_positive, default=1, help="parallel attempts per case; one is selected without the judge"
    )
    swe.add_argument(
        "--case-timeout-s", type=float, default=300.0, help="wall-time limit of one case's attempts (judging follows)"
    )
    swe.add_argument("--json", action="store_true", help="print one JSON object")
    swe_options = ("dataset", "agent", "model", "limit", "candidates", "case_timeout_s")
    swe.set_defaults(command=_bench("swe", "run_swe_bench", swe_options, _swe_table))
    scaling = benches.add_parser("scaling", help="test-time scaling strategies side by side: accuracy against tokens")
    scaling.add_argument("--strategy", type=_names, default=[], dest="strategies", help="NAME[,NAME...] (default: all)")
    scaling.add_argument("--dataset", default=None, help="a JSONL of ../shared/data/math/, or 'arithmetic'")
    scaling.add_argument("--model", default="simulated", help="simulated, local (the embedded model) or a server URL")
    scaling.add_argument("--limit", type=_positive, default=20, help="questions")
    scaling.add_argument("--seed", type=int, default=0, help="seed of the samples and the simulated model")
    scaling.add_argument("--plot", type=Path, default=None, help="write the accuracy-tokens Pareto plot (PNG) here")
    scaling.add_argument("--json", action="store_true", help="print one JSON object")
    scaling_options = ("strategies", "dataset", "model", "limit", "seed", "plot")
    scaling.set_defaults(command=_bench("scaling", "run_scaling_bench", scaling_options, _scaling_table))
    load = benches.add_parser("load", help="many concurrent runs through the SDK: endings, latency, resources")
    load.add_argument("--model", default="scripted", help="scripted, local (the embedded model) or a server URL")
    load.add_argument("--runs", type=_positive, default=200, help="runs started at once on one Agent")
    load.add_argument("--max-tokens", type=_positive, default=64, help="real models: cap of every reply")
    load.add_argument("--deadline-s", type=float, default=1800.0, help="runs not ended by then count as deadlocked")
    load.add_argument("--settle-s", type=float, default=10.5, help="wait for idle worker threads to retire (0: no)")
    load.add_argument("--model-timeout-s", type=float, default=600.0, help="real models: deadline of one call")
    load.add_argument("--json", action="store_true", help="print one JSON object")
    load_options = ("model", "runs", "max_tokens", "deadline_s", "settle_s", "model_timeout_s")
    load.set_defaults(command=_bench("load", "run_load_bench", load_options, _load_table))
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# -- run and plan ----------------------------------------------------------------------------------


async def _run_command(arguments: argparse.Namespace) -> int:
    if arguments.timeline is not None:
        ensure_plots_available()  # before the run and its folder, not after it
    opened = _open_run(arguments)
    task, task_file, run_dir, store = opened.task, opened.task_file, opened.run_dir, opened.store
    try:
        return await _run_task(arguments, task, task_file, run_dir, store)
    finally:
        if store is not None:
            store.close()


@dataclass(frozen=True, slots=True)
class _OpenedRun:
    task: TaskFile
    task_file: Path
    run_dir: Path
    store: RunStore | None


def _open_run(arguments: argparse.Namespace) -> _OpenedRun:
    """The task and the run directory: a new one, or the one `--resume` names with the task saved in it."""
    if arguments.resume is not None:
        if arguments.task is not None:
            raise TaskFileError("give a task file or --resume RUN_DIR, not both (a resumed run uses its saved task)")
        if arguments.no_state or arguments.run_dir is not None:
            raise TaskFileError("--resume continues the run in RUN_DIR; --run-dir and --no-state do not apply")
        store = RunStore.open(arguments.resume)
        try:
            meta = store.load().meta
            if "task_file" not in meta or "task_file_text" not in meta:
                raise RunStoreError(f"{arguments.resume}: the run was not started from a task file")
            task_file = Path(meta["task_file"])
            task = parse_task_file(meta["task_file_text"], source=str(task_file))
        except BaseException:
            store.close()
            raise
        return _OpenedRun(_with_cassette(task, task_file, arguments), task_file, arguments.resume, store)
    if arguments.task is None:
        raise TaskFileError("give a task file to run, or --resume RUN_DIR")
    task = _with_cassette(load_task_file(arguments.task), arguments.task, arguments)
    run_dir = arguments.run_dir or _default_run_dir(arguments.task)
    if arguments.no_state:
        return _OpenedRun(task, arguments.task, run_dir, None)
    meta = {"task_file": str(arguments.task.resolve()), "task_file_text": arguments.task.read_text("utf-8")}
    return _OpenedRun(task, arguments.task, run_dir, RunStore.create(run_dir, task=task.task, meta=meta))


def _with_cassette(task: TaskFile, task_file: Path, arguments: argparse.Namespace) -> TaskFile:
    """The task with its cassette paths taken from the task file's folder, and `--record`/`--replay` applied."""
    model = task.model
    update = {
        "record": arguments.record or (model.record and task_file.parent / model.record),
        "replay": arguments.replay or (model.replay and task_file.parent / model.replay),
    }
    if arguments.record is not None or arguments.replay is not None:
        update = {"record": arguments.record, "replay": arguments.replay}
    return task.model_copy(update={"model": model.model_copy(update=update)})


async def _run_task(
    arguments: argparse.Namespace, task: TaskFile, task_file: Path, run_dir: Path, store: RunStore | None
) -> int:
    redactor = Redactor.from_environment(task.model.api_key.get_secret_value() if task.model.api_key else None)
    console = _stdout_console()
    view = RunView(title=task.task, redact=redactor.redact)
    sinks: list[RunEventSink] = [view]

    def fan_out(event: Event) -> None:
        for sink in sinks:
            sink(event)

    trace: TraceWriter | None = None
    otel: OtelRecorder | None = None
    result: RunResult | None = None
    bad_input = False
    try:
        async with _open_agent(
            task, task_file.parent, need_model=task.plan is None, on_event=[fan_out], view=view
        ) as agent:
            if not arguments.no_trace:
                path = arguments.trace or _free_path(run_dir / "trace.jsonl")
                trace = TraceWriter.create(
                    path, task=task.task, task_file=task_file, tools=agent.tools.keys(), redactor=redactor
                )
                sinks.append(trace)
            if otel_enabled(arguments.otel):
                otel = OtelRecorder(model=agent.planner_model.name if agent.planner_model else None)
                sinks.append(otel)
            live = console.is_terminal and not (arguments.quiet or arguments.json)
            with Live(view, console=console, refresh_per_second=8, transient=True) if live else nullcontext():
                if task.plan is not None:
                    result = await agent.run_plan(task.plan, answer=task.answer, store=store)
                else:
                    result = await agent.run(task.task, store=store)
    except AgentdagError:
        bad_input = True  # a task that cannot start would fail the same way on resume: no hint
        raise
    finally:
        if store is not None and not bad_input and _worth_resuming(result):
            Console(stderr=True).print(
                f"[yellow]resume with:[/] agentdag run --resume {_escape(str(run_dir))}", highlight=False
            )
        if otel is not None:
            otel.finish(result, error=None if result is not None else "the run did not finish")
        if trace is not None and result is None:
            trace.close()  # no result line: `trace show` reports the trace as truncated
    assert result is not None  # the block above either set it or raised
    result_json: dict[str, Any] = redactor.redact(result_to_json(result, node_tokens=view.node_tokens))
    if trace is not None:
        trace.finish(result_json)
    summary = summarize(result_json)
    if arguments.timeline is not None:
        draw_timeline(summary, arguments.timeline, title=task.task, steps=view.steps)
    _print_result(
        summary,
        result_json,
        json_output=arguments.json,
        quiet=arguments.quiet,
        trace_path=None if trace is None else str(trace.path),
        timeline=arguments.timeline,
    )
    return EXIT_DONE if result.status == "done" else EXIT_FAILED


def _worth_resuming(result: RunResult | None) -> bool:
    """Whether resuming could end differently: the run was interrupted, or nodes did not get to run."""
    if result is None:
        return True
    if result.status == "done":
        return False
    unfinished = any(
        record.status in ("queued", "running", "cancelled", "skipped") for record in result.records.values()
    )
    return unfinished or result.error is None or result.error.startswith(("model call failed", "time budget"))


def _stdout_console() -> Console:
    """The console for results: as wide as the terminal, or 120 columns when writing to a pipe or file."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=120)
    return console


def _default_run_dir(task_file: Path) -> Path:
    """`runs/<timestamp>-<task file stem>/` under the current folder, never one that exists."""
    return _free_path(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{task_file.stem}")


def _free_path(path: Path) -> Path:
    """`path`, or `path` with `-2`, `-3`, ... before its suffix: the first that does not exist."""
    candidate, counter = path, 1
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
    return candidate


async def _trace_show_command(arguments: argparse.Namespace) -> int:
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
    console = _stdout_console()
    header = trace.header
    console.print(
        f"[bold]{_escape(str(header.get('task', '')))}[/]\n"
        f"[dim]{_escape(str(header.get('task_file', '')))} · started {header.get('started_at', '?')} · "
        f"{len(trace.events)} events · tools: {_escape(', '.join(map(str, header.get('tools', []))))}[/]",
        soft_wrap=True,
    )
    console.print(render_summary(summary, width=console.width), soft_wrap=True)
    if arguments.timeline is not None:
        console.print(f"[bold]timeline:[/] {_escape(str(arguments.timeline))}", highlight=False)
    return EXIT_DONE if summary.status == "done" else EXIT_FAILED


async def _plan_command(arguments: argparse.Namespace) -> int:
    task = load_task_file(arguments.task)
    if arguments.format == "png":
        ensure_plots_available()
    if task.plan is not None:
        nodes = list(task.plan)
        # Validation needs the tools' schemas only: the `llm` tool is described without opening a model.
        placeholder = FunctionModel(lambda _: "", name="not-opened")
        async with _open_tools(task, arguments.task.parent, placeholder) as tools:
            problems = validate_plan(nodes, ToolRegistry(tools))
        if problems:
            raise PlanError(list(problems))
    else:
        async with _open_agent(task, arguments.task.parent, need_model=True, need_backend=False) as agent:
            nodes, problems = await agent.draft(task.task)
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            Console(stderr=True).print(
                f"[bold red]the planner's plan is invalid after {task.planner.max_repairs} repair(s):[/]\n"
                + _escape(lines),
                soft_wrap=True,
            )
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
            _write_text(arguments.output, text)
    return EXIT_FAILED if problems else EXIT_DONE


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise AgentdagError(f"{path}: cannot write: {error.strerror}") from None


@asynccontextmanager
async def _open_agent(
    task: TaskFile,
    base_dir: Path,
    *,
    need_model: bool,
    need_backend: bool = True,
    on_event: Sequence[RunEventSink] = (),
    view: RunView | None = None,
) -> AsyncIterator[Agent]:
    """An agent for a task file, with its model open when the planner or the `llm` tool needs it.

    Without `need_backend` (a draft runs no node) the agent runs nodes in this process.

    With a `view`, the model is metered so that the view counts tokens as they are spent: the planner's
    and joiner's through one wrapper, the `llm` tool's (per node) through another.
    """
    async with AsyncExitStack() as stack:
        model: Model | None = None
        tool_model: Model | None = None
        if need_model or MODEL_TOOL in task.tools:
            model = tool_model = await stack.enter_async_context(open_model(task.model))
            if view is not None:
                model, tool_model = (
                    MeteredModel(model, view.count_model_usage),
                    MeteredModel(model, view.count_tool_usage),
                )
        backend = await stack.enter_async_context(_open_backend(task)) if need_backend else LocalBackend()
        scaling = task.scaling
        tools = await stack.enter_async_context(
            _open_tools(task, base_dir, None if tool_model is None else scaling.wrap("tools", tool_model))
        )
        yield Agent(
            tools=tools,
            model=model,
            planner_model=None if model is None else scaling.wrap("planner", model),
            joiner_model=None if model is None else scaling.wrap("joiner", model),
            planner=task.planner,
            max_concurrency=task.limits.max_concurrency,
            tool_concurrency=task.limits.tool_concurrency,
            timeout_s=task.limits.timeout_s,
            on_event=on_event,
            backend=backend,
        )


@asynccontextmanager
async def _open_backend(task: TaskFile) -> AsyncIterator[Backend]:
    """The backend the task file asks for, open (a Ray cluster is connected to or started here)."""
    if isinstance(task.backend, RayBackendConfig):
        from agentdag.backends.ray import RayBackend, RayConfig  # imports Ray only when a task asks for it

        config = RayConfig.model_validate(task.backend.model_dump(exclude={"kind"}))
        async with RayBackend(config) as backend:
            yield backend
    else:
        yield LocalBackend()


@asynccontextmanager
async def _open_tools(task: TaskFile, base_dir: Path, model: Model | None) -> AsyncIterator[list[Tool]]:
    """The task's Python tools and the tools of its MCP servers (started here, stopped on exit), as allowed."""
    tools = load_task_tools(task, base_dir=base_dir, model=model)
    async with AsyncExitStack() as stack:
        if task.mcp_servers:
            from agentdag.toolsets.mcp import open_mcp_toolsets  # the MCP SDK is slow to import; only when used

            toolsets = await stack.enter_async_context(open_mcp_toolsets(resolve_servers(task, base_dir=base_dir)))
            tools = [*tools, *(tool for toolset in toolsets for tool in toolset.tools)]
        tools = select_allowed_tools(task, tools)
        if task.cache.tools:
            cache = stack.enter_context(ToolCache(base_dir / (task.cache.path or default_cache_path())))
            tools = cache_tools(tools, cache, task.cache.tools)
        yield tools


def _print_plan(nodes: Sequence[Node]) -> None:
    console = Console()
    table = Table(title="plan", show_lines=False)
    for column in ("id", "tool", "arguments", "depends on"):
        table.add_column(column)
    known = {node.id for node in nodes}
    for node in nodes:
        dependencies = ", ".join(str(item) for item in sorted(dependencies_of(node, known))) or "-"
        table.add_row(str(node.id), node.tool, json.dumps(node.arguments, ensure_ascii=False), dependencies)
    console.print(table)


def _print_result(
    summary: RunSummary,
    result_json: dict[str, Any],
    *,
    json_output: bool,
    quiet: bool,
    trace_path: str | None,
    timeline: Path | None,
) -> None:
    if json_output:
        print(json.dumps(result_json, ensure_ascii=False))
        return
    console = _stdout_console()
    if not quiet:
        console.print(render_summary(summary, trace_path=trace_path, width=console.width), soft_wrap=True)
        if timeline is not None:
            console.print(f"[bold]timeline:[/] {_escape(str(timeline))}", highlight=False)
    elif summary.status == "done":
        console.print(render_answer(summary.answer), markup=False, highlight=False, soft_wrap=True)
    if summary.status != "done":
        Console(stderr=True).print(f"[bold red]task failed:[/] {_escape(summary.error or 'no answer')}", soft_wrap=True)


# -- serve and bench -------------------------------------------------------------------------------


async def _serve_command(arguments: argparse.Namespace) -> int:
    config = ModelConfig(slots=arguments.slots, ctx_per_slot=arguments.ctx_per_slot, threads=arguments.threads)
    console = Console(stderr=True)

    def announce(url: str) -> None:
        console.print(f"agentdag: serving the embedded model at {url} (Ctrl-C stops it)")

    await serve_forever(config, announce)
    return EXIT_DONE


BenchRenderer = Callable[[dict[str, Any]], RenderableType]


def _bench(module: str, function: str, options: Sequence[str], render: BenchRenderer) -> Command:
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
            Console().print(render(report))
        return EXIT_DONE

    return command


def _figures_table(title: str) -> BenchRenderer:
    def render(figures: dict[str, Any]) -> Table:
        table = Table(title=title)
        table.add_column("figure")
        table.add_column("value")
        for key, value in figures.items():
            table.add_row(key, str(value))
        return table

    return render


def _search_table(report: dict[str, Any]) -> RenderableType:
    table: RenderableType = importlib.import_module("agentdag.benchmarks.search").create_search_table(report)
    return table


def _scaling_table(report: dict[str, Any]) -> RenderableType:
    table: RenderableType = importlib.import_module("agentdag.benchmarks.scaling").create_scaling_table(report)
    return table


def _load_table(report: dict[str, Any]) -> RenderableType:
    table: RenderableType = importlib.import_module("agentdag.benchmarks.load").create_load_table(report)
    return table


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _swe_table(report: dict[str, Any]) -> Table:
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


if __name__ == "__main__":
    sys.exit(main())
