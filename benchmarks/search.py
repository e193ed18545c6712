"""Search benchmark: the DAG agent against the sequential ReAct baseline on multi-hop questions.

`agentdag bench search --dataset FILE --agent dag|react --model oracle|local|URL --limit N --latency-ms MS`
runs `run_search_bench`. Cases run one after another, so their wall times compare; each case has its own
timeout, and a failing case is recorded in its row without stopping the run.

With `--model oracle` both agents are played by scripted models that follow each record's own structure
as a planner could (see `benchmarks/search_oracle.py`): the DAG agent's oracle plans every call it can write
in round 0 and writes each later round from the observations the replan prompt shows; the ReAct oracle makes
the same calls one per step. Each case is also run offline, round by round, against its tools: those are the
calls both agents must execute (`calls_equal`), and the model calls and tool latencies the case needed give
its physical limit (`lower_bound_s`, `efficiency`; see `benchmarks/search_bound.py`). `local` is the
embedded model; a URL is any OpenAI-compatible server.

Tokens of the oracle are estimated as characters ÷ 4; a server's own counts are used where it reports them.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
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
from agentdag.records import NodeRecord
from agentdag.result import RunResult
from agentdag.toolsets import JsonValue
from agentdag.usage import RunMeter

from .data_paths import resolve_dataset
from .oracle import PROMPT_TOKEN_S, GenerationTiming, OracleDagModel, OracleReActModel
from .search_bound import Bound, create_dag_bound, create_react_bound
from .search_data import DEFAULT_DATASET, SearchCase, call_key, create_tools, load_cases
from .search_oracle import TALLIES, OraclePlan, create_script, plan_oracle
from .search_scoring import score_answer

__all__ = ["AgentKind", "create_search_table", "run_search_bench"]

AgentKind = Literal["dag", "react"]
_ANSWER_CHARS = 200
_DIFF_CALLS = 5
TOKEN_COUNT = "estimated as characters ÷ 4 (agentdag.tokens.estimate_tokens)"
PROMPT_TOKEN_SOURCE = (
    "Anthropic, prompt caching announcement (2024-08): Claude 3.5 Sonnet's time to first token is 11.5 s "
    "for a 100,000-token prompt without caching, about 0.1 ms per prompt token"
)


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
        model: "oracle" (scripted models following each record's structure; see `search_oracle`), "local"
            (the embedded model), or the URL of an OpenAI-compatible server.
        limit: run only the first `limit` cases (None: all).
        latency_ms: mean simulated latency of one tool call; each call's delay is jittered by `seed`.
        seed: seeds the latency jitter.
        case_timeout_s: wall-time limit of one case; a case past it is recorded as an error.
        max_steps: the ReAct agent's step budget (the oracle gets at least one step per call plus one, and
            the DAG oracle the replans its rounds need).
        planner_style: the DAG planner's plan format for real models (the oracle always uses
            "llmcompiler", LLMCompiler's numbered format).
        timing: the oracle's simulated generation time (default: like a hosted API, see `GenerationTiming`).
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
            "prompt_token_source": PROMPT_TOKEN_SOURCE if settings.timing.prompt_token_s == PROMPT_TOKEN_S else "given",
        }
    config["tokens"] = TOKEN_COUNT if model == "oracle" else f"as the server reports them, else {TOKEN_COUNT}"
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
    oracle: OracleDagModel | OracleReActModel | None = None
    plan: OraclePlan | None = None
    started = time.perf_counter()
    result: RunResult | None = None
    error: str | None = None
    meter = RunMeter()  # kept by the case even when a timeout cuts the run off before its result
    try:
        with anyio.move_on_after(timeout_s) as scope:
            if shared is None:
                oracle, plan = await _oracle(case, settings)
                started = time.perf_counter()  # the offline run of the oracle is no part of the case's time
            model = shared if shared is not None else oracle
            assert model is not None, "a case runs on the shared model or on its oracle"
            result = await _run_agent(case, settings, model, meter, plan)
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
    item.update(_fairness(settings, oracle, plan, result, wall_s))
    return item


async def _run_agent(
    case: SearchCase, settings: _Settings, model: Model, meter: RunMeter, plan: OraclePlan | None
) -> RunResult:
    tools = create_tools(case, settings.latency, corpus=settings.corpus)
    if settings.agent == "react":
        # The ReAct oracle needs one step per planned call plus the answer, however many calls that is.
        max_steps = max(settings.max_steps, len(plan.calls) + 1) if plan is not None else settings.max_steps
        react = ReActAgent(tools=tools, model=model, max_steps=max_steps)
        return await react.run(case.question, meter=meter)
    # Replies are capped like the ReAct agent's (512 tokens) and one repair is allowed, so a slow local
    # model spends its case budget on work rather than on long invalid plans.
    planner = PlannerConfig(style=settings.planner_style, max_tokens=512, max_repairs=1)
    if plan is not None:
        # The oracle gets the replans its rounds need (a round longer than max_nodes takes two plans).
        needed = sum(math.ceil(len(calls) / planner.max_nodes) for calls in plan.rounds) - 1
        if needed > planner.max_replans:
            planner = planner.model_copy(update={"max_replans": needed})
    dag = Agent(tools=tools, model=model, planner=planner)
    return await dag.run(case.question, meter=meter)


async def _oracle(case: SearchCase, settings: _Settings) -> tuple[OracleDagModel | OracleReActModel, OraclePlan]:
    """The case's oracle model, and the calls its script makes when run offline (no latency)."""
    offline = SimulatedLatency(mean_ms=0)
    tools = {item.name: item for item in create_tools(case, offline, corpus=settings.corpus)}
    script = create_script(case, tools)  # a script keeps no state: the offline run and the agent's run share it
    plan = await plan_oracle(script, tools)
    if settings.agent == "dag":
        return OracleDagModel(script=script, answer=case.answer, timing=settings.timing), plan
    return OracleReActModel(script=script, answer=case.answer, timing=settings.timing), plan


def _fairness(
    settings: _Settings,
    oracle: OracleDagModel | OracleReActModel | None,
    plan: OraclePlan | None,
    result: RunResult | None,
    wall_s: float,
) -> dict[str, Any]:
    """The oracle's figures of a case: its plan, whether the agent made exactly those calls, the bound."""
    fields: dict[str, Any] = dict.fromkeys(("planned_calls", "calls_equal", "calls_diff", "oracle"))
    fields.update(dict.fromkeys(("lower_bound_s", "efficiency", "bound")))
    if oracle is None or plan is None:
        return fields
    fields["planned_calls"] = len(plan.calls)
    fields["oracle"] = {"rounds": len(plan.rounds), **plan.tally}
    if result is None:
        return fields
    ran = [record for record in result.records.values() if record.started_at is not None]
    executed = _call_counts((record.node.tool, record.arguments or {}) for record in ran)
    planned = _call_counts((call.tool, call.arguments) for call in plan.calls)
    fields["calls_equal"] = executed == planned
    if executed != planned:
        fields["calls_diff"] = {
            "missing": list((planned - executed).elements())[:_DIFF_CALLS],
            "extra": list((executed - planned).elements())[:_DIFF_CALLS],
        }

    def delay(record: NodeRecord) -> float:
        return float(settings.latency.delay_s(call_key(record.node.tool, record.arguments or {})))

    create = create_dag_bound if isinstance(oracle, OracleDagModel) else create_react_bound
    bound: Bound = create(oracle.served, result.records, settings.timing, delay)
    fields["lower_bound_s"] = round(bound.lower_bound_s, 4)
    fields["efficiency"] = round(bound.lower_bound_s / wall_s, 4) if wall_s > 0 else None
    fields["bound"] = {
        "model_s": round(bound.model_s, 4),
        "tools_s": round(bound.tools_s, 4),
        "rounds": [
            {
                "prompt_tokens": item.prompt_tokens,
                "plan_tokens": item.plan_tokens,
                "plan_s": round(item.plan_s, 4),
                "tools_s": round(item.tools_s, 4),
                "join_s": round(item.join_s, 4),
            }
            for item in bound.rounds
        ],
    }
    return fields


def _call_counts(calls: Iterable[tuple[str, Mapping[str, JsonValue]]]) -> Counter[str]:
    """Calls as a multiset of `tool(arguments)` texts (arguments as canonical JSON)."""
    return Counter(
        f"{tool}({json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)})" for tool, arguments in calls
    )


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
    summary: dict[str, Any] = {
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
    bounded = [item for item in items if item["lower_bound_s"] is not None]
    planned = [item for item in items if item["planned_calls"] is not None]
    bound_s = sum(float(item["lower_bound_s"]) for item in bounded)
    bounded_wall = sum(float(item["wall_s"]) for item in bounded)
    oracle = Counter[str]()
    for item in planned:
        oracle.update(item["oracle"])
    summary.update(
        planned_calls=sum(int(item["planned_calls"]) for item in planned) if planned else None,
        calls_differ=sum(item["calls_equal"] is False for item in items) if planned else None,
        lower_bound_s=round(bound_s, 3) if bounded else None,
        efficiency=round(bound_s / bounded_wall, 4) if bounded and bounded_wall > 0 else None,
        min_efficiency=min(float(item["efficiency"]) for item in bounded) if bounded else None,
        oracle={key: oracle[key] for key in ("rounds", *TALLIES)} if planned else None,
    )
    return summary


def create_search_table(report: Mapping[str, Any]) -> Table:
    """A rich table of a `run_search_bench` report: one row per case, a totals row, and how tokens count."""
    config, summary = report["config"], report["summary"]
    title = (
        f"search bench: {config['dataset']}, agent {config['agent']}, model {config['model']}, "
        f"tool latency {config['latency_ms']:g} ms"
    )
    table = Table(title=title, show_footer=True, caption=_caption(config, summary))
    columns: tuple[str, ...] = ("id", "score", "wall s", "bound s", "efficiency", "tools", "calls equal")
    columns = (*columns, "model calls", "tokens", "replans", "error")
    footers = (
        f"{summary['cases']} cases",
        f"{summary['accuracy']:.3f}",
        f"{summary['wall_s']:.2f}",
        _figure(summary["lower_bound_s"], "{:.2f}"),
        _figure(summary["efficiency"], "{:.3f}"),
        str(summary["tool_calls"]),
        _figure(summary["calls_differ"], "{} differ"),
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
            _figure(item["lower_bound_s"], "{:.2f}"),
            _figure(item["efficiency"], "{:.3f}"),
            str(item["tool_calls"]),
            _figure(item["calls_equal"], "{}"),
            str(item["model_calls"]),
            str(item["tokens"]),
            str(item["replans"]),
            (item["error"] or "")[:60],
        )
    return table


def _caption(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    lines = [f"tokens {config['tokens']}"]
    generation = config.get("generation")
    if generation is not None:
        lines.append(
            f"simulated generation: {generation['first_token_s']:g} s to the first token, "
            f"{generation['token_s']:g} s per token, {generation['prompt_token_s']:g} s per prompt token; "
            "bound s: the least wall time these model and tool calls allow (efficiency = bound / wall)"
        )
    if summary.get("oracle"):
        tally = ", ".join(f"{key} {value}" for key, value in summary["oracle"].items())
        lines.append(f"oracle: {summary['planned_calls']} planned calls ({tally})")
    return "\n".join(lines)


def _figure(value: object, form: str) -> str:
    return "-" if value is None else form.format(value)
