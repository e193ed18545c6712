"""`ReActAgent`: the sequential baseline, one tool call per model step, over the same tools and models.

Each step the model replies with one JSON object (constrained by `settings.json_schema`): either a tool
call, `{"thought": ..., "action": "call", "tool": name, "arguments": {...}}`, or the answer,
`{"thought": ..., "action": "finish", "answer": ...}`. The call runs through the same `Executor` the DAG
agent uses, one node at a time in one execution (node ids 1, 2, ...), so timeouts, retries and failures
behave identically and a later call may reference an earlier output (`"$1"`). Its output, or its error,
goes back to the model as the next observation.

The baseline exists so a benchmark can compare orchestration alone: same tools, same model protocol,
sequential calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import pydantic

from agentdag.config import Limits
from agentdag.errors import ModelError, PlanError
from agentdag.events import EventSink
from agentdag.executor import Execution, Executor
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models.base import Model
from agentdag.plan import Node
from agentdag.planning.prompts import describe_tools, first_dispatch, render_output
from agentdag.records import NodeRecord
from agentdag.result import RunResult, RunStatus
from agentdag.schemas import inline_definitions
from agentdag.toolsets.base import Tool
from agentdag.toolsets.registry import ToolRegistry
from agentdag.usage import RunMeter, metering, reporting_as

__all__ = ["ReActAgent", "create_step_schema"]

_OBSERVATION_CHARS = 4000


class _CallStep(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    thought: str = ""
    action: Literal["call"]
    tool: str = pydantic.Field(min_length=1)
    arguments: dict[str, Any] = pydantic.Field(default_factory=dict)


class _FinishStep(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    thought: str = ""
    action: Literal["finish"]
    answer: str


_Step = Annotated[_CallStep | _FinishStep, pydantic.Field(discriminator="action")]
_STEP_ADAPTER: pydantic.TypeAdapter[_CallStep | _FinishStep] = pydantic.TypeAdapter(_Step)


def create_step_schema(tools: Mapping[str, Tool]) -> dict[str, Any]:
    """The JSON schema of one ReAct reply: a call of one of `tools` (with its own argument schema) or the answer.

    A tool's local `$defs` references are inlined, since they would not resolve inside the combined schema;
    one that cannot be inlined (a recursive definition) gets a plain object schema, and the executor still
    validates the arguments.
    """
    calls = [
        {
            "type": "object",
            "properties": {
                "thought": {"type": "string"},
                "action": {"const": "call"},
                "tool": {"const": name},
                "arguments": _arguments_schema(item),
            },
            "required": ["thought", "action", "tool", "arguments"],
            "additionalProperties": False,
        }
        for name, item in tools.items()
    ]
    finish = {
        "type": "object",
        "properties": {
            "thought": {"type": "string"},
            "action": {"const": "finish"},
            "answer": {"type": "string"},
        },
        "required": ["thought", "action", "answer"],
        "additionalProperties": False,
    }
    return {"anyOf": [*calls, finish]}


def _arguments_schema(item: Tool) -> dict[str, Any]:
    return inline_definitions(item.input_schema) or {"type": "object"}


class ReActAgent:
    """The sequential ReAct baseline: think, call one tool, observe, repeat until the model answers.

    The result is the same `RunResult` the DAG agent returns. Its usage holds the model's calls under the
    role "planner" (ReAct has no separate joiner; "joiner" is present and zero) and the usage of model-backed
    tools under "tools". A run that ends without an answer (step budget spent, or the model failed)
    has status "failed" and says why in `error`.

    Args:
        tools: the tools the model may call.
        model: the model that decides every step.
        max_steps: at most this many model replies; a malformed reply counts as a step.
        max_tokens: longest reply of one step, in tokens.
        temperature: sampling temperature (0, as the DAG planner's default; None: the server's default).
        system_prompt: replaces the default instructions (the tool list is appended either way).
        limits: concurrency caps and the deadline of one tool call attempt (calls run one at a time anyway).
        on_event: callbacks that receive every node event.
    """

    def __init__(
        self,
        *,
        tools: Iterable[Tool],
        model: Model,
        max_steps: int = 10,
        max_tokens: int = 512,
        temperature: float | None = 0.0,
        system_prompt: str | None = None,
        limits: Limits | None = None,
        on_event: Sequence[EventSink] = (),
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.tools = ToolRegistry(tools)
        self.model = model
        self.max_steps = max_steps
        self.settings = ModelSettings(
            max_tokens=max_tokens, temperature=temperature, json_schema=create_step_schema(self.tools)
        )
        self.system_prompt = (system_prompt or _INSTRUCTIONS) + "\n\nTools:\n" + describe_tools(self.tools.values())
        self.executor = Executor(self.tools, limits=limits, on_event=on_event)

    async def run(self, question: str, *, meter: RunMeter | None = None) -> RunResult:
        """Answer `question` one tool call at a time.

        Model failures and tool failures do not raise: the result says what happened.

        Args:
            question: what to answer.
            meter: the run's usage meter (default: a new one); the model's steps count as "planner".
        """
        started = time.perf_counter()
        meter = meter if meter is not None else RunMeter()
        messages = [Message("system", self.system_prompt), Message("user", f"Question: {question}")]
        with metering(meter):  # the tools' model calls (the `llm` tool) report to it too
            answer, error, execution = await self._steps(messages, meter)
        status: RunStatus = "done" if error is None else "failed"
        return RunResult(
            status=status,
            answer=answer,
            records=execution.records,
            usage=meter.usage,
            wall_s=time.perf_counter() - started,
            error=error,
            first_dispatch_s=first_dispatch(execution.records.values(), started=started, opened=execution.opened),
        )

    async def _steps(self, messages: list[Message], meter: RunMeter) -> tuple[str | None, str | None, Execution]:
        """Step until the model answers; the answer (or None), why there is none, and the execution."""
        answer: str | None = None
        error: str | None = None
        async with self.executor.open() as execution:
            try:
                for _ in range(self.max_steps):
                    request = ModelRequest(messages=tuple(messages), settings=self.settings)
                    with reporting_as("planner"):  # a strategy wrapping the model counts its own calls
                        response = await self.model.request(request)
                    if not self.model.counts_usage:
                        meter.add("planner", response.usage)
                    messages.append(Message("assistant", response.text))
                    try:
                        step = _STEP_ADAPTER.validate_json(response.text)
                    except pydantic.ValidationError as problem:
                        messages.append(Message("user", _malformed_observation(problem)))
                        continue
                    if isinstance(step, _FinishStep):
                        answer = step.answer
                        break
                    messages.append(Message("user", await _call(execution, step)))
                else:
                    error = f"no answer within max_steps={self.max_steps} model steps"
            except ModelError as failure:
                error = f"model call failed: {failure}"
        return answer, error, execution


async def _call(execution: Execution, step: _CallStep) -> str:
    """Run one call as the next node of the execution and describe its outcome as an observation."""
    node = Node(id=len(execution.records) + 1, tool=step.tool, arguments=step.arguments, thought=step.thought or None)
    try:
        record = execution.add(node)
    except PlanError as error:
        problems = "; ".join(str(problem) for problem in error.problems)
        return f"Observation: error: the call was rejected and did not run ({problems}). Fix it and try again."
    await execution.wait()
    return _observation(execution.records[record.id])


def _observation(record: NodeRecord) -> str:
    if record.status == "done":
        return f"Observation (call {record.id}): {render_output(record.output, _OBSERVATION_CHARS)}"
    kind, message = (record.error.kind, record.error.message) if record.error else (record.status, record.status)
    return f"Observation (call {record.id}): error ({kind}): {message}"


def _malformed_observation(error: pydantic.ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'reply'}: {item['msg']}"
        for item in error.errors(include_url=False)[:3]
    )
    return (
        f"Observation: error: your reply is not a valid step ({problems}). Reply with one JSON object: "
        '{"thought": "...", "action": "call", "tool": "<tool name>", "arguments": {...}} or '
        '{"thought": "...", "action": "finish", "answer": "..."}.'
    )


_INSTRUCTIONS = """\
You answer the user's question by calling tools, one call per reply, and reading each observation.
Reply with exactly one JSON object and nothing else:
- to call a tool: {"thought": "<why this call>", "action": "call", "tool": "<tool name>", "arguments": {...}}
- to answer: {"thought": "<how the observations answer it>", "action": "finish", "answer": "<the answer>"}
Make one call per reply; after each call you will see its observation. Answer as soon as the observations
suffice, and keep the answer short: the fact itself, not a sentence about it."""
