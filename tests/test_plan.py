from __future__ import annotations

import pytest

from agentdag.errors import PlanError
from agentdag.plan import Node, Plan, check_node, create_graph, dependencies_of, validate_plan
from agentdag.toolsets import ToolRegistry, tool


@tool
async def search(query: str, k: int = 3) -> list[str]:
    """Search."""
    return [query] * k


@tool
async def summarise(texts: list[str]) -> str:
    """Summarise."""
    return " ".join(texts)


TOOLS = ToolRegistry([search, summarise])


def kinds(nodes: list[Node], **options: object) -> list[tuple[int, str]]:
    return [(problem.node_id, problem.kind) for problem in validate_plan(nodes, TOOLS, **options)]  # type: ignore[arg-type]


def test_a_valid_plan_has_no_problems() -> None:
    nodes = [
        Node(id=1, tool="search", arguments={"query": "a"}),
        Node(id=2, tool="search", arguments={"query": "b", "k": 2}),
        Node(id=3, tool="summarise", arguments={"texts": {"$ref": 1}}, depends_on=(2,)),
    ]
    assert validate_plan(nodes, TOOLS) == []
    Plan(nodes=tuple(nodes)).validate_against(TOOLS)


def test_unknown_tool_names_the_node_and_suggests_a_close_name() -> None:
    problems = validate_plan([Node(id=4, tool="serch", arguments={"query": "x"})], TOOLS)
    assert [(p.node_id, p.kind) for p in problems] == [(4, "unknown_tool")]
    assert "did you mean 'search'" in str(problems[0])
    assert str(problems[0]).startswith("node 4:")


def test_arguments_that_fail_the_schema_are_reported_with_their_field() -> None:
    problems = validate_plan(
        [Node(id=1, tool="search", arguments={"k": "three", "extra": 1})],
        TOOLS,
    )
    messages = " | ".join(str(p) for p in problems)
    assert {p.kind for p in problems} == {"invalid_arguments"}
    assert "'query' is a required property" in messages
    assert "k: 'three' is not of type 'integer'" in messages
    assert "extra" in messages


def test_referenced_values_are_not_type_checked_before_they_exist() -> None:
    nodes = [
        Node(id=1, tool="search", arguments={"query": "a"}),
        Node(id=2, tool="search", arguments={"query": "$1", "k": "${1.0}"}),
        Node(id=3, tool="summarise", arguments={"texts": ["$1", {"$ref": 2, "path": "0"}]}),
    ]
    assert validate_plan(nodes, TOOLS) == []


def test_missing_and_later_references_are_different_problems() -> None:
    nodes = [
        Node(id=1, tool="search", arguments={"query": "${2}"}),
        Node(id=2, tool="search", arguments={"query": {"$ref": 7}}),
        Node(id=3, tool="search", arguments={"query": "x"}, depends_on=(9,)),
    ]
    assert kinds(nodes) == [(1, "forward_reference"), (2, "missing_reference"), (3, "missing_reference")]


def test_self_dependency_is_reported() -> None:
    nodes = [Node(id=1, tool="search", arguments={"query": "$1"}, depends_on=(1,))]
    assert kinds(nodes) == [(1, "self_dependency"), (1, "self_dependency")]


def test_cycles_are_reported_once_with_their_path() -> None:
    nodes = [
        Node(id=1, tool="search", arguments={"query": "a"}, depends_on=(3,)),
        Node(id=2, tool="search", arguments={"query": "$1"}),
        Node(id=3, tool="search", arguments={"query": "$2"}),
    ]
    problems = validate_plan(nodes, TOOLS)
    cycles = [p for p in problems if p.kind == "cycle"]
    assert len(cycles) == 1
    assert "1 -> 2 -> 3 -> 1" in cycles[0].message


def test_duplicate_ids_are_reported_against_the_plan_and_earlier_rounds() -> None:
    nodes = [
        Node(id=1, tool="search", arguments={"query": "a"}),
        Node(id=1, tool="search", arguments={"query": "b"}),
        Node(id=5, tool="search", arguments={"query": "c"}),
    ]
    assert kinds(nodes, completed={5}) == [(1, "duplicate_id"), (5, "duplicate_id")]


def test_every_problem_is_reported_at_once() -> None:
    nodes = [
        Node(id=1, tool="nope"),
        Node(id=1, tool="search", arguments={"query": "a"}),
        Node(id=2, tool="search", arguments={}),
        Node(id=3, tool="search", arguments={"query": "$3"}),
        Node(id=4, tool="search", arguments={"query": {"$ref": "x"}}),
    ]
    found = {kind for _, kind in kinds(nodes)}
    assert found == {"unknown_tool", "duplicate_id", "invalid_arguments", "self_dependency", "invalid_reference"}
    with pytest.raises(PlanError) as caught:
        Plan(nodes=tuple(nodes)).validate_against(TOOLS)
    assert len(caught.value.problems) == len(validate_plan(nodes, TOOLS))


def test_references_to_earlier_rounds_are_allowed() -> None:
    nodes = [Node(id=7, tool="summarise", arguments={"texts": {"$ref": 3}})]
    assert validate_plan(nodes, TOOLS, completed={3}) == []


def test_bare_dollar_amounts_are_text_unless_the_node_exists() -> None:
    nodes = [Node(id=1, tool="search", arguments={"query": "phones under $100"})]
    assert validate_plan(nodes, TOOLS) == []
    assert dependencies_of(nodes[0], {1}) == frozenset()
    assert dependencies_of(Node(id=2, tool="search", arguments={"query": "$1"}), {1}) == {1}


def test_check_node_works_one_node_at_a_time_for_streaming() -> None:
    first = Node(id=1, tool="search", arguments={"query": "a"})
    assert check_node(first, TOOLS, set()) == []
    second = Node(id=2, tool="summarise", arguments={"texts": {"$ref": 3}})
    assert [p.kind for p in check_node(second, TOOLS, {1})] == ["missing_reference"]


def test_graph_has_an_edge_per_dependency() -> None:
    nodes = [
        Node(id=1, tool="search", arguments={"query": "a"}),
        Node(id=2, tool="search", arguments={"query": "$1"}),
        Node(id=3, tool="summarise", arguments={"texts": ["$1", "$2"]}),
    ]
    graph = create_graph(nodes)
    assert sorted(graph.edges) == [(1, 2), (1, 3), (2, 3)]
    assert graph.nodes[3]["node"] is nodes[2]


def test_node_model_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        Node.model_validate({"id": 1, "tool": "search", "args": {}})
