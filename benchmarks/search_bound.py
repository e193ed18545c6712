"""The physical limit of a search case: the least wall time its model calls and tool calls allow.

Computed from what the case did under the simulated cost model, with every overhead of orchestration
(parsing, dispatch, scheduling, event handling, timer overshoot) taken as zero:

* **DAG agent**, per planning round: the plan streams from the oracle, `first_token_after(prompt tokens)`
  to its first token, then `token_s` per token (four characters). Each node of the plan can start once the
  line that writes it is complete in the stream and the nodes it depends on have ended; it takes its tool's
  seeded simulated latency. The round ends when the plan has streamed and its last tool has ended; then the
  joiner's call(s) take their generation time, and the next round's plan starts.
* **ReAct agent**: strictly sequential, so the sum of its steps' generation times and its tools' latencies.

`efficiency` = lower bound / measured wall time: 1 would be orchestration at no cost at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from agentdag.records import NodeRecord
from agentdag.tokens import CHARS_PER_TOKEN, estimate_tokens

from .oracle import GenerationTiming, Served

__all__ = ["Bound", "RoundBound", "create_dag_bound", "create_react_bound"]

_ACTION = re.compile(r"^\s*(\d+)\.\s+(?!join\()", re.MULTILINE)  # an action line, not the closing join()

Delay = Callable[[NodeRecord], float]
"""The simulated latency of the call a node made."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundBound:
    """One planning round of the DAG agent at its physical limit.

    Attributes:
        prompt_tokens: the planner prompt's tokens.
        plan_tokens: the plan's tokens.
        plan_s: the plan's generation time (prefill, first token, every token).
        tools_s: how long the round's tools ran on after the plan's last token (their critical path, less
            what overlapped the stream).
        join_s: the joiner call(s) after the round.
    """

    prompt_tokens: int
    plan_tokens: int
    plan_s: float
    tools_s: float
    join_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound:
    """The least wall time a case allows: model time plus the tool time that no model time hides.

    Attributes:
        lower_bound_s: the bound.
        model_s: generation time on the critical path (all of it: the model calls are sequential).
        tools_s: tool time on the critical path that no generation overlaps.
        rounds: the DAG agent's rounds (empty for ReAct).
    """

    lower_bound_s: float
    model_s: float
    tools_s: float
    rounds: tuple[RoundBound, ...] = field(default=())


def create_dag_bound(
    served: Sequence[Served], records: Mapping[int, NodeRecord], timing: GenerationTiming, delay: Delay
) -> Bound:
    """The DAG agent's bound from the replies its oracle served and the nodes that ran (see the module)."""
    clock = 0.0
    ends: dict[int, float] = {}
    rounds: list[RoundBound] = []
    for index, reply in enumerate(served):
        if reply.role != "plan":
            continue
        plan_s = timing.reply_s(reply.prompt_tokens, estimate_tokens(reply.text))
        streamed = clock + plan_s
        finished = streamed
        for node_id, ready in _written_at(reply.text, timing.first_token_after(reply.prompt_tokens), timing.token_s):
            record = records.get(node_id)
            if record is None or record.started_at is None:
                continue  # not run: a reused repeat, or a node that was refused
            start = max([clock + ready, *(ends[item] for item in record.dependencies if item in ends)])
            ends[node_id] = start + delay(record)
            finished = max(finished, ends[node_id])
        join_s = 0.0
        for later in served[index + 1 :]:
            if later.role != "join":
                break
            join_s += timing.reply_s(later.prompt_tokens, estimate_tokens(later.text))
        rounds.append(
            RoundBound(
                prompt_tokens=reply.prompt_tokens,
                plan_tokens=estimate_tokens(reply.text),
                plan_s=plan_s,
                tools_s=finished - streamed,
                join_s=join_s,
            )
        )
        clock = finished + join_s
    model_s = sum(item.plan_s + item.join_s for item in rounds)
    return Bound(lower_bound_s=clock, model_s=model_s, tools_s=clock - model_s, rounds=tuple(rounds))


def _written_at(text: str, first_token_s: float, token_s: float) -> list[tuple[int, float]]:
    """Each action line's node id, and when the stream has delivered the newline that completes it."""
    written = []
    for match in _ACTION.finditer(text):
        newline = text.find("\n", match.end())
        last = newline if newline >= 0 else len(text) - 1  # the last line is read when the stream ends
        written.append((int(match.group(1)), first_token_s + (last // CHARS_PER_TOKEN) * token_s))
    return written


def create_react_bound(
    served: Sequence[Served], records: Mapping[int, NodeRecord], timing: GenerationTiming, delay: Delay
) -> Bound:
    """The ReAct agent's bound: its steps and its tools, one after another."""
    model_s = sum(timing.reply_s(reply.prompt_tokens, estimate_tokens(reply.text)) for reply in served)
    tools_s = sum(delay(record) for record in records.values() if record.started_at is not None)
    return Bound(lower_bound_s=model_s + tools_s, model_s=model_s, tools_s=tools_s)
