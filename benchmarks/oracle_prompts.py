"""What the oracles read: the observations in the prompts the agents send them.

The DAG agent lists its calls as `[id] tool(arguments) -> output` in the replan and joiner prompts (found
with the planner template's own wording); the ReAct agent answers each call step with `Observation (call
N): output`. The oracles write their next calls from what these readers find, so an observation the agent
loses or garbles changes what the oracle calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from agentdag.messages import Message
from agentdag.templates import PlannerTemplate
from agentdag.toolsets import JsonValue

__all__ = ["Observation", "PromptReader", "read_observations", "read_react_observations"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One call the run made, as its prompt shows it: the tool, the arguments, the output (None: it failed)."""

    tool: str
    arguments: Mapping[str, JsonValue]
    output: str | None


_HEADER = re.compile(r"^\[(\d+)\] ([^\s(]+)\(", re.MULTILINE)
_ARROW = ") -> "
_NOT_DONE = re.compile(r"(FAILED|SKIPPED|CANCELLED|QUEUED|RUNNING): ")
_REACT_OBSERVATION = re.compile(r"Observation \(call \d+\): (.*)", re.DOTALL)


def read_observations(block: str) -> list[Observation]:
    """The calls in a block of `[id] tool(arguments) -> output` lines, as the DAG agent's prompts list them.

    An output runs to the next such line (HotpotQA outputs span lines); one that says FAILED, SKIPPED or
    CANCELLED is None.
    """
    found: list[tuple[int, int, str, Mapping[str, JsonValue]]] = []  # header start, output start, tool, arguments
    for match in _HEADER.finditer(block):
        try:
            arguments, end = json.JSONDecoder().raw_decode(block, match.end())
        except ValueError:
            continue
        if isinstance(arguments, dict) and block.startswith(_ARROW, end):
            found.append((match.start(), end + len(_ARROW), match.group(2), arguments))
    observations = []
    for index, (_, start, tool, arguments) in enumerate(found):
        stop = found[index + 1][0] if index + 1 < len(found) else len(block)
        output = block[start:stop].removesuffix("\n")
        observations.append(
            Observation(tool=tool, arguments=arguments, output=None if _NOT_DONE.match(output) else output)
        )
    return observations


def read_react_observations(messages: Sequence[Message]) -> list[Observation]:
    """The calls of a ReAct conversation: each call step with the observation that answered it."""
    observations = []
    for step, answer in pairwise(messages):
        if step.role != "assistant" or answer.role != "user":
            continue
        observed = _REACT_OBSERVATION.fullmatch(answer.content)
        try:
            reply = json.loads(step.content)
        except ValueError:
            continue
        if observed is None or not isinstance(reply, dict) or reply.get("action") != "call":
            continue
        output = observed.group(1)
        observations.append(
            Observation(
                tool=str(reply.get("tool")),
                arguments=reply.get("arguments") or {},
                output=None if output.startswith("error (") else output,
            )
        )
    return observations


class PromptReader:
    """Finds the filled parts of a planner template's prompts (observations, first ids) in the messages."""

    def __init__(self, template: PlannerTemplate) -> None:
        self.replan = _pattern(template.replan)
        self.joiner = _pattern(template.joiner)
        self.system = _pattern(template.system)

    def planning(self, messages: Sequence[Message]) -> tuple[list[Observation], int]:
        """What a planner request has observed (nothing in round 0) and the id its plan must start from."""
        for message in reversed(messages):
            found = self.replan.search(message.content) if message.role == "user" else None
            if found is not None:
                return read_observations(found.group("observations")), int(found.group("first_id"))
        system = next((self.system.search(item.content) for item in messages if item.role == "system"), None)
        return [], int(system.group("first_id")) if system is not None else 1

    def joining(self, messages: Sequence[Message]) -> list[Observation]:
        """What a joiner request has observed."""
        found = self.joiner.search(messages[-1].content) if messages else None
        return read_observations(found.group("observations")) if found is not None else []


def _pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching the template once filled: observations greedy, the rest minimal."""
    parts = re.split(r"\$\{(\w+)\}", template.strip())
    regex, seen = "", set()
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex += re.escape(part)
        elif part in seen:
            regex += f"(?P={part})"
        else:
            seen.add(part)
            regex += {"first_id": rf"(?P<{part}>\d+)", "observations": rf"(?P<{part}>.*)"}.get(part, f"(?P<{part}>.*?)")
    return re.compile(regex, re.DOTALL)
