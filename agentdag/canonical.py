"""Canonical forms of calls and plans: when two nodes make the same call, and when two plans are the same plan.

* `call_text`: a node's call (its tool and arguments, with references written in any of their forms, `"$3"`,
  `"${3}"`, `{"$ref": 3}`, counting as one). Nodes with equal call texts make the same call; the planner
  uses it to find repeated calls.
* `plan_key`: a plan's identity without its node ids: the multiset of its calls, where a reference to
  another node of the plan stands for that node's own call (recursively) and `depends_on` for the calls it
  waits for. Two plans that make the same calls in the same order of dependencies get the same key however
  they number their nodes, spell their references or word their thoughts. Voting over plans uses it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agentdag.errors import InvalidReferenceError
from agentdag.plan import Node, dependencies_of
from agentdag.references import REF_KEY, normalize_references

__all__ = ["call_text", "plan_key"]

_BRACED = re.compile(r"\$\{(\d+)((?:\.[^}]*)?)\}")


def call_text(node: Node, known: Collection[int]) -> str:
    """The node's call as canonical JSON: its tool and its arguments with references normalised."""
    try:
        arguments = normalize_references(node.arguments, known)
    except InvalidReferenceError:
        arguments = node.arguments  # a malformed reference: compare it as written
    try:
        return _dump({"tool": node.tool, "arguments": arguments})
    except RecursionError:  # nested too deeply to compare: a call of its own
        return f"{node.tool}@{id(node)}"


def plan_key(nodes: Sequence[Node], known: Collection[int] = ()) -> str:
    """A key equal for plans that make the same calls with the same dependencies, whatever their node ids.

    Args:
        nodes: the plan.
        known: ids of nodes outside the plan that it may reference (earlier rounds); such references keep
            their id, which is global.
    """
    by_id = {node.id: node for node in nodes}
    ids = set(by_id).union(known)
    keys: dict[int, str] = {}

    def key_of(node_id: int, trail: frozenset[int]) -> str:
        if node_id not in by_id:
            return f"@{node_id}"
        if node_id in keys:
            return keys[node_id]
        if node_id in trail:
            return "@cycle"
        node = by_id[node_id]
        inner = trail | {node_id}
        try:
            arguments = normalize_references(node.arguments, ids)
            referenced = dependencies_of(node, ids) - set(node.depends_on)
        except InvalidReferenceError:
            arguments, referenced = node.arguments, frozenset()
        content = {
            "tool": node.tool,
            "arguments": _substitute(arguments, lambda target: key_of(target, inner)),
            "after": sorted(key_of(target, inner) for target in set(node.depends_on) - referenced),
        }
        keys[node_id] = _digest(_dump(content))
        return keys[node_id]

    try:
        return _digest(_dump(sorted(key_of(node.id, frozenset()) for node in nodes)))
    except RecursionError:  # arguments nested too deeply to compare: the plan is a plan of its own
        return f"@deep{id(nodes)}"


def _substitute(value: Any, key: Any) -> Any:
    """Normalised arguments with every node id in a reference replaced by `key(id)`."""
    if isinstance(value, str):
        return _BRACED.sub(lambda match: "${" + key(int(match.group(1))) + match.group(2) + "}", value)
    if isinstance(value, Mapping):
        if REF_KEY in value and isinstance(value[REF_KEY], int):
            return {**value, REF_KEY: key(value[REF_KEY])}
        return {name: _substitute(item, key) for name, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, key) for item in value]
    return value


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
