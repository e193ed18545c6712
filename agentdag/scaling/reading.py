"""How the planner's replies read as plans, for the strategies that wrap the planner's model.

The planner sets the reading (the plan style, the tools and the task) with `reading_plans` only for the
duration of each of its model calls, so tool calls running at the same time never see it. `extract_plan`
turns a reply into its plan key, the answer that votes over plans compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from agentdag.canonical import plan_key
from agentdag.parsers import PlanReader, node_from_mapping
from agentdag.plan import Node
from agentdag.schemas import parse_refinement

__all__ = ["PlanReading", "current_plan_reading", "extract_plan", "reading_plans"]

_READING: ContextVar[PlanReading | None] = ContextVar("agentdag_plan_reading", default=None)
_SHAPELESS = PlanReader("json", {})
_REFINEMENT = re.compile(r'\s*\{\s*"(?:thought"\s*:\s*"(?:[^"\\]|\\.)*"\s*,\s*)?"(?:cancel|add)"')


@dataclass(frozen=True, slots=True)
class PlanReading:
    """How the planner's replies read as plans.

    Attributes:
        reader: the plan style and the tools plans may call.
        task: the task being planned, in words.
        known: ids of the nodes that exist already (earlier rounds), which a plan may reference.
    """

    reader: PlanReader
    task: str
    known: frozenset[int] = frozenset()


def current_plan_reading() -> PlanReading | None:
    """The planner's plan reading, inside one of its model calls; None elsewhere."""
    return _READING.get()


@contextmanager
def reading_plans(reading: PlanReading) -> Iterator[None]:
    """Inside the block (one planner call), strategies read replies as plans with `reading`."""
    token = _READING.set(reading)
    try:
        yield
    finally:
        _READING.reset(token)


def extract_plan(text: str) -> str | None:
    """The plan key of a reply that holds a plan (see `agentdag.canonical.plan_key`), or None.

    Inside a planner call the planner's reader parses the reply; elsewhere only a JSON plan (an object with
    a `nodes` list) is recognised. A refinement (`{"cancel": [...], "add": [...]}`) is keyed by the nodes it
    adds and the ids it cancels.
    """
    reading = _READING.get()
    refinement = parse_refinement(text) if _REFINEMENT.match(text) else None
    if refinement is not None:
        added = [node for node in map(_node, refinement.add) if node is not None]
        return f"refine:{plan_key(added)}:{sorted(set(refinement.cancel))}"
    reader = reading.reader if reading is not None else _SHAPELESS
    known = reading.known if reading is not None else frozenset()
    nodes = reader.read(text, known=known).nodes
    return f"plan:{plan_key(nodes, known)}" if nodes else None


def _node(raw: object) -> Node | None:
    node = node_from_mapping(raw, 0)
    return node if isinstance(node, Node) else None
