"""SWE benchmark: fix code in a workspace through the workspace MCP server, judged on a tree it cannot game.

Run it with `agentdag bench swe`. Each case of a data folder's `swe/` (QuixBugs, Exercism Python,
HumanEvalFix; see that folder's README) is written to a temporary folder per candidate; the agent reads,
edits and runs tests there through `python -m agentdag.tools.workspace` (a real MCP server over stdio).
When its run ends, its files are read once, and the judge (`swe_judge`) runs the case's test command in a
fresh tree: the case's files, the agent's source files copied in, the case's tests and test data restored.

* `--model oracle` applies the gold fix through the same tools (it must resolve 100%);
* `--model noop` reads and runs the tests but changes nothing (it must resolve 0%);
* `--model tamper` rewrites the tests and adds a conftest.py hook so that its own test run passes without
  fixing anything (it must resolve 0%: the judge restores what it changed);
* `--model local` is the embedded model, a URL any OpenAI-compatible server; a comma-separated list of
  the scripted controls (`tamper,oracle`) gives the candidates those controls in turn.

With `--candidates N`, N attempts run at once, each in its own workspace. One is selected without the judge
(`swe_select`: its own test runs, the checks the model wrote, whether it left the case's tests alone,
agreement between candidates, diff size); `resolved` is the judge's verdict on that one, `pass_at_n`
whether the judge passes any of them (reported, never used to select).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from agentdag.agent import Agent
from agentdag.config import PlannerConfig
from agentdag.models import ModelConfig, open_model
from agentdag.models.base import Model
from agentdag.react import ReActAgent
from agentdag.result import RunResult
from agentdag.toolsets.mcp import McpToolset
from agentdag.toolsets.mcp_config import McpServerConfig

from .data_paths import resolve_dataset
from .oracle import GenerationTiming, OracleDagModel, OracleReActModel, parse_plan_calls
from .swe_data import DEFAULT_DATASET, SweCase, load_swe_cases
from .swe_judge import TEST_FILE_PATTERNS, check_test_runners, judge_snapshot, named_paths, snapshot_files, write_files
from .swe_select import CandidateEvidence, agreement, gather_evidence, select_candidate

__all__ = [
    "CONTROLS",
    "TAMPERED_TEST",
    "TAMPER_HOOK",
    "Control",
    "SweCase",
    "control_plan",
    "load_swe_cases",
    "run_swe_bench",
]

AgentKind = Literal["dag", "react"]
Control = Literal["oracle", "noop", "tamper"]
CONTROLS: tuple[Control, ...] = ("oracle", "noop", "tamper")

# What the tamper control writes: a test module that checks nothing, and a conftest.py hook that makes
# every collected test pass without running it (appended to the case's own conftest.py, if any).
TAMPERED_TEST = '"""Rewritten: checks nothing."""\n\n\ndef test_nothing():\n    pass\n'
TAMPER_HOOK = (
    "\n\ndef pytest_collection_modifyitems(items):  # added: every test passes without running\n"
    "    for item in items:\n"
    "        item.runtest = lambda: None\n"
)
_ANSWERS: Mapping[Control, str] = {
    "oracle": "applied the fix; the tests pass",
    "noop": "left the code unchanged",
    "tamper": "rewrote the tests; they pass",
}


def control_plan(case: SweCase, control: Control) -> str:
    """A scripted control's plan in LLMCompiler's format: read in parallel, write, then run the tests.

    `oracle` writes the gold files, `noop` writes nothing, `tamper` rewrites the test files the command
    names to `TAMPERED_TEST` and appends `TAMPER_HOOK` to the root conftest.py.
    """
    tests = _test_modules(case)
    if control == "tamper":
        writes = dict.fromkeys(tests, TAMPERED_TEST)
        writes["conftest.py"] = case.files.get("conftest.py", "") + TAMPER_HOOK
        reads = {path for path in writes if path in case.files}
    else:
        writes = dict(case.gold) if control == "oracle" else {}
        reads = set(case.gold) | tests
    lines = ['1. list_files(".")']
    read_at: dict[str, int] = {}
    for path in sorted(reads):
        read_at[path] = len(lines) + 1
        lines.append(f"{len(lines) + 1}. read_file({path!r})")
    written: list[int] = []
    for path, content in sorted(writes.items()):
        context = [f"${read_at[path]}"] if path in read_at else []
        written.append(len(lines) + 1)
        lines.append(f"{len(lines) + 1}. write_file({path!r}, {content!r}, {context!r})")
    after = [f"${index}" for index in (written or list(read_at.values()))]
    lines.append(f"{len(lines) + 1}. run_tests({case.test_command!r}, {after!r})")
    lines.append(f"{len(lines) + 1}. join()<END_OF_PLAN>")
    return "\n".join(lines)


def _test_modules(case: SweCase) -> set[str]:
    """The case's test modules: the Python files its test command names, else those named like tests."""
    named = named_paths(case.test_command)
    modules = {
        path
        for path in case.files
        if path.endswith(".py")
        and Path(path).name != "conftest.py"
        and any(path == name or path.startswith(f"{name}/") for name in named)
    }
    return modules or {
        path
        for path in case.files
        if Path(path).name != "conftest.py" and any(Path(path).match(pattern) for pattern in TEST_FILE_PATTERNS)
    }


async def run_swe_bench(
    *,
    dataset: Path | str | None = None,
    data_dir: Path | None = None,
    agent: AgentKind = "dag",
    model: str = "oracle",
    limit: int | None = None,
    candidates: int = 1,
    case_timeout_s: float = 300.0,
    timing: GenerationTiming | None = None,
    on_case: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the SWE benchmark and return `{"config", "summary", "items"}` (JSON-able).

    Args:
        dataset: a JSON Lines file, or the name of a SWE data set (`humanevalfix`, `polyglot_python.jsonl`)
            found in the data folders (default: QuixBugs).
        data_dir: the data folder to look in alone (default: `$AGENTDAG_DATA`, else `../shared/data`, then
            the fetch cache; see `data_paths`).
        agent: "dag" (planner, parallel executor, joiner) or "react" (the sequential baseline).
        model: a scripted control ("oracle", "noop", "tamper"), a comma-separated list of them (one per
            candidate, in turn), "local" (the embedded model) or the URL of an OpenAI-compatible server.
        limit: run only the first `limit` cases.
        candidates: attempts per case, run at once in separate workspaces; one is selected without the judge.
        case_timeout_s: wall-time limit of the attempts of one case (the judge runs after it).
        timing: the scripted models' simulated generation time.
        on_case: called with each item as soon as its case finishes.

    Raises:
        ValueError: `model` or `candidates` is none of the accepted values, or the data set is malformed.
        FileNotFoundError: the data set (the message names the fetch command), or the test runner a case's test
            command starts, is missing.
    """
    controls = _controls(model)
    model_config = None if controls else ModelConfig.from_name(model, others=CONTROLS)
    if candidates < 1:
        raise ValueError(f"candidates must be at least 1, not {candidates}")
    path = resolve_dataset(dataset, kind="swe", default=DEFAULT_DATASET, data_dir=data_dir)
    cases = load_swe_cases(path, limit=limit)
    await check_test_runners(cases)
    items: list[dict[str, Any]] = []
    async with _open_shared_model(model_config) as shared:
        for case in cases:
            plans = [controls[index % len(controls)] if controls else None for index in range(candidates)]
            item = await _run_case(
                case, agent=agent, plans=plans, model=model, shared=shared, timeout_s=case_timeout_s,
                timing=timing or GenerationTiming(),
            )  # fmt: skip
            items.append(item)
            if on_case is not None:
                on_case(item)
    config = {"dataset": path.name, "agent": agent, "model": model, "limit": limit, "candidates": candidates}
    return {"config": config, "summary": _summarize(items), "items": items}


def _controls(model: str) -> list[Control] | None:
    """The scripted controls `model` names, one per candidate in turn; None for a real model."""
    names = [name.strip() for name in model.split(",")]
    controls = [control for name in names for control in CONTROLS if control == name]
    if len(controls) == len(names):
        return controls
    if len(names) > 1:
        raise ValueError(f"a list in --model may name only the scripted controls {', '.join(CONTROLS)}, not {model!r}")
    return None


@asynccontextmanager
async def _open_shared_model(config: ModelConfig | None) -> AsyncIterator[Model | None]:
    """The model every case shares, or None for the scripted controls (one per attempt)."""
    if config is None:
        yield None
        return
    async with open_model(config) as opened:
        yield opened


@dataclass(slots=True)
class _Attempt:
    index: int
    control: Control | None  # None: the shared real model
    root: Path
    result: RunResult | None = None
    error: str | None = None
    snapshot: dict[str, bytes] | None = None


async def _run_case(
    case: SweCase,
    *,
    agent: AgentKind,
    plans: list[Control | None],
    model: str,
    shared: Model | None,
    timeout_s: float,
    timing: GenerationTiming,
) -> dict[str, Any]:
    started = time.perf_counter()
    with ExitStack() as folders:
        attempts = [
            _Attempt(index, control, Path(folders.enter_context(tempfile.TemporaryDirectory(prefix="agentdag-swe-"))))
            for index, control in enumerate(plans)
        ]
        with anyio.move_on_after(timeout_s) as deadline:
            async with anyio.create_task_group() as group:
                for attempt in attempts:
                    group.start_soon(_run_attempt, case, attempt, agent, shared, timing, len(plans))
        for attempt in attempts:  # every server has exited: nothing changes the files any more
            try:
                attempt.snapshot = snapshot_files(attempt.root)
            except (OSError, ValueError) as error:
                attempt.error = "; ".join(filter(None, [attempt.error, f"unreadable workspace: {error}"]))
    evidence = [gather_evidence(case, item.index, item.result, item.snapshot) for item in attempts]
    selected = select_candidate(evidence)  # before any judging: the judge's verdicts cannot sway it
    verdicts = [
        attempt.snapshot is not None and bool((await judge_snapshot(case, attempt.snapshot)).passed)
        for attempt in attempts
    ]
    votes = agreement(evidence)
    rows = [
        _candidate_row(attempt, proof, votes[attempt.index], verdict, model)
        for attempt, proof, verdict in zip(attempts, evidence, verdicts, strict=True)
    ]
    usage = [attempt.result.total_usage for attempt in attempts if attempt.result is not None]
    errors = [f"candidate {attempt.index}: {attempt.error}" for attempt in attempts if attempt.error]
    if deadline.cancelled_caught:
        errors.append(f"case timed out after {timeout_s:g} s")
    return {
        "id": case.id,
        "resolved": verdicts[selected],
        "pass_at_n": any(verdicts),
        "selected": selected,
        "candidates_passing": sum(verdicts),
        "wall_s": round(time.perf_counter() - started, 3),
        "model_calls": sum(item.calls for item in usage),
        "prompt_tokens": sum(item.prompt_tokens for item in usage),
        "completion_tokens": sum(item.completion_tokens for item in usage),
        "test_runs": sum(_test_runs(attempt.result) for attempt in attempts),
        "tool_calls": sum(len(attempt.result.records) for attempt in attempts if attempt.result is not None),
        "error": "; ".join(errors) or None,
        "candidates": rows,
    }


def _candidate_row(
    attempt: _Attempt, proof: CandidateEvidence, votes: int, judge_passed: bool, model: str
) -> dict[str, Any]:
    """One candidate as the report shows it: what the selector saw, and the judge's verdict."""
    return {
        "index": attempt.index,
        "model": attempt.control or model,
        "own_tests": proof.own_tests,
        "checks_passed": proof.checks_passed,
        "tests_changed": list(proof.tests_changed),
        "agreement": votes,
        "lines_changed": proof.lines_changed,
        "judge_passed": judge_passed,
        "error": attempt.error,
    }


def _test_runs(result: RunResult | None) -> int:
    return 0 if result is None else sum(record.node.tool == "run_tests" for record in result.records.values())


async def _run_attempt(
    case: SweCase,
    attempt: _Attempt,
    agent: AgentKind,
    shared: Model | None,
    timing: GenerationTiming,
    candidates: int,
) -> None:
    server = McpServerConfig(
        name="workspace",
        command=[
            "python", "-m", "agentdag.tools.workspace", "--root", str(attempt.root),
            "--test-command", case.test_command, "--timeout-s", f"{case.timeout_s:g}",
        ],
        timeout_s=case.timeout_s + 30,
        max_restarts=1,
    )  # fmt: skip
    try:
        write_files(attempt.root, case.files)
        async with McpToolset(server) as toolset:
            attempt.result = await _run_agent(case, toolset, agent, attempt.control, shared, timing, candidates)
    except Exception as error:  # one attempt's failure is recorded on its row, never ends the run
        attempt.error = f"{type(error).__name__}: {error}"


async def _run_agent(
    case: SweCase,
    toolset: McpToolset,
    agent: AgentKind,
    control: Control | None,
    shared: Model | None,
    timing: GenerationTiming,
    candidates: int,
) -> RunResult:
    task = (
        f"{case.instructions}\n\nThe workspace holds: {', '.join(sorted(case.files))}.\n"
        f"Fix the code with write_file or patch_file, then check it with run_tests."
    )
    tools = toolset.tools
    if control is not None:
        plan, answer = control_plan(case, control), _ANSWERS[control]
        if agent == "react":
            calls = parse_plan_calls(plan, {tool.name: tool for tool in tools})
            model = OracleReActModel(calls=calls, answer=answer, timing=timing, name=control)
            return await ReActAgent(tools=tools, model=model).run(task)
        scripted = OracleDagModel(plan_text=plan, answer=answer, timing=timing, name=control)
        return await Agent(tools=tools, model=scripted, planner=PlannerConfig(style="llmcompiler")).run(task)
    if shared is None:
        raise ValueError("a real model runs only with the shared model open")
    temperature = 0.0 if candidates == 1 else 0.7  # separate candidates must be able to differ
    if agent == "react":
        return await ReActAgent(tools=tools, model=shared, max_steps=12, temperature=temperature).run(task)
    planner = PlannerConfig(max_tokens=2048, max_repairs=1, max_replans=2, temperature=temperature)
    return await Agent(tools=tools, model=shared, planner=planner).run(task)


def _summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    cases = len(items)
    resolved = sum(bool(item["resolved"]) for item in items)
    pass_at_n = sum(bool(item["pass_at_n"]) for item in items)
    return {
        "cases": cases,
        "resolved": resolved,
        "resolved_rate": round(resolved / cases, 4) if cases else 0.0,
        "pass_at_n": pass_at_n,
        "pass_at_n_rate": round(pass_at_n / cases, 4) if cases else 0.0,
        "wall_s": round(sum(item["wall_s"] for item in items), 3),
        "model_calls": sum(item["model_calls"] for item in items),
        "prompt_tokens": sum(item["prompt_tokens"] for item in items),
        "completion_tokens": sum(item["completion_tokens"] for item in items),
        "test_runs": sum(item["test_runs"] for item in items),
        "tool_calls": sum(item["tool_calls"] for item in items),
        "errors": sum(item["error"] is not None for item in items),
    }
