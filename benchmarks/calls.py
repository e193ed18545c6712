"""Function-call benchmark: does the first plan make the right independent calls? (BFCL parallel categories)

`agentdag bench calls --style json,llmcompiler,native,best_of_n --model oracle|noop|local|URL --limit N`
runs `run_calls_bench`. Each case offers its functions and asks for the calls; no tool runs. What is scored
is the plan the agent would start running, under BFCL's AST rules (`calls_check`):

* `json` and `llmcompiler`: `Agent.draft` with that plan style, repairs included, as `agentdag run` would
  plan it (the planner's shipped settings);
* `native`: one request with the functions as the server's native `tools` (`tool_choice: required`,
  `parallel_tool_calls: true`), the planner's `max_tokens` and temperature, the user's message alone as
  BFCL sends it; the reply's tool calls are the plan (there is no repair loop to go through);
* `best_of_n`: the json planner wrapped in best-of-n with its shipped defaults and one override,
  `selector: structure` (the plan that validates, covers the task and calls the most at once).

Cases and styles run one after another on the same model, so wall times compare; the styles' order rotates
from case to case. The planned styles read each function as the planner shows tools (its name, its
arguments with their types, the first line of its description; the json style's grammar also holds enums
and nested keys), while `native` hands the server the whole schema. `oracle` writes the expected calls
(a check of the harness: 100% on every record whose ground truth fits its own schema, which the planner
enforces; see `ground_truth_outside_schema`) and `noop` writes none (0%).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, get_args

import anyio

from agentdag.agent import Agent
from agentdag.config import PlannerConfig
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models import Model, ModelConfig, open_model
from agentdag.scaling import BestOfNConfig, create_strategy
from agentdag.usage import RunMeter

from .calls_check import check_calls
from .calls_data import DEFAULT_DATASETS, CallsCase, create_tool_specs, create_tools, load_cases
from .calls_oracle import create_control_model, find_schema_conflicts, python_arguments
from .calls_view import create_calls_table, summarize_calls
from .data_paths import resolve_dataset
from .oracle import Call

__all__ = ["STYLES", "Style", "create_calls_table", "run_calls_bench", "score_style"]

Style = Literal["json", "llmcompiler", "native", "best_of_n"]
STYLES: tuple[Style, ...] = get_args(Style)
CONTROLS = ("oracle", "noop")
BEST_OF_N = BestOfNConfig(selector="structure")
TOKEN_COUNT = "as the server reports them, else estimated as characters ÷ 4 (agentdag.tokens.estimate_tokens)"


async def run_calls_bench(
    *,
    dataset: Path | str | None = None,
    data_dir: Path | None = None,
    styles: Sequence[str] = (),
    model: str = "oracle",
    limit: int | None = None,
    case_timeout_s: float = 300.0,
    on_case: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the function-call benchmark and return `{"config", "summary", "items"}` (JSON-able).

    Args:
        dataset: a JSON Lines file or a calls data set's name (default: BFCL's `parallel` and
            `parallel_multiple`, one after the other).
        data_dir: the data folder to look in alone (default: `$AGENTDAG_DATA`, else `../shared/data`, then
            the fetch cache; see `data_paths`).
        styles: the styles to compare, from `STYLES` (default: all).
        model: "oracle" or "noop" (the scripted controls), "local" (the embedded model), or the URL of an
            OpenAI-compatible server.
        limit: only the first `limit` cases of each file (None: all).
        case_timeout_s: the wall-time limit of one style on one case; past it the case scores 0 with an error.
        on_case: called with each item as soon as its case finishes (for progress output).

    Raises:
        ValueError: an unknown style or model, or a file that is not BFCL records.
        FileNotFoundError: the data set is missing (the message names the fetch command).
    """
    chosen = _check_styles(styles)
    paths = (
        [resolve_dataset(name, kind="calls", default=name, data_dir=data_dir) for name in DEFAULT_DATASETS]
        if dataset is None
        else [resolve_dataset(dataset, kind="calls", default=DEFAULT_DATASETS[0], data_dir=data_dir)]
    )
    cases = load_cases(paths, limit=limit)
    items: list[dict[str, Any]] = []
    async with _open_shared_model(model) as shared:
        for index, case in enumerate(cases):
            scored = {}
            # The order rotates from case to case, so that no style always follows the one whose prompt it
            # shares (best_of_n and json) and finds it in the server's prompt cache.
            for style in chosen[index % len(chosen) :] + chosen[: index % len(chosen)]:
                case_model = shared or create_control_model(model, case)
                scored[style] = await score_style(case, style, case_model, timeout_s=case_timeout_s)
            item = {"id": case.id, "category": case.category, "styles": {style: scored[style] for style in chosen}}
            conflicts = find_schema_conflicts(case)
            if conflicts:
                item["ground_truth_outside_schema"] = conflicts
            items.append(item)
            if on_case is not None:
                on_case(item)
    planner = PlannerConfig()
    config: dict[str, Any] = {
        "datasets": [path.name for path in paths],
        "model": model,
        "limit": limit,
        "styles": list(chosen),
        "planner": {"max_tokens": planner.max_tokens, "temperature": planner.temperature},
        "native": {"tool_choice": "required", "parallel_tool_calls": True},
        "best_of_n": {"n": BEST_OF_N.n, "temperature": BEST_OF_N.temperature, "overrides": {"selector": "structure"}},
        "tokens": TOKEN_COUNT,
        "case_timeout_s": case_timeout_s,
        "ground_truth_outside_schema": [item["id"] for item in items if "ground_truth_outside_schema" in item],
    }
    return {"config": config, "summary": summarize_calls(items, chosen), "items": items}


def _check_styles(styles: Sequence[str]) -> tuple[Style, ...]:
    unknown = [style for style in styles if style not in STYLES]
    if unknown:
        raise ValueError(f"unknown style {', '.join(unknown)}; choose from {', '.join(STYLES)}")
    return tuple(style for style in STYLES if style in styles) if styles else STYLES


@asynccontextmanager
async def _open_shared_model(model: str) -> AsyncIterator[Model | None]:
    """The model every case shares, or None for the controls (which are scripted per case)."""
    if model in CONTROLS:
        yield None
        return
    async with open_model(ModelConfig.from_name(model, others=CONTROLS)) as opened:
        yield opened


async def score_style(case: CallsCase, style: Style, model: Model, *, timeout_s: float = 300.0) -> dict[str, Any]:
    """One style's first plan for one case, scored under BFCL's AST rules (JSON-able).

    A failure of the model or a timeout scores 0 and is reported in `error`; `reason` says why a plan is
    wrong (empty when it is right).
    """
    meter = RunMeter()
    calls: list[Call] = []
    unreadable: str | None = None
    error: str | None = None
    started = time.perf_counter()
    try:
        with anyio.move_on_after(timeout_s) as scope:
            calls, unreadable = await _plan_calls(case, style, model, meter)
        if scope.cancelled_caught:
            error = f"timed out after {timeout_s:g} s"
    except Exception as failure:  # one case's failure is data in its row, never the end of the run
        error = f"{type(failure).__name__}: {failure}"
    wall_s = time.perf_counter() - started
    verdict = check_calls(calls, case.expected, case.functions)
    usage = meter.total
    return {
        "correct": error is None and unreadable is None and verdict.correct,
        "reason": error or unreadable or verdict.reason,
        "calls": [f"{call.tool}({python_arguments(call.arguments)})" for call in calls],
        "wall_s": round(wall_s, 4),
        "model_calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "error": error,
    }


async def _plan_calls(case: CallsCase, style: Style, model: Model, meter: RunMeter) -> tuple[list[Call], str | None]:
    """The plan's calls, and what makes the reply unreadable as calls (None when it is readable)."""
    if style == "native":
        return await _native_calls(case, model, meter)
    planner_model = create_strategy(BEST_OF_N, model) if style == "best_of_n" else model
    agent = Agent(
        tools=create_tools(case),
        planner_model=planner_model,
        joiner_model=model,
        planner=PlannerConfig(style="llmcompiler" if style == "llmcompiler" else "json"),
    )
    draft = await agent.draft(case.task, meter=meter)
    return [Call(tool=node.tool, arguments=node.arguments) for node in draft.nodes], None


async def _native_calls(case: CallsCase, model: Model, meter: RunMeter) -> tuple[list[Call], str | None]:
    """The calls of one native tool-calling reply; arguments that are not a JSON object make it unreadable."""
    planner = PlannerConfig()
    settings = ModelSettings(
        max_tokens=planner.max_tokens,
        temperature=planner.temperature,
        tools=create_tool_specs(case),
        tool_choice="required",
        parallel_tool_calls=True,
    )
    request = ModelRequest(messages=(Message("user", case.task),), settings=settings)
    response = await model.request(request)
    meter.add("planner", response.usage)  # the caller of a model counts its call (see agentdag.usage)
    calls: list[Call] = []
    for position, tool_call in enumerate(response.completions[0].tool_calls, start=1):
        try:
            arguments = tool_call.parsed_arguments()
        except ValueError as error:
            return calls, f"tool call {position} ({tool_call.name}): {error}"
        calls.append(Call(tool=tool_call.name, arguments=arguments))
    return calls, None
