"""SWE benchmark: fix code in a workspace through the workspace MCP server, judged by the tests.

Run it with `agentdag bench swe`. Each case of a data folder's `swe/` (QuixBugs, Exercism Python,
HumanEvalFix; see that folder's README) is written to a temporary folder; the agent reads, edits and runs
tests there through `python -m agentdag.tools.workspace` (a real MCP server over stdio); afterwards the
harness runs the case's test command itself to decide whether the case is resolved.

* `--model oracle` applies the gold fix through the same tools (it must resolve 100%);
* `--model noop` reads and runs the tests but changes nothing (it must resolve 0%);
* `--model local` is the embedded model, a URL any OpenAI-compatible server.

With `--candidates N`, N attempts run at once, each in its own workspace, and the first whose tests pass
is selected (CodeMonkeys' parallel candidate edits, selected by tests).
"""

from __future__ import annotations

import json
import shlex
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from agentdag.tools.workspace import run_command

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

__all__ = ["SweCase", "load_swe_cases", "run_swe_bench"]

AgentKind = Literal["dag", "react"]
DEFAULT_DATASET = "quixbugs.jsonl"
_SCRIPTED = ("oracle", "noop")
_MEMORY_BYTES = 2048 * 2**20  # the workspace server's default limit, for the harness's own test run too


@dataclass(frozen=True, slots=True, kw_only=True)
class SweCase:
    """One code task: starting files, instructions, the test command, and a gold fix."""

    id: str
    instructions: str
    files: Mapping[str, str]
    test_command: str
    timeout_s: float
    gold: Mapping[str, str]


def load_swe_cases(path: Path, *, limit: int | None = None) -> list[SweCase]:
    """Read the cases of a JSON Lines file (the first `limit`)."""
    cases: list[SweCase] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if limit is not None and len(cases) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                cases.append(
                    SweCase(
                        id=str(record["id"]),
                        instructions=str(record["instructions"]),
                        files=dict(record["files"]),
                        test_command=str(record["test_command"]),
                        timeout_s=float(record.get("timeout_s", 60)),
                        gold=dict(record["gold"]),
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a SWE case ({error})") from None
    return cases


def oracle_plan(case: SweCase, *, apply_fix: bool) -> str:
    """The gold plan in LLMCompiler's format: read in parallel, write the gold files, run the tests."""
    lines = ['1. list_files(".")']
    reads: dict[str, int] = {}
    for path in sorted(set(case.gold) | _test_files(case)):
        reads[path] = len(lines) + 1
        lines.append(f"{len(lines) + 1}. read_file({path!r})")
    writes: list[int] = []
    if apply_fix:
        for path, content in sorted(case.gold.items()):
            context = [f"${reads[path]}"] if path in reads else []
            writes.append(len(lines) + 1)
            lines.append(f"{len(lines) + 1}. write_file({path!r}, {content!r}, {context!r})")
    after = [f"${index}" for index in (writes or list(reads.values()))]
    lines.append(f"{len(lines) + 1}. run_tests({case.test_command!r}, {after!r})")
    lines.append(f"{len(lines) + 1}. join()<END_OF_PLAN>")
    return "\n".join(lines)


def _test_files(case: SweCase) -> set[str]:
    words = {word for word in shlex.split(case.test_command) if word in case.files}
    return words or {path for path in case.files if "test" in Path(path).name}


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
        model: "oracle", "noop", "local" (the embedded model) or the URL of an OpenAI-compatible server.
        limit: run only the first `limit` cases.
        candidates: attempts per case, run at once in separate workspaces; the first that passes wins.
        case_timeout_s: wall-time limit of one case (all its candidates).
        timing: the scripted models' simulated generation time.
        on_case: called with each item as soon as its case finishes.

    Raises:
        ValueError: `model` is none of the accepted values, or the data set is malformed.
        FileNotFoundError: the data set is missing (the message names the fetch command).
    """
    model_config = None if model in _SCRIPTED else ModelConfig.from_name(model, others=_SCRIPTED)
    path = resolve_dataset(dataset, kind="swe", default=DEFAULT_DATASET, data_dir=data_dir)
    cases = load_swe_cases(path, limit=limit)
    items: list[dict[str, Any]] = []
    async with _open_shared_model(model_config) as shared:
        for case in cases:
            item = await _run_case(
                case, agent=agent, model=model, shared=shared, candidates=candidates,
                timeout_s=case_timeout_s, timing=timing or GenerationTiming(),
            )  # fmt: skip
            items.append(item)
            if on_case is not None:
                on_case(item)
    config = {"dataset": path.name, "agent": agent, "model": model, "limit": limit, "candidates": candidates}
    return {"config": config, "summary": _summarize(items), "items": items}


@asynccontextmanager
async def _open_shared_model(config: ModelConfig | None) -> AsyncIterator[Model | None]:
    """The model every case shares, or None for the scripted models (one per case)."""
    if config is None:
        yield None
        return
    async with open_model(config) as opened:
        yield opened


@dataclass(slots=True)
class _Attempt:
    index: int
    result: RunResult | None = None
    error: str | None = None
    resolved: bool = False
    test_runs: int = 0


async def _run_case(
    case: SweCase,
    *,
    agent: AgentKind,
    model: str,
    shared: Model | None,
    candidates: int,
    timeout_s: float,
    timing: GenerationTiming,
) -> dict[str, Any]:
    started = time.perf_counter()
    attempts = [_Attempt(index) for index in range(candidates)]
    with anyio.move_on_after(timeout_s) as deadline:
        async with anyio.create_task_group() as group:
            for attempt in attempts:
                group.start_soon(_run_attempt, case, attempt, agent, model, shared, timing, candidates)
    selected = next((attempt for attempt in attempts if attempt.resolved), None)
    usage = [attempt.result.total_usage for attempt in attempts if attempt.result is not None]
    errors = [attempt.error for attempt in attempts if attempt.error]
    if deadline.cancelled_caught:
        errors.append(f"case timed out after {timeout_s:g} s")
    return {
        "id": case.id,
        "resolved": selected is not None,
        "selected": selected.index if selected is not None else None,
        "wall_s": round(time.perf_counter() - started, 3),
        "model_calls": sum(item.calls for item in usage),
        "prompt_tokens": sum(item.prompt_tokens for item in usage),
        "completion_tokens": sum(item.completion_tokens for item in usage),
        "test_runs": sum(attempt.test_runs for attempt in attempts),
        "tool_calls": sum(len(attempt.result.records) for attempt in attempts if attempt.result is not None),
        "error": "; ".join(errors) or None,
    }


async def _run_attempt(
    case: SweCase,
    attempt: _Attempt,
    agent: AgentKind,
    model: str,
    shared: Model | None,
    timing: GenerationTiming,
    candidates: int,
) -> None:
    with tempfile.TemporaryDirectory(prefix="agentdag-swe-") as folder:
        root = Path(folder)
        for relative, content in case.files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        server = McpServerConfig(
            name="workspace",
            command=[
                "python", "-m", "agentdag.tools.workspace", "--root", str(root),
                "--test-command", case.test_command, "--timeout-s", f"{case.timeout_s:g}",
            ],
            timeout_s=case.timeout_s + 30,
            max_restarts=1,
        )  # fmt: skip
        try:
            async with McpToolset(server) as toolset:
                attempt.result = await _run_agent(case, toolset, agent, model, shared, timing, candidates)
        except Exception as error:  # one attempt's failure is recorded on its row, never ends the run
            attempt.error = f"{type(error).__name__}: {error}"
        if attempt.result is not None:
            attempt.test_runs = sum(record.node.tool == "run_tests" for record in attempt.result.records.values())
        verdict = await run_command(
            shlex.split(case.test_command), cwd=root, timeout_s=case.timeout_s, memory_bytes=_MEMORY_BYTES
        )
        attempt.resolved = verdict.passed


async def _run_agent(
    case: SweCase,
    toolset: McpToolset,
    agent: AgentKind,
    model: str,
    shared: Model | None,
    timing: GenerationTiming,
    candidates: int,
) -> RunResult:
    task = (
        f"{case.instructions}\n\nThe workspace holds: {', '.join(sorted(case.files))}.\n"
        f"Fix the code with write_file or patch_file, then check it with run_tests."
    )
    tools = toolset.tools
    if shared is None:  # a scripted model: the gold fix (oracle) or no change at all (noop)
        plan = oracle_plan(case, apply_fix=model == "oracle")
        answer = "applied the fix; the tests pass" if model == "oracle" else "left the code unchanged"
        if agent == "react":
            calls = parse_plan_calls(plan, {tool.name: tool for tool in tools})
            return await ReActAgent(tools=tools, model=OracleReActModel(calls=calls, answer=answer, timing=timing)).run(
                task
            )
        scripted = OracleDagModel(plan_text=plan, answer=answer, timing=timing)
        return await Agent(tools=tools, model=scripted, planner=PlannerConfig(style="llmcompiler")).run(task)
    temperature = 0.0 if candidates == 1 else 0.7  # separate candidates must be able to differ
    if agent == "react":
        return await ReActAgent(tools=tools, model=shared, max_steps=12, temperature=temperature).run(task)
    planner = PlannerConfig(max_tokens=2048, max_repairs=1, max_replans=2, temperature=temperature)
    return await Agent(tools=tools, model=shared, planner=planner).run(task)


def _summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    cases = len(items)
    resolved = sum(bool(item["resolved"]) for item in items)
    return {
        "cases": cases,
        "resolved": resolved,
        "resolved_rate": round(resolved / cases, 4) if cases else 0.0,
        "wall_s": round(sum(item["wall_s"] for item in items), 3),
        "model_calls": sum(item["model_calls"] for item in items),
        "prompt_tokens": sum(item["prompt_tokens"] for item in items),
        "completion_tokens": sum(item["completion_tokens"] for item in items),
        "test_runs": sum(item["test_runs"] for item in items),
        "tool_calls": sum(item["tool_calls"] for item in items),
        "errors": sum(item["error"] is not None for item in items),
    }
