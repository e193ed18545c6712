"""Oracle models for the search benchmark: scripted models that replay a case's gold plan.

Both agents then make the same tool calls, so the benchmark measures orchestration alone. The DAG oracle
streams the whole gold plan in LLMCompiler's numbered format as the planner's reply, then answers the
joiner with the gold answer; the ReAct oracle makes one gold call per step, then gives the gold answer.
Generation time is simulated like a hosted API (a first-token latency plus a time per token), and usage is
counted with `estimate_tokens`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from agentdag.messages import Completion, ModelRequest, ModelResponse, Usage
from agentdag.models import Model
from agentdag.parsers import LLMCompilerPlanParser
from agentdag.plan import Node
from agentdag.tokens import CHARS_PER_TOKEN, estimate_prompt_tokens, estimate_tokens
from agentdag.toolsets import JsonValue, Tool

__all__ = ["GenerationTiming", "OracleDagModel", "OracleReActModel", "answer_text", "parse_plan_calls"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationTiming:
    """Simulated generation time of one model call: `first_token_s + (tokens - 1) * token_s`.

    The defaults resemble a hosted API. `prompt_token_s` adds prefill time per prompt token (0 by default).
    """

    first_token_s: float = 0.3
    token_s: float = 0.02
    prompt_token_s: float = 0.0


def parse_plan_calls(plan_text: str, tools: Mapping[str, Tool]) -> list[Node]:
    """The nodes of a plan in LLMCompiler's format, parsed exactly as the DAG agent's planner parses them.

    `$N` references stay in the arguments; run in order with ids 1..n they resolve to the same values.

    Raises:
        ValueError: the plan has problems (unreadable line, wrong number of arguments).
    """
    parser = LLMCompilerPlanParser(tools)
    nodes = [*parser.feed(plan_text), *parser.finish()]
    if parser.problems:
        raise ValueError("; ".join(str(problem) for problem in parser.problems))
    return nodes


def answer_text(answer: JsonValue) -> str:
    """The gold answer as the text a model would reply: strings as they are, anything else as JSON."""
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


class _ScriptedModel(Model):
    """Shared by the oracles: simulated generation time and usage estimates."""

    def __init__(self, *, timing: GenerationTiming, name: str) -> None:
        self.timing = timing
        self.name = name

    def _reply(self, request: ModelRequest) -> str:
        raise NotImplementedError

    def _text(self, request: ModelRequest) -> str:
        """The scripted reply, cut before the first stop sequence as a server would cut it."""
        text = self._reply(request)
        cuts = [text.find(stop) for stop in request.settings.stop if stop and stop in text]
        return text[: min(cuts)] if cuts else text

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Reply after the simulated generation time of the whole reply."""
        started = time.perf_counter()
        text = self._text(request)
        prompt_tokens = _prompt_tokens(request)
        tokens_after_first = max(estimate_tokens(text) - 1, 0)
        await anyio.sleep(self._first_token_s(prompt_tokens) + tokens_after_first * self.timing.token_s)
        return self._respond(prompt_tokens, text, started)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Yield the reply one token (four characters) at a time at the simulated pace, then the response."""
        started = time.perf_counter()
        text = self._text(request)
        prompt_tokens = _prompt_tokens(request)
        await anyio.sleep(self._first_token_s(prompt_tokens))
        for start in range(0, len(text), CHARS_PER_TOKEN):
            if start:
                await anyio.sleep(self.timing.token_s)
            yield text[start : start + CHARS_PER_TOKEN]
        yield self._respond(prompt_tokens, text, started)

    def _first_token_s(self, prompt_tokens: int) -> float:
        return self.timing.first_token_s + prompt_tokens * self.timing.prompt_token_s

    def _respond(self, prompt_tokens: int, text: str, started: float) -> ModelResponse:
        usage = Usage(
            calls=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=estimate_tokens(text),
            latency_s=time.perf_counter() - started,
        )
        return ModelResponse(completions=(Completion(text=text),), usage=usage, model=self.name)


def _prompt_tokens(request: ModelRequest) -> int:
    return estimate_prompt_tokens(request.messages)


class OracleDagModel(_ScriptedModel):
    """Planner and joiner oracle for the DAG agent.

    A request without `settings.json_schema` is the planner's: the reply is the gold plan text. A request
    with one is the joiner's: the reply finishes with the gold answer.
    """

    def __init__(
        self, *, plan_text: str, answer: JsonValue, timing: GenerationTiming | None = None, name: str = "oracle"
    ) -> None:
        super().__init__(timing=timing or GenerationTiming(), name=name)
        self.plan_text = plan_text
        self.answer = answer

    def _reply(self, request: ModelRequest) -> str:
        if request.settings.json_schema is None:
            return self.plan_text
        reply = {
            "thought": "The observations answer the question.",
            "action": "finish",
            "answer": answer_text(self.answer),
            "reason": "",
        }
        return json.dumps(reply, ensure_ascii=False)


class OracleReActModel(_ScriptedModel):
    """ReAct oracle: one gold call per step, then the gold answer.

    The step is the number of assistant turns already in the conversation, so the oracle keeps no state
    between requests and replays correctly whatever the agent does with its replies.
    """

    def __init__(
        self,
        *,
        calls: Sequence[Node],
        answer: JsonValue,
        timing: GenerationTiming | None = None,
        name: str = "oracle",
    ) -> None:
        super().__init__(timing=timing or GenerationTiming(), name=name)
        self.calls = list(calls)
        self.answer = answer

    def _reply(self, request: ModelRequest) -> str:
        step = sum(message.role == "assistant" for message in request.messages)
        reply: dict[str, Any]
        if step < len(self.calls):
            call = self.calls[step]
            reply = {"thought": f"Step {step + 1}.", "action": "call", "tool": call.tool, "arguments": call.arguments}
        else:
            reply = {"thought": "The observations answer the question.", "action": "finish"}
            reply["answer"] = answer_text(self.answer)
        return json.dumps(reply, ensure_ascii=False)
