"""Search benchmark: the DAG agent against the sequential ReAct baseline on multi-hop questions.

`agentdag bench search --dataset FILE --agent dag|react --model oracle|local|URL --limit N --latency-ms MS`
runs `run_search_bench`. Cases run one after another, so their wall times compare; each case has its own
timeout, and a failing case is recorded in its row without stopping the run.

With `--model oracle` both agents replay the gold plan (see `benchmarks/oracle.py`) against the same
offline tools (see `benchmarks/search_data.py`), so they make identical tool calls and the difference in
wall time, model calls and tokens is orchestration alone. `local` is the embedded model; a URL is any
OpenAI-compatible server.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from agentdag.tools.search_index import SearchIndex, SimulatedLatency
from rich.table import Table

from agentdag.agent import Agent
from agentdag.config import PlannerConfig
from agentdag.models import Model, ModelConfig, open_model
from agentdag.react import ReActAgent
from agentdag.result import RunResult
from agentdag.usage import RunMeter

from .data_paths import resolve_dataset
from .oracle import GenerationTiming, OracleDagModel, OracleReActModel, parse_plan_calls
from .search_data import (
    DEFAULT_DATASET,
    SearchCase,
    create_tools,
    load_cases,
    score_answer,
)

__all__ = ["AgentKind", "create_search_table", "run_search_bench"]

AgentKind = Literal["dag", "react"]
_ANSWER_CHARS = 200


async def run_search_bench(
    *,
    dataset: Path | str | None = None,
    data_dir: Path | None = None,
    agent: AgentKind = "dag",
    model: str = "oracle",
    limit: int | None = None,
    latency_ms: float = 200.0,
    seed: int = 0,
    case_timeout_s: float = 120.0,
    max_steps: int = 10,
    planner_style: Literal["json", "llmcompiler"] = "json",
    timing: GenerationTiming | None = None,
    on_case: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the search benchmark and return `{"config", "summary", "items"}` (JSON-able).

    Args:
        dataset: a JSON Lines file, or the name of a search data set (`hotpotqa`, `hotpotqa_distractor.jsonl`)
            found in the data folders (default: FanOutQA's dev split).
        data_dir: the data folder to look in alone (default: `$AGENTDAG_DATA`, else `../shared/data`, then
            the fetch cache; see `data_paths`).
        agent: "dag" (planner, parallel executor, joiner) or "react" (the sequential baseline).
        model: "oracle" (scripted replay of the gold plan), "local" (the embedded model), or the URL of an
            OpenAI-compatible server.
        limit: run only the first `limit` cases (None: all).
        latency_ms: mean simulated latency of one tool call; each call's delay is jittered by `seed`.
        seed: seeds the latency jitter.
        case_timeout_s: wall-time limit of one case; a case past it is recorded as an error.
        max_steps: the ReAct agent's step budget (the oracle gets at least one step per gold call plus one).
        planner_style: the DAG planner's plan format for real models (the oracle always uses
            "llmcompiler", the format of the gold plans).
        timing: the oracle's simulated generation time (default: like a hosted API).
        on_case: called with each item as soon as its case finishes (for progress output).

    Raises:
        ValueError: `model` is none of oracle, local or an http(s) URL.
        FileNotFoundError: the data set is missing (the message names the fetch command).
    """
    path = resolve_dataset(dataset, kind="search", default=DEFAULT_DATASET, data_dir=data_dir)
    cases = load_cases(path, limit=limit)
    latency = SimulatedLatency(mean_ms=latency_ms, seed=seed)
    corpus = SearchIndex.from_hotpotqa(path) if any(case.kind == "hotpotqa" for case in cases) else None
    settings = _Settings(
        agent=agent,
        latency=latency,
        corpus=corpus,
        timing=timing or GenerationTiming(),
        max_steps=max_steps,
        planner_style="llmcompiler" if model == "oracle" else planner_style,
    )
    items: list[dict[str, Any]] = []
    try:
        async with _open_shared_model(model) as shared:
            for case in cases:
                item = await _run_case(case, settings, shared, timeout_s=case_timeout_s)
                items.append(item)
                if on_case is not None:
                    on_case(item)
    finally:
        if corpus is not None:
            corpus.close()
    config: dict[str, Any] = {
        "dataset": path.name,
        "agent": agent,
        "model": model,
        "limit": limit,
        "latency_ms": latency_ms,
        "seed": seed,
        "case_timeout_s": case_timeout_s,
    }
    if model == "oracle":
        config["generation"] = {
            "first_token_s": settings.timing.first_token_s,
            "token_s": settings.timing.token_s,
            "prompt_token_s": settings.timing.prompt_token_s,
        }
    return {"config": config, "summary": _summarize(items), "items": items}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    agent: AgentKind
    latency: SimulatedLatency
    corpus: SearchIndex | None
    timing: GenerationTiming
    max_steps: int
    planner_style: Literal["json", "llmcompiler"]


@asynccontextmanager
async def _open_shared_model(model: str) -> AsyncIterator[Model | None]:
    """The model every case shares, or None for the oracle (which is scripted per case)."""
    if model == "oracle":
        yield None
        return
    async with open_model(ModelConfig.from_name(model, others=["oracle"])) as opened:
        yield opened


async def _run_case(case: SearchCase, settings: _Settings, shared: Model | None, *, timeout_s: float) -> dict[str, Any]:
    item: dict[str, Any] = {"id": case.id}
    started = time.perf_counter()
    result: RunResult | None = None
    error: str | None = None
    model = shared if shared is not None else _oracle(case, settings)
    meter = RunMeter()  # kept by the case even when a timeout cuts the run off before its result
    max_steps = settings.max_steps
    if isinstance(model, OracleReActModel):
        # The ReAct oracle needs one step per gold call plus the answer, however long the gold plan is.
        max_steps = max(max_steps, len(model.calls) + 1)
    try:
        with anyio.move_on_after(timeout_s) as scope:
            result = await _run_agent(case, settings, model, meter, max_steps=max_steps)
        if scope.cancelled_caught:
            error = f"timed out after {timeout_s:g} s"
    except Exception as failure:  # one case's failure is data in its row, never the end of the run
        error = f"{type(failure).__name__}: {failure}"
    wall_s = time.perf_counter() - started
    usage = meter.total
    score = score_answer(result.answer, case.answer) if result is not None and result.status == "done" else 0.0
    item.update(
        correct=score == 1.0,
        score=round(score, 4),
        wall_s=round(wall_s, 4),
        tool_calls=_tool_calls(result),
        model_calls=usage.calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        tokens=usage.total_tokens,
        replans=len(result.replans) if result is not None else 0,
        status=result.status if result is not None else "error",
        answer=_short(result.answer) if result is not None else None,
        error=error if error is not None else (result.error if result is not None else None),
    )
    return item


async def _run_agent(
    case: SearchCase, settings: _Settings, model: Model, meter: RunMeter, *, max_steps: int
) -> RunResult:
    tools = create_tools(case, settings.latency, corpus=settings.corpus)
    if settings.agent == "react":
        react = ReActAgent(tools=tools, model=model, max_steps=max_steps)
        return await react.run(case.question, meter=meter)
    # Replies are capped like the ReAct agent's (512 tokens) and one repair is allowed, so a slow local
    # model spends its case budget on work rather than on long invalid plans.
    planner = PlannerConfig(style=settings.planner_style, max_tokens=512, max_repairs=1)
    dag = Agent(tools=tools, model=model, planner=planner)
    return await dag.run(case.question, meter=meter)


def _oracle(case: SearchCase, settings: _Settings) -> OracleDagModel | OracleReActModel:
    if settings.agent == "dag":
        return OracleDagModel(plan_text=case.plan_text, answer=case.answer, timing=settings.timing)
    # The oracle's calls are parsed against the case's tools, exactly as the DAG planner parses the plan.
    tools = {item.name: item for item in create_tools(case, settings.latency, corpus=settings.corpus)}
    return OracleReActModel(calls=parse_plan_calls(case.plan_text, tools), answer=case.answer, timing=settings.timing)


def _tool_calls(result: RunResult | None) -> int:
    if result is None:
        return 0
    return sum(record.started_at is not None for record in result.records.values())


def _short(answer: object) -> object:
    text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, default=str)
    if len(text) <= _ANSWER_CHARS:
        return answer
    return text[:_ANSWER_CHARS] + "…"


def _summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    count = len(items)

    def total(key: str) -> int:
        return sum(int(item[key]) for item in items)

    wall = sum(float(item["wall_s"]) for item in items)
    return {
        "cases": count,
        "accuracy": round(sum(float(item["score"]) for item in items) / count, 4) if count else 0.0,
        "correct": sum(bool(item["correct"]) for item in items),
        "errors": sum(item["error"] is not None for item in items),
        "wall_s": round(wall, 3),
        "mean_wall_s": round(wall / count, 3) if count else 0.0,
        "model_calls": total("model_calls"),
        "prompt_tokens": total("prompt_tokens"),
        "completion_tokens": total("completion_tokens"),
        "tool_calls": total("tool_calls"),
        "replans": total("replans"),
    }


def create_search_table(report: Mapping[str, Any]) -> Table:
    """A rich table of a `run_search_bench` report: one row per case and a totals row."""
    config, summary = report["config"], report["summary"]
    title = (
        f"search bench: {config['dataset']}, agent {config['agent']}, model {config['model']}, "
        f"tool latency {config['latency_ms']:g} ms"
    )
    table = Table(title=title, show_footer=True)
    columns = ("id", "score", "wall s", "tools", "model calls", "tokens", "replans", "error")
    footers = (
        f"{summary['cases']} cases",
        f"{summary['accuracy']:.3f}",
        f"{summary['wall_s']:.2f}",
        str(summary["tool_calls"]),
        str(summary["model_calls"]),
        str(summary["prompt_tokens"] + summary["completion_tokens"]),
        str(summary["replans"]),
        str(summary["errors"]),
    )
    for column, footer in zip(columns, footers, strict=True):
        justify: Literal["left", "right"] = "left" if column in ("id", "error") else "right"
        table.add_column(column, footer=footer, justify=justify)
    for item in report["items"]:
        table.add_row(
            str(item["id"]),
            f"{item['score']:.2f}",
            f"{item['wall_s']:.2f}",
            str(item["tool_calls"]),
            str(item["model_calls"]),
            str(item["tokens"]),
            str(item["replans"]),
            (item["error"] or "")[:60],
        )
    return table
