"""Every JSON schema agentdag sends, sampled from the real embedded server: the grammar keeps each reply valid.

llama.cpp turns a JSON schema into a grammar, faithfully only for a subset of JSON Schema. Each schema here
is sampled with fixed seeds at temperature 1 (so the samples explore the grammar, not one greedy path), and
every reply that finished must parse and validate against the same schema on our side: no dropped `$`, no key
that `additionalProperties: false` forbids, no server error. `AGENTDAG_GRAMMAR_SAMPLES` sets the samples per
schema (default 8; the README quotes a run with more).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import jsonschema
import pytest
from pydantic import BaseModel
from support import require_embedded_model

from agentdag import tool
from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models import EmbeddedServer, OpenAIModel
from agentdag.react import create_step_schema
from agentdag.schemas import JOINER_SCHEMA, create_plan_schema, create_refine_schema
from agentdag.toolsets.registry import ToolRegistry

require_embedded_model()

pytestmark = [pytest.mark.embedded, pytest.mark.anyio, pytest.mark.timeout(900)]

SAMPLES = int(os.environ.get("AGENTDAG_GRAMMAR_SAMPLES", "8"))
MAX_TOKENS = 400


class Point(BaseModel):
    x: float
    y: float


@tool
def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression."""
    return 0.0


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@tool
def tag(items: list[str], limit: int = 3, mode: Literal["any", "all"] = "any") -> list[str]:
    """Tag items."""
    return items[:limit]


@tool
def move(points: list[Point], origin: Point) -> list[Point]:
    """Move points relative to an origin (its argument schema has `$defs`)."""
    return points


TOOLS = [calculate, add, tag, move]
SCHEMAS: dict[str, dict[str, Any]] = {
    "plan": create_plan_schema(TOOLS, max_nodes=4),
    "refine": create_refine_schema(TOOLS, max_nodes=4),
    "joiner": JOINER_SCHEMA,
    "react": create_step_schema(ToolRegistry(TOOLS)),
}
PROMPT = (
    "Tools: calculate(expression), add(a, b), tag(items, limit, mode), move(points, origin). "
    "Task: What is (12 + 30) * 2, and what is 100 / 4? Use earlier outputs where you can. Reply in JSON."
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[OpenAIModel]:
    async with EmbeddedServer(slots=4, ctx_per_slot=2048) as server:
        client = OpenAIModel(base_url=server.url, model=server.model_name, timeout_s=300, max_retries=0)
        try:
            yield client
        finally:
            await client.aclose()


def test_the_sampled_move_tool_keeps_its_nested_schema() -> None:
    """The `$defs` tool is constrained in the plan, not an unconstrained object (what the samples rely on)."""
    variant = SCHEMAS["plan"]["properties"]["nodes"]["items"]["anyOf"][3]
    origin = variant["properties"]["arguments"]["properties"]["origin"]["anyOf"][0]
    assert origin["properties"].keys() == {"x", "y"}


@pytest.mark.parametrize("name", list(SCHEMAS))
async def test_every_finished_sample_validates_against_the_schema_it_was_sampled_under(
    model: OpenAIModel, name: str
) -> None:
    schema = SCHEMAS[name]
    finished: list[str] = []
    truncated = 0
    limiter = anyio.CapacityLimiter(4)

    async def sample(seed: int) -> None:
        nonlocal truncated
        settings = ModelSettings(json_schema=schema, temperature=1.0, seed=seed, max_tokens=MAX_TOKENS)
        async with limiter:
            response = await model.request(ModelRequest(messages=(Message("user", PROMPT),), settings=settings))
        completion = response.completions[0]
        if completion.finish_reason == "length":
            truncated += 1
        else:
            assert completion.finish_reason == "stop", completion
            finished.append(completion.text)

    async with anyio.create_task_group() as group:
        for seed in range(SAMPLES):
            group.start_soon(sample, seed)

    for text in finished:
        jsonschema.validate(json.loads(text), schema)  # parses, and holds no key or value the schema forbids
    assert len(finished) >= SAMPLES // 2, f"only {len(finished)} of {SAMPLES} samples finished in {MAX_TOKENS} tokens"
