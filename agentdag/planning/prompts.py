"""What the planner and the joiner are asked, and how tools and tool results are shown to a model.

Pure functions over a template (`agentdag.templates`), the tools and the node records. The ReAct baseline
describes tools and shows results with the same functions, so both agents see the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from agentdag.config import PlannerConfig
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.parsers import END_OF_PLAN
from agentdag.records import NodeRecord
from agentdag.schemas import JOINER_SCHEMA, create_plan_schema, create_refine_schema
from agentdag.templates import PlannerTemplate, fill, select_examples
from agentdag.toolsets.base import Tool

__all__ = [
    "describe_tools",
    "direct_request",
    "first_dispatch",
    "joiner_request",
    "joiner_retry",
    "observations",
    "observe",
    "planner_request",
    "refine_request",
    "render_output",
    "repair_request",
    "replan_prompt",
    "truncate",
]

JOINER_MAX_TOKENS = 512
DIRECT_MAX_TOKENS = 256


def describe_tools(tools: Iterable[Tool]) -> str:
    """One line per tool: its name, its arguments with their types, and the first line of its description."""
    lines = []
    for tool in tools:
        properties = tool.input_schema.get("properties", {})
        required = set(tool.input_schema.get("required", []))
        arguments = ", ".join(
            f"{name}: {item.get('type', 'any')}{'' if name in required else ' (optional)'}"
            for name, item in properties.items()
        )
        summary = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
        lines.append(f"- {tool.name}({arguments}): {summary}")
    return "\n".join(lines)


def render_output(value: object, limit: int) -> str:
    """A tool's output as a model reads it: text as it is, anything else as JSON, cut to about `limit`."""
    return truncate(_compact(value), limit)


def observe(record: NodeRecord, limit: int) -> str:
    """`[id] tool(arguments) -> output`, or `-> STATUS: reason` for a node without an output (cut to `limit`)."""
    call = f"[{record.id}] {record.tool}({_compact(record.arguments or record.node.arguments)})"
    if record.status == "done":
        return f"{call} -> {render_output(record.output, limit)}"
    reason = record.error.message if record.error is not None else record.status
    return f"{call} -> {record.status.upper()}: {truncate(reason, limit)}"


def observations(records: Iterable[NodeRecord], limit: int, *, only_finished: bool = False) -> str:
    """Every node's observation, one per line, or "(no tool was called)"."""
    lines = [
        observe(record, limit) for record in records if not only_finished or record.status not in ("queued", "running")
    ]
    return "\n".join(lines) if lines else "(no tool was called)"


def planner_request(
    template: PlannerTemplate,
    config: PlannerConfig,
    tools: Mapping[str, Tool],
    task: str,
    *,
    first_id: int,
    replanning: str | None = None,
) -> ModelRequest:
    """The planner's first request of a round.

    Instructions, the few-shot examples most like the task among those whose tools are offered
    (`select_examples`), and the task (with the replan prompt for a later round).
    """
    messages = [Message("system", fill(template.system, tools=describe_tools(tools.values()), first_id=first_id))]
    for example in select_examples(template, tools, task):
        messages.append(Message("user", fill(template.user, task=example.task)))
        messages.append(Message("assistant", example.plan.strip()))
    user = fill(template.user, task=task)
    messages.append(Message("user", user if replanning is None else f"{user}\n{replanning}"))
    json_style = template.style == "json"
    settings = ModelSettings(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        seed=config.seed,
        json_schema=create_plan_schema(list(tools.values()), max_nodes=config.max_nodes) if json_style else None,
        stop=() if json_style else (END_OF_PLAN,),
    )
    return ModelRequest(messages=tuple(messages), settings=settings)


def repair_request(
    request: ModelRequest, template: PlannerTemplate, reply: str, problems: str, kept: str
) -> ModelRequest:
    """The request after an invalid reply: the conversation so far, the reply, and its problems."""
    repair = Message("user", fill(template.repair, problems=problems, kept=kept))
    return ModelRequest(messages=(*request.messages, Message("assistant", reply), repair), settings=request.settings)


def replan_prompt(
    template: PlannerTemplate, records: Iterable[NodeRecord], reason: str, *, first_id: int, limit: int
) -> str:
    """The replan prompt: the results so far, why the joiner asked for more, and where new ids start."""
    return fill(template.replan, observations=observations(records, limit), reason=reason, first_id=first_id)


def joiner_request(
    template: PlannerTemplate, task: str, records: Iterable[NodeRecord], config: PlannerConfig
) -> ModelRequest:
    """The joiner's request: the task and every node's observation, under the decision schema."""
    prompt = fill(template.joiner, task=task, observations=observations(records, config.observation_chars))
    settings = ModelSettings(
        json_schema=JOINER_SCHEMA, max_tokens=JOINER_MAX_TOKENS, temperature=config.temperature, seed=config.seed
    )
    return ModelRequest(messages=(Message("user", prompt),), settings=settings)


def joiner_retry(request: ModelRequest, template: PlannerTemplate, reply: str, error: str) -> ModelRequest:
    """The joiner's request again, after a reply that was no decision, with the reason."""
    retry = Message("user", fill(template.joiner_retry, error=error))
    return ModelRequest(messages=(*request.messages, Message("assistant", reply), retry), settings=request.settings)


def direct_request(template: PlannerTemplate, task: str, config: PlannerConfig) -> ModelRequest:
    """The fallback that answers without tools."""
    settings = ModelSettings(max_tokens=DIRECT_MAX_TOKENS, temperature=config.temperature, seed=config.seed)
    return ModelRequest(messages=(Message("user", fill(template.direct, task=task)),), settings=settings)


def refine_request(
    template: PlannerTemplate,
    config: PlannerConfig,
    tools: Mapping[str, Tool],
    task: str,
    records: Mapping[int, NodeRecord],
    *,
    first_id: int,
) -> ModelRequest:
    """A mid-run refinement: the results so far, the nodes still pending, and where new ids start."""
    pending = "\n".join(
        f"[{record.id}] {record.tool}({_compact(record.node.arguments)}) - {record.status}"
        for record in records.values()
        if record.status in ("queued", "running")
    )
    prompt = fill(
        template.refine,
        task=task,
        observations=observations(records.values(), config.observation_chars, only_finished=True),
        pending=pending,
        first_id=first_id,
    )
    schema = create_refine_schema(list(tools.values()), max_nodes=config.max_nodes)
    settings = ModelSettings(
        json_schema=schema, max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed
    )
    return ModelRequest(messages=(Message("user", prompt),), settings=settings)


def first_dispatch(records: Iterable[NodeRecord], *, started: float, opened: float) -> float | None:
    """Seconds from a run's start (`started`) to its first node's start; None if no node started.

    Node times count from the execution's opening (`opened`), both `time.perf_counter()` readings.
    """
    starts = [record.started_at for record in records if record.started_at is not None]
    return opened - started + min(starts) if starts else None


def truncate(text: str, limit: int) -> str:
    """`text`, or its head and tail around a note of how much was left out, at most about `limit` long."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]} … ({len(text) - limit} characters omitted) … {text[-tail:]}"


def _compact(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
