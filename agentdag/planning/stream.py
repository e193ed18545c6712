"""The plan stream: one planner reply, parsed as it streams and dispatched node by node.

Every complete node goes to the `Reply` (see `agentdag.planning.dispatch`) the moment its text ends, so it
can start while the planner is still writing. `ask` is the planning steps' one way to make a model call that
is not streamed. Both count each call on the run's meter once, and let the strategies below the planner read
its replies as plans (only while the model works, never while nodes are dispatched, so tool calls never see
that).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from agentdag.errors import ModelError
from agentdag.messages import ModelRequest, ModelResponse, Usage
from agentdag.parsers import PlanParser
from agentdag.planning.context import PlanningRun
from agentdag.planning.dispatch import Reply
from agentdag.scaling.reading import PlanReading, reading_plans
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens
from agentdag.usage import Role, reporting_as

__all__ = ["ask", "stream_reply"]


async def stream_reply(
    run: PlanningRun, request: ModelRequest, reply: Reply, parser: PlanParser
) -> tuple[str, str | None]:
    """Stream one planner reply into `reply`; return its text, and why it was cut off (or None).

    The call is counted once, when the stream ends or is closed: with the server's totals, or an estimate of
    what was generated when the stream was closed early (a loop, `max_nodes`) or cancelled (a time budget).
    """
    parts: list[str] = []
    response: ModelResponse | None = None
    known = frozenset(reply.dispatcher.target.records)
    try:
        async with aclosing(_planner_stream(run, request, known)) as stream:
            async for item in stream:
                if isinstance(item, ModelResponse):
                    response = item
                    continue
                parts.append(item)
                for node in parser.feed(item):
                    reply.offer(node)
                if reply.stopped is not None:
                    break  # closing the stream stops the generation
    except ModelError:
        raise  # a call that failed is counted by no one: the server said it did no work we could count
    except BaseException:
        _count(run, "planner", request, None, "".join(parts))  # cancelled: it ran until now
        raise
    _count(run, "planner", request, response, "".join(parts))
    text = "".join(parts)
    if reply.stopped is None:
        for node in parser.finish():
            reply.offer(node)
    reply.close()
    finish = response.completions[0].finish_reason if response is not None else None
    if finish == "error":  # the server ended the reply (filtered, or its own output parse failed)
        return text, "the server ended the plan's reply before it was finished"
    return text, "the plan was cut off at the token limit" if finish == "length" or parser.truncated else None


async def ask(
    run: PlanningRun, role: Role, request: ModelRequest, *, known: frozenset[int] = frozenset()
) -> ModelResponse:
    """One model call for `role` ("planner" or "joiner"), counted on the run's meter.

    `known`: for a planner call, the ids of the nodes that exist already, which its plans may reference.
    """
    model = run.planner_model if role == "planner" else run.joiner_model
    try:
        with reporting_as(role):
            if role == "planner":
                with reading_plans(PlanReading(run.reader, run.task, known)):
                    response = await model.request(request)
            else:
                response = await model.request(request)
    except ModelError:
        raise
    except BaseException:
        _count(run, role, request, None, "")  # cancelled: charged its prompt
        raise
    _count(run, role, request, response, "")
    return response


def _count(run: PlanningRun, role: Role, request: ModelRequest, response: ModelResponse | None, text: str) -> None:
    """Count one call of the role's model, unless the model counts its calls itself (a strategy).

    A call without a response (closed early or cancelled) is charged its prompt and what it sent.
    """
    model = run.planner_model if role == "planner" else run.joiner_model
    if model.counts_usage:
        return
    if response is None:
        prompt_tokens, completion_tokens = estimate_prompt_tokens(request.messages), estimate_tokens(text)
        usage = Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    else:
        usage = response.usage
    run.journal.meter.add(role, usage)


async def _planner_stream(
    run: PlanningRun, request: ModelRequest, known: frozenset[int]
) -> AsyncGenerator[str | ModelResponse, None]:
    """The planner model's stream, with the role and the plan reading set during each of its steps only."""
    reading = PlanReading(run.reader, run.task, known)
    async with aclosing(run.planner_model.stream(request)) as chunks:
        while True:
            with reporting_as("planner"), reading_plans(reading):
                try:
                    item = await anext(chunks)
                except StopAsyncIteration:
                    return
            yield item
