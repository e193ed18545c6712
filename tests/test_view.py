from __future__ import annotations

import pytest
from rich.console import Console

from agentdag.agent import Agent
from agentdag.events import NodeError, NodeEvent, RunEvent
from agentdag.messages import Usage
from agentdag.models.function import FunctionModel
from agentdag.plan import Node
from agentdag.summary import NodeSummary, RunSummary, critical_path, format_seconds, summarize
from agentdag.toolsets.function import tool
from agentdag.toolsets.model import ModelTool
from agentdag.trace import result_to_json
from agentdag.usage import RunMeter
from agentdag.view import RunView, render_summary


def render(renderable: object, width: int = 140) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def node(node_id: int, start: float | None, end: float | None, *deps: int, status: str = "done") -> NodeSummary:
    return NodeSummary(id=node_id, tool="t", status=status, started_at=start, finished_at=end, dependencies=deps)


def test_the_critical_path_is_the_longest_chain_of_durations() -> None:
    # 1 (0-1) and 2 (0-3) in parallel; 3 after both (3-4); 4 after 1 only (1-1.5).
    nodes = [node(1, 0, 1), node(2, 0, 3), node(3, 3, 4, 1, 2), node(4, 1, 1.5, 1)]
    path, length = critical_path(nodes)
    assert path == (2, 3)
    assert length == pytest.approx(4.0)
    summary = RunSummary(status="done", answer=1, error=None, wall_s=4.0, nodes=tuple(nodes), usage={})
    assert summary.busy_s == pytest.approx(5.5)
    assert summary.parallelism == pytest.approx(5.5 / 4.0)
    assert critical_path([]) == ((), 0.0)


def test_nodes_that_never_ran_count_zero() -> None:
    nodes = [node(1, 0, 2, status="failed"), node(2, None, 2, 1, status="skipped")]
    assert critical_path(nodes) == ((1, 2), 2.0)
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(2.5) == "2.50 s"


def test_summarize_rejects_what_is_not_a_result() -> None:
    with pytest.raises(ValueError, match="not a run result"):
        summarize({"status": "done"})
    with pytest.raises(ValueError, match="not a run result"):
        summarize({"status": "done", "wall_s": "x", "nodes": []})


def test_the_view_follows_events_and_renders_them() -> None:
    view = RunView(title="the task")
    view(RunEvent("planning", 0.01, 0, "attempt 1"))
    view(NodeEvent("queued", 1, "search", 0.1))
    view(NodeEvent("queued", 2, "search", 0.1))
    view(NodeEvent("running", 1, "search", 0.2, 1))
    view(NodeEvent("running", 2, "search", 0.2, 1))
    view(NodeEvent("retrying", 2, "search", 0.3, 1, error=NodeError("timeout", "slow")))
    view(NodeEvent("done", 1, "search", 0.5, 1, 0.3))
    view(NodeEvent("failed", 2, "search", 0.9, 2, 0.7, NodeError("tool_error", "boom")))
    view(NodeEvent("skipped", 3, "calc", 0.9, 0, None, NodeError("dependency_failed", "node 2 failed", cause=2)))
    view(RunEvent("joining", 1.0, 0))
    view.count_usage("joiner", Usage(calls=1, prompt_tokens=10, completion_tokens=5))
    assert view.tokens == {"planner": 0, "joiner": 15, "tools": 0}
    assert {node_id: row.status for node_id, row in view.rows.items()} == {1: "done", 2: "failed", 3: "skipped"}
    assert view.steps == [("planning", 0.01), ("joining", 1.0)]
    text = render(view)
    assert "the task" in text
    assert "joining round 0" in text
    assert "1 done, 1 failed" in text
    assert "failed (try 2)" in text
    assert "boom" in text
    assert "0.30 s" in text
    assert "planning: attempt 1" in text


@pytest.mark.asyncio
async def test_tokens_of_the_llm_tool_are_counted_per_node() -> None:
    view = RunView()
    model = FunctionModel(lambda request: "four words of reply")
    llm = ModelTool(model)

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    agent = Agent(tools=[llm, add], on_event=[view])
    result = await agent.run_plan(
        [
            Node(id=1, tool="llm", arguments={"prompt": "say something"}),
            Node(id=2, tool="add", arguments={"a": 1, "b": 2}),
            Node(id=3, tool="llm", arguments={"prompt": "say something longer, please, at length"}),
        ],
        meter=RunMeter(listeners=(view.count_usage,)),
    )
    assert result.status == "done"
    tokens = view.node_tokens
    assert set(tokens) == {1, 3}
    assert tokens[3] > tokens[1] > 0
    assert view.tokens["tools"] == tokens[1] + tokens[3]
    summary = summarize(result_to_json(result, node_tokens=tokens))
    assert [item.tokens for item in summary.nodes] == [tokens[1], None, tokens[3]]


def test_the_summary_names_answer_times_tokens_and_failures() -> None:
    summary = summarize(
        {
            "status": "failed",
            "answer": None,
            "error": "no answer: node 1 failed",
            "wall_s": 2.0,
            "usage": {
                "planner": {"calls": 2, "prompt_tokens": 100, "completion_tokens": 20},
                "joiner": {"calls": 1, "prompt_tokens": 50, "completion_tokens": 5},
                "tools": {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0},
            },
            "notes": ["repaired the plan once"],
            "replans": [{"round": 1, "reason": "more", "nodes_added": 1}],
            "nodes": [
                {"id": 1, "tool": "search", "status": "failed", "started_at": 0.5, "finished_at": 1.5,
                 "dependencies": [], "error": {"kind": "tool_error", "message": "HTTP 500", "cause": None}},
                {"id": 2, "tool": "calc", "status": "skipped", "started_at": None, "finished_at": 1.5,
                 "dependencies": [1], "error": {"kind": "dependency_failed", "message": "node 1 failed", "cause": 1}},
            ],
        }
    )  # fmt: skip
    text = render(render_summary(summary, trace_path="runs/x.jsonl"))
    assert "failed: no answer: node 1 failed" in text
    assert "wall 2.00 s · critical path 1.00 s (nodes 1 → 2)" in text
    assert "parallelism 0.50x" in text
    assert "planner 120 (2 calls) · joiner 55 (1 call)" in text
    assert "tools" not in text.split("tokens:")[1].splitlines()[0]
    assert "failure: node 1 search failed: HTTP 500" in text
    assert "failure: node 2 calc skipped: node 1 failed (caused by node 1)" in text
    assert "note: repaired the plan once" in text
    assert "replans: 1" in text
    assert "trace: runs/x.jsonl" in text


def test_long_outputs_are_cut_to_the_line() -> None:
    summary = summarize(
        {"status": "done", "answer": "ok", "wall_s": 1.0, "nodes": [
            {"id": 1, "tool": "read_file", "status": "done", "started_at": 0, "finished_at": 1, "output": "x" * 500}]}
    )  # fmt: skip
    for width in (80, 120):
        lines = render(render_summary(summary, width=width), width=width).splitlines()
        assert max(len(line.rstrip()) for line in lines if "xxx" in line) <= width


def test_the_view_works_outside_an_event_loop() -> None:
    view = RunView()
    view(NodeEvent("running", 1, "t", 0.0, 1))
    view.count_usage("tools", Usage(calls=1, prompt_tokens=1, completion_tokens=1))
    assert view.tokens["tools"] == 2


def test_the_view_keeps_secrets_off_the_screen() -> None:
    view = RunView(title="task sk-secret-123", redact=lambda text: text.replace("sk-secret-123", "[redacted]"))
    view(NodeEvent("failed", 1, "t", 0.1, 1, 0.1, NodeError("tool_error", "bad key sk-secret-123")))
    view(RunEvent("stopped", 0.2, 0, "key sk-secret-123 refused"))
    text = render(view)
    assert "sk-secret-123" not in text
    assert text.count("[redacted]") == 3
