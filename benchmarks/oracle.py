"""Oracle models: scripted models that play a benchmark's planner, joiner or ReAct steps from a script.

A script (`OracleScript`) says which calls can be written at a point of the run, given what the run has
observed so far. The DAG oracle reads the observations from the prompts the agent sends (the replan
prompt's and the joiner's `[id] tool(args) -> output` lines) and writes each round's plan from them in
LLMCompiler's numbered format; as the joiner, it asks to replan while the script has calls left, else it
finishes with the gold answer. The ReAct oracle reads the observations of its own conversation and makes
the script's next call, one per step. Both therefore depend on what the agent passes back to them: a lost or
wrong observation shows up as a missing or different call.

`FixedPlan` is the script of a plan written in full before anything runs (SWE's gold fix, ParallelQA,
Movie). Generation time is simulated like a hosted API (`GenerationTiming`), usage is counted with
`estimate_tokens` (characters ÷ 4), and every reply is logged (`served`) so a harness can compute the
time the calls had to take.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from agentdag.messages import Completion, FinishReason, ModelRequest, ModelResponse, Usage
from agentdag.models import Model
from agentdag.parsers import LLMCompilerPlanParser
from agentdag.plan import Node
from agentdag.templates import load_template
from agentdag.tokens import CHARS_PER_TOKEN, estimate_prompt_tokens, estimate_tokens
from agentdag.toolsets import JsonValue, Tool

from .oracle_prompts import Observation, PromptReader, read_react_observations

__all__ = [
    "PROMPT_TOKEN_S",
    "Call",
    "FixedPlan",
    "GenerationTiming",
    "Observation",
    "OracleDagModel",
    "OracleReActModel",
    "OracleScript",
    "Served",
    "answer_text",
    "format_plan",
    "parse_plan_calls",
]

PROMPT_TOKEN_S = 0.0001
"""Prefill time per prompt token, 0.1 ms (10,000 tokens/s).

From Anthropic's published time to first token of Claude 3.5 Sonnet without prompt caching: 11.5 s for a
100,000-token prompt and 1.6 s for a 10,000-token one (prompt caching announcement, August 2024), that is
0.11 to 0.13 ms per prompt token once a 0.3 s fixed latency is taken off. It is rounded down: the cost
falls more on ReAct's growing prompts than on the DAG agent's, so a lower rate does not flatter the DAG.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationTiming:
    """Simulated generation time of one model call: prefill, then the first token, then one token at a time.

    A reply of n tokens to a prompt of p tokens takes `first_token_s + p * prompt_token_s + (n - 1) *
    token_s`. The defaults resemble a hosted API (0.3 s to the first token, 50 tokens/s, 10,000 prompt
    tokens/s; see `PROMPT_TOKEN_S`). Tokens are estimated as characters ÷ 4.
    """

    first_token_s: float = 0.3
    token_s: float = 0.02
    prompt_token_s: float = PROMPT_TOKEN_S

    def first_token_after(self, prompt_tokens: int) -> float:
        """Seconds from the request to the first token of the reply."""
        return self.first_token_s + prompt_tokens * self.prompt_token_s

    def reply_s(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Seconds from the request to the last token of the reply."""
        return self.first_token_after(prompt_tokens) + max(completion_tokens - 1, 0) * self.token_s


Role = Literal["plan", "join", "step"]
"""Whom a scripted reply answered: the DAG agent's planner or joiner, or a ReAct step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """One reply a scripted model gave: to a planner ("plan"), a joiner ("join") or a ReAct step ("step")."""

    role: Role
    prompt_tokens: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A call a script plans: a tool and its arguments (`$N` references number the calls of a fixed plan)."""

    tool: str
    arguments: Mapping[str, JsonValue]


class OracleScript(ABC):
    """What an oracle may call, given what the run has observed."""

    @abstractmethod
    def next_calls(self, observed: Sequence[Observation]) -> list[Call]:
        """Every call that can be written from the question and `observed` and was not made yet, in order."""

    def plan_text(self, observed: Sequence[Observation], *, first_id: int) -> str:
        """The plan of the next round, numbered from `first_id`."""
        return format_plan(self.next_calls(observed), first_id=first_id)

    def pending(self, observed: Sequence[Observation]) -> bool:
        """Whether another round has calls to make."""
        return bool(self.next_calls(observed))


class FixedPlan(OracleScript):
    """A plan written in full before anything runs: one round for the DAG agent, its calls in order for ReAct.

    Args:
        text: the plan in LLMCompiler's format, numbered from 1 (what the DAG oracle replies).
        calls: the plan's nodes (what the ReAct oracle calls, in order; `$N` references resolve the same way
            there, since ReAct numbers its calls 1, 2, ...).
    """

    def __init__(self, *, text: str = "", calls: Sequence[Node] = ()) -> None:
        self.text = text
        self.calls = [Call(tool=node.tool, arguments=node.arguments) for node in calls]

    def next_calls(self, observed: Sequence[Observation]) -> list[Call]:
        """The calls after the ones observed (the plan is followed in order)."""
        return self.calls[len(observed) :]

    def plan_text(self, observed: Sequence[Observation], *, first_id: int) -> str:
        """The whole plan, as written."""
        del observed, first_id
        return self.text

    def pending(self, observed: Sequence[Observation]) -> bool:
        """Nothing: the plan is one round."""
        del observed
        return False


def format_plan(calls: Sequence[Call], *, first_id: int) -> str:
    """Calls as a plan in LLMCompiler's numbered format, arguments as keyword literals, then `join()`."""
    lines = [
        f"{first_id + index}. {call.tool}({', '.join(f'{key}={value!r}' for key, value in call.arguments.items())})"
        for index, call in enumerate(calls)
    ]
    lines.append(f"{first_id + len(calls)}. join()<END_OF_PLAN>")
    return "\n".join(lines)


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


# -- the models -------------------------------------------------------------------------------------


class _ScriptedModel(Model):
    """Shared by the oracles: simulated generation time, usage estimates, and the log of replies."""

    def __init__(self, *, script: OracleScript, answer: JsonValue, timing: GenerationTiming, name: str) -> None:
        self.script = script
        self.answer = answer
        self.timing = timing
        self.name = name
        self.served: list[Served] = []

    def _reply(self, request: ModelRequest) -> tuple[Role, str]:
        raise NotImplementedError

    def _serve(self, request: ModelRequest) -> tuple[Role, int, str, FinishReason]:
        """The scripted reply, cut as a server would cut it (at a stop sequence, at `max_tokens`)."""
        role, text = self._reply(request)
        cuts = [text.find(stop) for stop in request.settings.stop if stop and stop in text]
        text = text[: min(cuts)] if cuts else text
        finish: FinishReason = "stop"
        limit = request.settings.max_tokens
        if limit is not None and estimate_tokens(text) > limit:
            text, finish = text[: limit * CHARS_PER_TOKEN], "length"
        return role, estimate_prompt_tokens(request.messages), text, finish

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Reply after the simulated generation time of the whole reply."""
        started = time.perf_counter()
        role, prompt_tokens, text, finish = self._serve(request)
        self.served.append(Served(role=role, prompt_tokens=prompt_tokens, text=text))
        await anyio.sleep(self.timing.reply_s(prompt_tokens, estimate_tokens(text)))
        return self._respond(prompt_tokens, text, finish, started)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Yield the reply one token (four characters) at a time at the simulated pace, then the response.

        A stream closed early is logged with the part it delivered, as a server stops generating there.
        """
        started = time.perf_counter()
        role, prompt_tokens, text, finish = self._serve(request)
        sent = 0
        try:
            await anyio.sleep(self.timing.first_token_after(prompt_tokens))
            for start in range(0, len(text), CHARS_PER_TOKEN):
                if start:
                    await anyio.sleep(self.timing.token_s)
                sent = min(start + CHARS_PER_TOKEN, len(text))
                yield text[start:sent]
            yield self._respond(prompt_tokens, text, finish, started)
        finally:
            self.served.append(Served(role=role, prompt_tokens=prompt_tokens, text=text[:sent]))

    def _respond(self, prompt_tokens: int, text: str, finish: FinishReason, started: float) -> ModelResponse:
        usage = Usage(
            calls=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=estimate_tokens(text),
            latency_s=time.perf_counter() - started,
        )
        completion = Completion(text=text, finish_reason=finish)
        return ModelResponse(completions=(completion,), usage=usage, model=self.name)


class OracleDagModel(_ScriptedModel):
    """Planner and joiner oracle for the DAG agent (LLMCompiler-style plans).

    A request without `settings.json_schema` is the planner's: the reply is the script's next round, written
    from the observations of the replan prompt. A request with one is the joiner's: replan while the script
    has calls left, else finish with the gold answer.

    Args:
        answer: the gold answer the joiner finishes with.
        plan_text: a fixed plan, replied in round 0 (the same as `script=FixedPlan(text=plan_text)`).
        script: what to plan from the observations.
        timing: simulated generation time.
        name: the model name in responses.
        template: the planner template whose prompts the agent sends (to find the observations in them).

    Raises:
        ValueError: neither or both of `plan_text` and `script`.
    """

    def __init__(
        self,
        *,
        answer: JsonValue,
        plan_text: str | None = None,
        script: OracleScript | None = None,
        timing: GenerationTiming | None = None,
        name: str = "oracle",
        template: str = "llmcompiler",
    ) -> None:
        if (plan_text is None) == (script is None):
            raise ValueError("give the oracle either plan_text or script")
        chosen = script if script is not None else FixedPlan(text=plan_text or "")
        super().__init__(script=chosen, answer=answer, timing=timing or GenerationTiming(), name=name)
        self._prompts = PromptReader(load_template(template))

    def _reply(self, request: ModelRequest) -> tuple[Role, str]:
        if request.settings.json_schema is None:
            observed, first_id = self._prompts.planning(request.messages)
            return "plan", self.script.plan_text(observed, first_id=first_id)
        reply: dict[str, Any]
        if self.script.pending(self._prompts.joining(request.messages)):
            reply = {"thought": "Some results name what to look up next.", "action": "replan", "answer": ""}
            reply["reason"] = "the results so far name what to look up next"
        else:
            reply = {"thought": "The observations answer the question.", "action": "finish", "reason": ""}
            reply["answer"] = answer_text(self.answer)
        return "join", json.dumps(reply, ensure_ascii=False)


class OracleReActModel(_ScriptedModel):
    """ReAct oracle: the script's next call each step, written from the observations so far; then the answer.

    The oracle keeps no state between requests: each step is decided from the conversation alone, so it
    replays correctly whatever the agent does with its replies.

    Args:
        answer: the gold answer.
        calls: a fixed list of calls, made in order (the same as `script=FixedPlan(calls=calls)`).
        script: what to call from the observations.
        timing: simulated generation time.
        name: the model name in responses.

    Raises:
        ValueError: neither or both of `calls` and `script`.
    """

    def __init__(
        self,
        *,
        answer: JsonValue,
        calls: Sequence[Node] | None = None,
        script: OracleScript | None = None,
        timing: GenerationTiming | None = None,
        name: str = "oracle",
    ) -> None:
        if (calls is None) == (script is None):
            raise ValueError("give the oracle either calls or script")
        chosen = script if script is not None else FixedPlan(calls=calls or ())
        super().__init__(script=chosen, answer=answer, timing=timing or GenerationTiming(), name=name)

    def _reply(self, request: ModelRequest) -> tuple[Role, str]:
        observed = read_react_observations(request.messages)
        upcoming = self.script.next_calls(observed)
        reply: dict[str, Any]
        if upcoming:
            call = upcoming[0]
            reply = {"thought": f"Step {len(observed) + 1}.", "action": "call", "tool": call.tool}
            reply["arguments"] = dict(call.arguments)
        else:
            reply = {"thought": "The observations answer the question.", "action": "finish"}
            reply["answer"] = answer_text(self.answer)
        return "step", json.dumps(reply, ensure_ascii=False)
