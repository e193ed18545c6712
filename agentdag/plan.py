"""Plans: a DAG of nodes (tool calls), their validation, and their graph view.

Validation reports every problem at once, each naming its node, so a planner can hand the whole list
back to the model that wrote the plan.
"""

from __future__ import annotations

import difflib
import functools
import weakref
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import networkx as nx
from pydantic import BaseModel, ConfigDict, Field

from agentdag.errors import InvalidReferenceError, PlanError
from agentdag.references import Reference, find_references, is_whole_reference
from agentdag.toolsets.base import Tool

__all__ = [
    "Node",
    "Plan",
    "PlanProblem",
    "ProblemKind",
    "check_node",
    "create_graph",
    "dependencies_of",
    "validate_plan",
]


class Node(BaseModel):
    """One tool call in a plan.

    Attributes:
        id: unique id; references and `depends_on` name nodes by it. Ids stay global across replans.
        tool: name of the tool to call.
        arguments: JSON arguments; values may hold references to earlier nodes' outputs.
        depends_on: nodes that must finish first (references add their nodes implicitly).
        thought: the planner's reason for this node, kept for traces.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0)
    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    depends_on: tuple[int, ...] = ()
    thought: str | None = None


class Plan(BaseModel):
    """A DAG of nodes, listed so that every node comes after the nodes it depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: tuple[Node, ...]

    def validate_against(self, tools: Mapping[str, Tool], *, completed: Collection[int] = ()) -> None:
        """Raise `PlanError` listing every problem, or return when the plan is valid."""
        problems = validate_plan(self.nodes, tools, completed=completed)
        if problems:
            raise PlanError(list(problems))


ProblemKind = Literal[
    "malformed",
    "duplicate_id",
    "unknown_tool",
    "invalid_arguments",
    "invalid_reference",
    "missing_reference",
    "forward_reference",
    "self_dependency",
    "cycle",
]


@dataclass(frozen=True, slots=True)
class PlanProblem:
    """One problem in a plan, naming its node; `node_id` is None for a problem of the whole plan.

    `key` is where in the node the problem lies, as a path of keys (`("depends_on",)`,
    `("arguments", "items")`), so that a task file's error can name the line; empty for the whole node.
    """

    node_id: int | None
    kind: ProblemKind
    message: str
    key: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return self.message if self.node_id is None else f"node {self.node_id}: {self.message}"


def dependencies_of(node: Node, known: Collection[int]) -> frozenset[int]:
    """The nodes `node` waits for: its `depends_on` plus every node its arguments reference.

    `known` holds the ids that exist, which decides whether a bare `$N` in text is a reference.
    """
    referenced = {
        reference.node_id
        for reference in find_references(node.arguments)
        if reference.explicit or reference.node_id in known
    }
    return frozenset(node.depends_on).union(referenced)


def check_node(
    node: Node,
    tools: Mapping[str, Tool],
    earlier: Collection[int],
    *,
    later: Container[int] = (),
) -> list[PlanProblem]:
    """Problems of one node, given the ids that come before it (`earlier`) and after it (`later`).

    The streaming planner checks each node with this as it arrives; `validate_plan` checks whole plans.
    """
    problems: list[PlanProblem] = []
    problem = functools.partial(PlanProblem, node.id)
    tool = tools.get(node.tool)
    if tool is None:
        problems.append(problem("unknown_tool", _unknown_tool_message(node.tool, tools), ("tool",)))
    targets: list[tuple[int, str, tuple[str | int, ...]]] = [
        (target, "depends_on", ("depends_on",)) for target in node.depends_on
    ]
    for name, value in node.arguments.items():
        try:
            references = list(find_references(value))
        except InvalidReferenceError as error:
            problems.append(problem("invalid_reference", str(error), ("arguments", name)))
            continue
        # A bare `$N` counts when node N exists anywhere in the plan, this node included.
        targets += [
            (reference.node_id, _describe(reference), ("arguments", name))
            for reference in references
            if _counts(reference, earlier) or reference.node_id == node.id or reference.node_id in later
        ]
    for target, how, key in targets:
        if target == node.id:
            problems.append(problem("self_dependency", f"{how} names the node itself", key))
        elif target in later:
            message = f"{how} names node {target}, which comes later in the plan"
            problems.append(problem("forward_reference", message, key))
        elif target not in earlier:
            problems.append(problem("missing_reference", f"{how} names node {target}, which does not exist", key))
    if tool is not None:
        problems.extend(
            problem("invalid_arguments", message, ("arguments", *path))
            for message, path in _argument_problems(node, tool, earlier)
        )
    return problems


def validate_plan(
    nodes: Sequence[Node],
    tools: Mapping[str, Tool],
    *,
    completed: Collection[int] = (),
) -> list[PlanProblem]:
    """Every problem of a plan: duplicate ids, unknown tools, bad arguments, bad references, cycles.

    Args:
        nodes: the plan's nodes in plan order.
        tools: the tools the plan may use, by name.
        completed: ids of nodes from earlier rounds that the plan may reference.
    """
    problems: list[PlanProblem] = []
    seen: set[int] = set(completed)
    positions = {node.id: index for index, node in reversed(list(enumerate(nodes)))}
    for index, node in enumerate(nodes):
        if node.id in seen:
            where = "an earlier round" if node.id in completed else "an earlier node"
            problems.append(PlanProblem(node.id, "duplicate_id", f"id {node.id} is already used by {where}", ("id",)))
            continue
        problems.extend(check_node(node, tools, seen, later=_Later(positions, index)))
        seen.add(node.id)
    # Dependencies that all point backwards cannot form a cycle; only search when one points forward.
    if any(problem.kind == "forward_reference" for problem in problems):
        problems.extend(_cycle_problems(nodes, completed))
    return problems


@dataclass(frozen=True, slots=True)
class _Later(Container[int]):
    """The ids that first appear after position `index` in the plan."""

    positions: Mapping[int, int]
    index: int

    def __contains__(self, node_id: object) -> bool:
        position: int = self.positions.get(node_id, -1)  # type: ignore[call-overload]
        return position > self.index


def create_graph(nodes: Iterable[Node], known: Collection[int] = ()) -> nx.DiGraph[int]:
    """A directed graph with an edge from each dependency to its dependent; nodes carry `node` data."""
    listed = list(nodes)
    ids = set(known).union(node.id for node in listed)
    graph: nx.DiGraph[int] = nx.DiGraph()
    for node in listed:
        graph.add_node(node.id, node=node)
    for node in listed:
        for target in dependencies_of(node, ids):
            if target in graph:
                graph.add_edge(target, node.id)
    return graph


def _cycle_problems(nodes: Sequence[Node], completed: Collection[int]) -> list[PlanProblem]:
    try:
        graph = create_graph(nodes, completed)
    except InvalidReferenceError:
        graph = nx.DiGraph()
        graph.add_nodes_from(node.id for node in nodes)
        for node in nodes:
            graph.add_edges_from((target, node.id) for target in node.depends_on if target in graph)
    problems: list[PlanProblem] = []
    for cycle in nx.simple_cycles(graph):
        if len(cycle) < 2:  # self loops are reported as self_dependency
            continue
        start = min(cycle)
        turn = cycle.index(start)
        ordered = cycle[turn:] + cycle[:turn]
        loop = " -> ".join(str(item) for item in [*ordered, start])
        problems.append(PlanProblem(start, "cycle", f"dependency cycle {loop}"))
        if len(problems) >= 10:
            break
    return problems


def _counts(reference: Reference, earlier: Collection[int]) -> bool:
    return reference.explicit or reference.node_id in earlier


def _describe(reference: Reference) -> str:
    if not reference.path:
        return f"reference ${reference.node_id}"
    return f"reference ${{{reference.node_id}.{'.'.join(map(str, reference.path))}}}"


def _unknown_tool_message(name: str, tools: Mapping[str, Tool]) -> str:
    close = difflib.get_close_matches(name, list(tools), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(sorted(tools)) or "none"
    return f"unknown tool {name!r}{hint} (tools: {known})"


_VALIDATORS: weakref.WeakKeyDictionary[Tool, jsonschema.protocols.Validator] = weakref.WeakKeyDictionary()


def _validator(tool: Tool) -> jsonschema.protocols.Validator:
    try:
        return _VALIDATORS[tool]
    except KeyError:
        validator = _VALIDATORS[tool] = _create_validator(tool.input_schema)
        return validator


def _create_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return validator_class(schema)


def _argument_problems(node: Node, tool: Tool, earlier: Collection[int]) -> list[tuple[str, tuple[str | int, ...]]]:
    """Each schema violation of the node's arguments, with the path of the value that violates it."""
    validator = _validator(tool)
    messages: list[tuple[str, tuple[str | int, ...]]] = []
    for error in validator.iter_errors(node.arguments):
        if _under_reference(node.arguments, list(error.absolute_path), earlier):
            continue  # the value arrives from another node; the tool checks it at call time
        where = ".".join(str(part) for part in error.absolute_path) or "arguments"
        messages.append((f"{where}: {error.message} (tool {tool.name!r})", tuple(error.absolute_path)))
    return messages


def _under_reference(arguments: object, path: list[str | int], earlier: Collection[int]) -> bool:
    """Whether the value at `path`, or a container on the way to it, is a reference that counts."""
    current = arguments
    for key in path:
        if isinstance(current, Mapping):
            current = current.get(str(key))
        elif isinstance(current, list) and isinstance(key, int) and 0 <= key < len(current):
            current = current[key]
        else:
            return False
        if _is_reference(current, earlier):
            return True
    return False


def _is_reference(value: object, earlier: Collection[int]) -> bool:
    if isinstance(value, Mapping):
        return "$ref" in value
    return isinstance(value, str) and is_whole_reference(value, earlier)
