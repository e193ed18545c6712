"""OpenTelemetry spans for a run, after the GenAI semantic conventions; off unless the user enables it.

Only `opentelemetry-api` is used (it comes with the MCP SDK): without a configured SDK the tracer is a
no-op. A run is an `invoke_agent` span; each node that starts is an `execute_tool` child span with
`gen_ai.tool.name`; the run span carries `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens`;
planner and joiner steps are span events.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agentdag.errors import AgentdagError
from agentdag.events import Event, NodeEvent
from agentdag.result import RunResult

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OTEL_VARIABLE", "OtelRecorder", "otel_enabled"]

OTEL_VARIABLE = "AGENTDAG_OTEL"
AGENT_NAME = "agentdag"


def otel_enabled(flag: bool = False) -> bool:
    """Whether to record spans: the `--otel` flag, or `AGENTDAG_OTEL` set to 1/true/yes/on."""
    return flag or os.environ.get(OTEL_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


class OtelRecorder:
    """Records a run as OpenTelemetry spans; call it with each event (it is an event sink).

    Args:
        model: the model's name, when the run has one.
        tracer_provider: where spans go (default: the global provider, a no-op unless an SDK is configured).

    Raises:
        AgentdagError: `opentelemetry-api` is not installed.
    """

    def __init__(self, *, model: str | None = None, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:  # pragma: no cover - the MCP SDK depends on it
            raise AgentdagError("--otel needs opentelemetry-api: pip install opentelemetry-api") from None
        self._trace = trace
        self._tracer = trace.get_tracer("agentdag", tracer_provider=tracer_provider)
        attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME}
        if model:
            attributes["gen_ai.request.model"] = model
        self._run = self._tracer.start_span(f"invoke_agent {AGENT_NAME}", attributes=attributes)
        self._context = trace.set_span_in_context(self._run)
        self._nodes: dict[int, Span] = {}

    def __call__(self, event: Event) -> None:
        """Open a node's span when it starts, close it when it ends; planner/joiner steps are span events."""
        if not isinstance(event, NodeEvent):
            self._run.add_event(
                f"agentdag.{event.kind}", {"agentdag.round": event.round, "agentdag.detail": event.detail}
            )
            return
        if event.kind == "running" and event.node_id not in self._nodes:
            self._nodes[event.node_id] = self._tracer.start_span(
                f"execute_tool {event.tool}",
                context=self._context,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": event.tool,
                    "gen_ai.tool.call.id": str(event.node_id),
                    "gen_ai.tool.type": "function",
                },
            )
        elif event.kind == "retrying" and event.node_id in self._nodes:
            message = event.error.message if event.error else ""
            self._nodes[event.node_id].add_event("agentdag.retrying", {"agentdag.error": message})
        elif event.kind in ("done", "failed", "cancelled"):
            span = self._nodes.pop(event.node_id, None)
            if span is None:
                return
            if event.kind != "done":
                kind = event.error.kind if event.error else event.kind
                span.set_attribute("error.type", kind)
                span.set_status(
                    self._trace.Status(self._trace.StatusCode.ERROR, event.error.message if event.error else kind)
                )
            span.end()

    def finish(self, result: RunResult | None, *, error: str | None = None) -> None:
        """End every open span and the run span, with the run's token usage and status."""
        for span in self._nodes.values():
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "the run ended first"))
            span.end()
        self._nodes.clear()
        if result is not None:
            total = result.total_usage
            self._run.set_attribute("gen_ai.usage.input_tokens", total.prompt_tokens)
            self._run.set_attribute("gen_ai.usage.output_tokens", total.completion_tokens)
            self._run.set_attribute("agentdag.nodes", len(result.records))
            error = result.error if result.status == "failed" else None
        if error is not None:
            self._run.set_attribute("error.type", "agentdag.run_failed")
            self._run.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        self._run.end()
