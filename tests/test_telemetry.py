from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context

from agentdag.agent import Agent
from agentdag.cli import main
from agentdag.config import PlannerConfig
from agentdag.errors import ToolError
from agentdag.models.function import FunctionModel
from agentdag.plan import Node
from agentdag.telemetry import OtelRecorder, otel_enabled
from agentdag.toolsets.function import tool

EXAMPLES = Path(__file__).parent.parent / "examples"


class RecordedSpan(trace.NonRecordingSpan):
    """A span that keeps what it was told (the API package alone has no recording span)."""

    def __init__(self, name: str, parent: trace.Span | None, attributes: Mapping[str, Any]) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.name, self.parent = name, parent
        self.attributes: dict[str, Any] = dict(attributes)
        self.events: list[str] = []
        self.status: trace.Status | None = None
        self.ended = False

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self.events.append(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        self.status = status

    def end(self, end_time: int | None = None) -> None:
        self.ended = True


class RecordingTracer(trace.Tracer):
    def __init__(self) -> None:
        self.spans: list[RecordedSpan] = []

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context) if context is not None else None
        span = RecordedSpan(name, parent, attributes or {})
        self.spans.append(span)
        return span

    @contextmanager
    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        yield self.start_span(name)


class RecordingProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.tracer = RecordingTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


def test_otel_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTDAG_OTEL", raising=False)
    assert not otel_enabled()
    assert otel_enabled(True)
    monkeypatch.setenv("AGENTDAG_OTEL", "1")
    assert otel_enabled()
    monkeypatch.setenv("AGENTDAG_OTEL", "0")
    assert not otel_enabled()


@pytest.mark.asyncio
async def test_a_run_is_an_invoke_agent_span_with_an_execute_tool_span_per_node() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    @tool
    def fail() -> int:
        """Fail."""
        raise ToolError("nope")

    plan = (
        '{"thought": "", "nodes": [{"id": 1, "tool": "add", "arguments": {"a": 1, "b": 2}, "depends_on": []},'
        ' {"id": 2, "tool": "fail", "arguments": {}, "depends_on": []}]}'
    )
    joiner = '{"thought": "", "answer": "3", "action": "finish", "reason": ""}'
    model = FunctionModel(lambda request: plan if "planner" in request.messages[0].content else joiner)
    provider = RecordingProvider()
    recorder = OtelRecorder(model="scripted", tracer_provider=provider)
    agent = Agent(tools=[add, fail], model=model, planner=PlannerConfig(max_replans=0), on_event=[recorder])
    result = await agent.run("add 1 and 2")
    recorder.finish(result)
    spans = provider.tracer.spans
    run, *nodes = spans
    assert run.name == "invoke_agent agentdag"
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.request.model"] == "scripted"
    total = result.total_usage
    assert total.prompt_tokens > 0
    assert run.attributes["gen_ai.usage.input_tokens"] == total.prompt_tokens
    assert run.attributes["gen_ai.usage.output_tokens"] == total.completion_tokens
    assert "agentdag.planning" in run.events and "agentdag.joining" in run.events
    assert sorted(span.name for span in nodes) == ["execute_tool add", "execute_tool fail"]
    for span in nodes:
        assert span.parent is run
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.name"] in ("add", "fail")
        assert span.ended
    failed = next(span for span in nodes if span.attributes["gen_ai.tool.name"] == "fail")
    assert failed.status is not None and failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes["error.type"] == "tool_error"
    assert run.ended


def test_a_run_that_never_finished_still_ends_its_spans() -> None:
    provider = RecordingProvider()
    recorder = OtelRecorder(tracer_provider=provider)
    from agentdag.events import NodeEvent

    recorder(NodeEvent("running", 1, "slow", 0.0, 1))
    recorder.finish(None, error="interrupted")
    run, node = provider.tracer.spans
    assert node.ended and run.ended
    assert run.status is not None and run.status.status_code == trace.StatusCode.ERROR


def test_the_otel_flag_runs_with_the_no_op_tracer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(EXAMPLES / "quickstart.yaml"), "--otel", "--quiet", "--no-trace"]) == 0
    monkeypatch.setenv("AGENTDAG_OTEL", "1")
    assert main(["run", str(EXAMPLES / "quickstart.yaml"), "--quiet", "--no-trace"]) == 0
    assert capsys.readouterr().out.count("43.98") == 2


@pytest.mark.skipif(importlib.util.find_spec("opentelemetry.sdk") is None, reason="opentelemetry-sdk not installed")
@pytest.mark.asyncio
async def test_spans_reach_an_sdk_exporter() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    recorder = OtelRecorder(tracer_provider=provider)
    agent = Agent(tools=[add], on_event=[recorder])
    result = await agent.run_plan([Node(id=1, tool="add", arguments={"a": 1, "b": 2})])
    recorder.finish(result)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["execute_tool add"].attributes["gen_ai.tool.name"] == "add"
    assert spans["execute_tool add"].parent.span_id == spans["invoke_agent agentdag"].context.span_id
    assert spans["invoke_agent agentdag"].attributes["gen_ai.usage.input_tokens"] == 0
