"""End to end on the real embedded model: a planner run completes with a valid DAG trace.

SmolLM2-135M plans poorly, so these tests check the engine (a complete, consistent trace and a result
that says what happened), not the quality of the answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentdag.tools.calculator import TOOLS
from support import require_embedded_model

from agentdag import Agent, PlannerConfig
from agentdag.cli import main
from agentdag.events import Event, NodeEvent, RunEvent
from agentdag.models import ModelConfig, open_model
from agentdag.plan import check_node

require_embedded_model()

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.asyncio
@pytest.mark.parametrize("style", ["json", "llmcompiler"])
async def test_a_planner_run_on_the_embedded_model_leaves_a_valid_trace(style: str) -> None:
    events: list[Event] = []
    async with open_model(ModelConfig()) as model:
        agent = Agent(
            tools=TOOLS,
            model=model,
            planner=PlannerConfig(style=style, max_tokens=200, max_repairs=1),  # type: ignore[arg-type]
            on_event=[events.append],
        )
        result = await agent.run("What is (12 + 30) * 2, and what is 100 / 4?")
    assert result.status == "done", result.error
    assert isinstance(result.answer, str)
    assert result.answer
    assert result.usage["planner"].calls >= 1
    assert result.usage["joiner"].calls == 1
    # Every node that ran was valid against the tools and the nodes before it, and started after its inputs.
    earlier: set[int] = set()
    for node_id, record in result.records.items():
        assert check_node(record.node, agent.tools, earlier) == []
        for dependency in record.dependencies:
            upstream = result.records[dependency]
            assert upstream.finished_at is not None
            assert record.started_at is None or upstream.finished_at <= record.started_at
        earlier.add(node_id)
    run_kinds = [event.kind for event in events if isinstance(event, RunEvent)]
    assert run_kinds[0] == "planning"
    assert run_kinds[-1] == "finished"
    node_events = [event for event in events if isinstance(event, NodeEvent)]
    assert {event.node_id for event in node_events} == set(result.records)
    if not result.records:
        assert any("no valid node" in note for note in result.notes)


def test_the_readme_main_example_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "arithmetic.yaml"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "done"
    assert result["usage"]["planner"]["calls"] >= 1
