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

from agentdag.messages import ModelRequest, ModelResponse, Usage
from agentdag.parsers import PlanParser
from agentdag.planning.context import PlanningRun
from agentdag.planning.dispatch import Reply
from agentdag.scaling.reading import PlanReading, reading_plans
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens
from agentdag.usage import Role

__all__ = ["ask", "stream_reply"]


async def stream_reply(
    run: PlanningRun, request: ModelRequest, reply: Reply, parser: PlanParser
) -> tuple[str, str | None]:
    """Stream one planner reply into `reply`; return its text, and why it was cut off (or None)."""
    parts: list[str] = []
    response: ModelResponse | None = None
    async with aclosing(_planner_stream(run, request)) as stream:
        async for item in stream:
            if isinstance(item, ModelResponse):
                response = item
                continue
            parts.append(item)
            for node in parser.feed(item):
                reply.offer(node)
            if reply.stopped is not None:
                break  # closing the stream stops the generation
    text = "".join(parts)
    if reply.stopped is None:
        for node in parser.finish():
            reply.offer(node)
    reply.close()
    if response is None:
        # Stopped early: the backend never sent its totals, so count what was generated, once.
        prompt_tokens, completion_tokens = estimate_prompt_tokens(request.messages), estimate_tokens(text)
        usage = Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    else:
        usage = response.usage
    run.journal.meter.add("planner", usage)
    length = response is not None and response.completions[0].finish_reason == "length"
    return text, "the plan was cut off at the token limit" if length or parser.truncated else None


async def ask(run: PlanningRun, role: Role, request: ModelRequest) -> ModelResponse:
    """One model call for `role` ("planner" or "joiner"), counted on the run's meter."""
    if role == "planner":
        with reading_plans(PlanReading(run.reader, run.task)):
            response = await run.planner_model.request(request)
    else:
        response = await run.joiner_model.request(request)
    run.journal.meter.add(role, response.usage)
    return response


async def _planner_stream(run: PlanningRun, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
    """The planner model's stream, with the plan reading set during each of its steps only."""
    reading = PlanReading(run.reader, run.task)
    async with aclosing(run.planner_model.stream(request)) as chunks:
        while True:
            with reading_plans(reading):
                try:
                    item = await anext(chunks)
                except StopAsyncIteration:
                    return
            yield item
