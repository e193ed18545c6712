"""`agentdag run`: run a task file (or resume a run) with a live view, a trace and saved state."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.live import Live

from agentdag.assembly import open_agent
from agentdag.cli.output import EXIT_DONE, EXIT_FAILED, escape, stdout_console
from agentdag.errors import AgentdagError, TaskFileError
from agentdag.events import Event, RunEventSink
from agentdag.pictures import draw_timeline, ensure_plots_available
from agentdag.plan import validate_plan
from agentdag.result import RunResult
from agentdag.store import RunStore, RunStoreError
from agentdag.summary import RunSummary, summarize
from agentdag.taskfile import TaskFile, load_task_file, parse_task_file
from agentdag.telemetry import OtelRecorder, otel_enabled
from agentdag.trace import Redactor, TraceEnding, TraceWriter, result_to_json
from agentdag.usage import RunMeter
from agentdag.view import RunView, render_answer, render_summary

__all__ = ["free_path", "run_command"]


async def run_command(arguments: argparse.Namespace) -> int:
    """Run (or resume) a task file; the exit code says how it ended."""
    if arguments.timeline is not None:
        ensure_plots_available()  # before the run and its folder, not after it
    opened = _open_run(arguments)
    with ExitStack() as closing:
        if opened.store is not None:
            closing.callback(opened.store.close)
        return await _run_task(arguments, opened, closing)


@dataclass(frozen=True, slots=True)
class _OpenedRun:
    """A run about to start: its task, and its folder's store when resuming (a new run's is made later)."""

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
    return _OpenedRun(task, arguments.task, arguments.run_dir or _default_run_dir(arguments.task), None)


def _create_store(arguments: argparse.Namespace, opened: _OpenedRun) -> RunStore | None:
    """A new run's store, made once the run can start, so that a run that never started leaves no folder."""
    if arguments.no_state:
        return None
    task_file = opened.task_file
    meta = {"task_file": str(task_file.resolve()), "task_file_text": task_file.read_text("utf-8")}
    return RunStore.create(opened.run_dir, task=opened.task.task, meta=meta)


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


async def _run_task(arguments: argparse.Namespace, opened: _OpenedRun, closing: ExitStack) -> int:
    task, task_file, run_dir = opened.task, opened.task_file, opened.run_dir
    redactor = Redactor.from_environment(task.model.api_key.get_secret_value() if task.model.api_key else None)
    console = stdout_console()
    view = RunView(title=task.task, redact=redactor.redact)
    sinks: list[RunEventSink] = [view]

    def fan_out(event: Event) -> None:
        for sink in sinks:
            sink(event)

    store = opened.store
    trace: TraceWriter | None = None
    otel: OtelRecorder | None = None
    result: RunResult | None = None
    ending: TraceEnding = TraceEnding("crashed", None)
    try:
        async with open_agent(task, base_dir=task_file.parent, on_event=[fan_out]) as agent:
            if task.plan is not None and (problems := validate_plan(task.plan, agent.tools)):
                raise task.locate(problems)  # rejected before anything is made for the run
            if store is None and (store := _create_store(arguments, opened)) is not None:
                closing.callback(store.close)
            if not arguments.no_trace:
                path = arguments.trace or free_path(run_dir / "trace.jsonl")
                trace = TraceWriter.create(
                    path, task=task.task, task_file=task_file, tools=agent.tools.keys(), redactor=redactor
                )
                sinks.append(trace)
            if otel_enabled(arguments.otel):
                otel = OtelRecorder(model=agent.planner_model.name if agent.planner_model else None)
                sinks.append(otel)
            live = console.is_terminal and not (arguments.quiet or arguments.json)
            with Live(view, console=console, refresh_per_second=8, transient=True) if live else nullcontext():
                meter = RunMeter(listeners=(view.count_usage,))  # the view counts tokens as they are spent
                if task.plan is not None:
                    result = await agent.run_plan(task.plan, answer=task.answer, store=store, meter=meter)
                else:
                    result = await agent.run(task.task, store=store, meter=meter)
    except AgentdagError as error:
        ending = TraceEnding("error", str(error))
        raise
    except (KeyboardInterrupt, anyio.get_cancelled_exc_class()):
        ending = TraceEnding("interrupted", None)
        raise
    except BaseException as error:
        ending = TraceEnding("crashed", f"{type(error).__name__}: {error}")
        raise
    finally:
        # A task that cannot start would fail the same way on resume: no hint then.
        if store is not None and ending.reason != "error" and _worth_resuming(result):
            Console(stderr=True).print(
                f"[yellow]resume with:[/] agentdag run --resume {escape(str(run_dir))}", highlight=False
            )
        if otel is not None:
            otel.finish(result, error=None if result is not None else "the run did not finish")
        if trace is not None and result is None:
            trace.end(ending)  # `trace show` says why the run ended without a result
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
    if result.status != "done":
        return EXIT_FAILED
    return _strict_exit_code(result) if arguments.strict else EXIT_DONE


def _strict_exit_code(result: RunResult) -> int:
    """With `--strict`, a done run exits 1 too when any node did not finish done (failed, skipped, cancelled)."""
    unsuccessful = [record for record in result.records.values() if record.status != "done"]
    if not unsuccessful:
        return EXIT_DONE
    shown = ", ".join(f"{record.id} {record.status}" for record in unsuccessful[:10])
    more = f" and {len(unsuccessful) - 10} more" if len(unsuccessful) > 10 else ""
    Console(stderr=True).print(
        f"[bold red]strict:[/] {len(unsuccessful)} node(s) did not succeed ({escape(shown)}{more})", highlight=False
    )
    return EXIT_FAILED


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


def _default_run_dir(task_file: Path) -> Path:
    """`runs/<timestamp>-<task file stem>/` under the current folder, never one that exists."""
    return free_path(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{task_file.stem}")


def free_path(path: Path) -> Path:
    """`path`, or `path` with `-2`, `-3`, ... before its suffix: the first that does not exist."""
    candidate, counter = path, 1
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
    return candidate


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
    console = stdout_console()
    if not quiet:
        console.print(render_summary(summary, trace_path=trace_path, width=console.width), soft_wrap=True)
        if timeline is not None:
            console.print(f"[bold]timeline:[/] {escape(str(timeline))}", highlight=False)
    elif summary.status == "done":
        console.print(render_answer(summary.answer), markup=False, highlight=False, soft_wrap=True)
    if summary.status != "done":
        Console(stderr=True).print(f"[bold red]task failed:[/] {escape(summary.error or 'no answer')}", soft_wrap=True)
