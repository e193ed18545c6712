"""Scripted model replies for planner-loop tests: plan nodes, plans, and the joiner's decisions."""

from __future__ import annotations

import json
from typing import Any

from agentdag.messages import ModelRequest
from agentdag.schemas import JOINER_SCHEMA


def node(node_id: int, tool_name: str, depends_on: tuple[int, ...] = (), **arguments: Any) -> dict[str, Any]:
    """One JSON plan node."""
    return {"id": node_id, "tool": tool_name, "arguments": arguments, "depends_on": list(depends_on)}


def plan(*nodes: dict[str, Any], thought: str = "t") -> str:
    """A JSON plan of `nodes`."""
    return json.dumps({"thought": thought, "nodes": list(nodes)})


def finish(answer: str) -> str:
    """The joiner finishing with `answer`."""
    return json.dumps({"thought": "done", "answer": answer, "action": "finish", "reason": ""})


def replan(reason: str) -> str:
    """The joiner asking for a new plan."""
    return json.dumps({"thought": "more", "answer": "so far", "action": "replan", "reason": reason})


def is_joiner(request: ModelRequest) -> bool:
    """Whether a request is the joiner's (it carries the decision schema)."""
    return request.settings.json_schema is JOINER_SCHEMA
