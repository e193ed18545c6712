"""Both plan parsers take any text, in any chunking, and answer with nodes and problems, never an exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agentdag.parsers import JsonPlanParser, LLMCompilerPlanParser
from agentdag.plan import Node
from agentdag.toolsets import ToolRegistry, tool


@tool
async def search(query: str, k: int = 3) -> str:
    """Search."""
    return query


TOOLS = ToolRegistry([search])


def feed_all(parser: JsonPlanParser | LLMCompilerPlanParser, text: str, cuts: list[int]) -> list[Node]:
    nodes: list[Node] = []
    position = 0
    for cut in sorted(cuts):
        nodes += parser.feed(text[position:cut])
        position = max(position, cut)
    nodes += parser.feed(text[position:])
    nodes += parser.finish()
    return nodes


def test_json_nodes_arrive_as_soon_as_each_closes() -> None:
    parser = JsonPlanParser()
    text = json.dumps(
        {"thought": "t {not} [a] node", "nodes": [{"id": 1, "tool": "search", "arguments": {"query": "}"}}]}
    )
    cut = text.index("}}") + 2
    assert [node.id for node in parser.feed(text[:cut])] == [1]
    assert parser.feed(text[cut:]) == []
    assert parser.finish() == []
    assert parser.problems == []
    assert parser.thought == "t {not} [a] node"


def test_json_plan_tolerates_dollar_dependencies_and_string_arguments() -> None:
    parser = JsonPlanParser()
    text = '{"nodes": [{"id": "2", "tool": "search", "arguments": "{\\"query\\": \\"x\\"}", "depends_on": ["$1"]}]}'
    (node,) = feed_all(parser, text, [])
    assert (node.id, node.arguments, node.depends_on) == (2, {"query": "x"}, (1,))


def test_malformed_json_entries_become_problems_naming_the_entry() -> None:
    parser = JsonPlanParser()
    nodes = feed_all(parser, '{"nodes": [{"id": 1, "tool": "search"}, {"tool": 5}, 7]}', [])
    assert [node.id for node in nodes] == [1]
    assert [problem.kind for problem in parser.problems] == ["malformed"]
    assert "tool" in parser.problems[0].message


def test_truncated_json_is_flagged_not_an_error() -> None:
    parser = JsonPlanParser()
    nodes = feed_all(parser, '{"nodes": [{"id": 1, "tool": "search", "arguments": {}}, {"id": 2, "to', [])
    assert [node.id for node in nodes] == [1]
    assert parser.truncated
    assert parser.problems == []


def test_llmcompiler_lines_keywords_thoughts_and_unknown_tools() -> None:
    parser = LLMCompilerPlanParser(TOOLS)
    text = 'Thought: go\n1. search("a", k=2)\n2. lookup("b")\n3. search(query="$1")\n4. join()\n5. search("never")'
    nodes = feed_all(parser, text, [5, 17, 30])
    assert [(node.id, node.tool, node.arguments) for node in nodes] == [
        (1, "search", {"query": "a", "k": 2}),
        (2, "lookup", {"argument_0": "b"}),
        (3, "search", {"query": "$1"}),
    ]
    assert nodes[0].thought == "go"
    assert parser.complete


def test_llmcompiler_unreadable_actions_are_problems() -> None:
    parser = LLMCompilerPlanParser(TOOLS)
    feed_all(parser, '1. search(os.system("x"))\n2. search("a", "b", "c")\n3. (1+2)\n', [])
    assert [(problem.node_id, problem.kind) for problem in parser.problems] == [
        (1, "malformed"),
        (2, "invalid_arguments"),
        (3, "malformed"),
    ]


hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet='{}[]",:0123456789 \\naeiou$.()join', max_size=300),
    st.builds(lambda body: '{"nodes": [' + body, st.text(max_size=200)),
    st.builds(lambda body: "1. search(" + body, st.text(max_size=200)),
)


@settings(max_examples=400, deadline=None)
@given(text=hostile_text, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_json_parser_never_raises(text: str, cuts: list[int]) -> None:
    parser = JsonPlanParser()
    nodes = feed_all(parser, text, cuts)
    assert all(isinstance(node, Node) for node in nodes)


@settings(max_examples=400, deadline=None)
@given(text=hostile_text, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_llmcompiler_parser_never_raises(text: str, cuts: list[int]) -> None:
    parser = LLMCompilerPlanParser(TOOLS)
    nodes = feed_all(parser, text, cuts)
    assert all(isinstance(node, Node) for node in nodes)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_any_chunking_of_a_valid_json_plan_yields_the_same_nodes(cuts: list[int]) -> None:
    text = json.dumps(
        {
            "thought": "x",
            "nodes": [
                {"id": index, "tool": "search", "arguments": {"query": f"q{{{index}}}"}} for index in range(1, 6)
            ],
        }
    )
    nodes = feed_all(JsonPlanParser(), text, cuts)
    assert [node.id for node in nodes] == [1, 2, 3, 4, 5]
