"""Bad input, fuzzed: every reader of outside text answers with its documented outcome and nothing else.

The contracts, one per reader (an exception outside them is a bug, and so is a hang):

* task files, `parse_task_file` and `load_task_file`: a `TaskFile`, or `TaskFileError` with one line
  that starts with the file's name. Inputs: any text, any bytes, and valid task files mutated as YAML
  (wrong types, huge numbers, deep nesting, tags, anchors and aliases, duplicate keys, NUL, long lines).
* plan parsers, `JsonPlanParser` and `LLMCompilerPlanParser` (`feed`/`finish`): never raise. Every
  node is a `Node` whose arguments JSON can encode, LLMCompiler nodes are never `join` and come only
  before the end of the plan, how the text is cut into chunks changes nothing, a prefix of a plan yields
  a prefix of its nodes, and `validate_plan` takes whatever the parsers return.
* references: `find_references`, `contains_reference`, `resolve_references` and `parse_path` raise only
  `InvalidReferenceError`; `is_whole_reference` and `rename_references` never raise.
* answers: `extract_number`, `extract_text`, `extract_boxed` and every `create_answer_rule` never raise,
  the canonical number is a fixed point, and `equivalent` is reflexive and symmetric on what `extract`
  returns; the joiner's `parse_decision` and `parse_refinement` return their reading or None.

Each property records what happened to its inputs with `hypothesis.event`; run

    .venv/bin/pytest tests/test_fuzz.py -q --hypothesis-show-statistics

to see how many inputs each property tried and how they were answered. Failures print a reproduction
blob (`print_blob`); the `@example`s pin the bugs these properties found.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from agentdag.errors import InvalidReferenceError, TaskFileError
from agentdag.parsers import END_OF_PLAN, JsonPlanParser, LLMCompilerPlanParser, PlanParser, node_from_mapping
from agentdag.plan import Node, PlanProblem, validate_plan
from agentdag.references import (
    contains_reference,
    find_references,
    is_whole_reference,
    parse_path,
    rename_references,
    resolve_references,
)
from agentdag.scaling.answers import create_answer_rule, extract_boxed, extract_number, extract_text, same_number
from agentdag.schemas import Decision, Refinement, parse_decision, parse_refinement
from agentdag.taskfile import TaskFile, load_task_file, parse_task_file
from agentdag.toolsets import ToolRegistry, tool


def fuzz(max_examples: int) -> settings:
    """Settings of one property: a fixed budget, no deadline (the machine is shared), a blob on failure."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


class Long(str):
    """A long string that prints short: the statistics print strategies, and with them every sampled value."""

    def __repr__(self) -> str:
        return f"<{len(self):,} chars: {str(self[:12])!r}…>"


BIG = Long("9" * 5_000)  # more digits than int() converts (4,300)
HUGE_FRACTION = Long("1" + "0" * 400 + "/3")  # a fraction past float's range


# -- task files -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A YAML or JSON fragment written into a document as it is."""

    text: str

    def __repr__(self) -> str:
        return f"Raw({Long(self.text)!r})" if len(self.text) > 40 else f"Raw({self.text!r})"


VALID_TASK: dict[str, Any] = {
    "task": "Add two numbers, then double the sum.",
    "tools": ["agentdag.tools.calculator:TOOLS", "llm"],
    "mcp_servers": [
        {"name": "calc", "command": "python -m agentdag.tools.calculator", "tools": ["calculate"], "prefix": True}
    ],
    "model": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
    "planner": {"style": "llmcompiler", "max_repairs": 1, "temperature": 0.5},
    "scaling": {"joiner": {"strategy": "best_of_n", "n": 3}, "tools": [{"strategy": "single"}]},
    "plan": [
        {"id": 1, "tool": "calculate", "arguments": {"expression": "1 + 2"}},
        {"id": 2, "tool": "calculate", "arguments": {"expression": "$1 * 2"}, "depends_on": [1]},
    ],
    "answer": {"sum": {"$ref": 2}, "text": "twice: ${2}"},
    "limits": {"max_concurrency": 4, "tool_concurrency": {"calculate": 2}, "timeout_s": 30},
    "allow_tools": ["calculate", "llm"],
}

YAML_FRAGMENTS = [
    "", "~", "true", "no", "0", "-1", "1.5", "1e999", "-.inf", ".nan", "0x1F", "0o17", "0b101", "1_000", "1:30",
    BIG, Long("-" + BIG), Long("0b" + "1" * 20_000), "2001-13-45", "2001-02-30 25:61:61",
    "!!int abc", Long("!!int " + BIG), "!!float abc", "!!bool maybe", "!!timestamp abc", "!!timestamp 2001-13-45",
    "!!binary '@@@'", "!!binary aGk=", "!!set abc", "!!set {a: 1}", "!!omap {a: 1}", "!!pairs [1]", "!!str {a: 1}",
    "!!map [1]", "!!seq {a: 1}", "!!null x", "!!python/object:os.system x", "!!python/name:os.system ''",
    "!custom x", "!<tag:yaml.org,2002:int> x", "&anchor 1", "*anchor", "{<<: 1}", "{<<: [1, {a: 1}]}",
    '"\\0"', '"\\x00 \\ud800 \\U0010ffff"', "'\x00'", "'\x85\u2028'", "[", "{", "]", "}", "{a: 1, a: 2}",
    "{? [a]: 1}", "[[[[[[[[[[", "|\n  block", Long("'" + "x" * 20_000 + "'"), "\t", "%YAML 1.1", "---", "...", "@x",
    "`x`", '"\\u0000"', "{task: 1}", "[{id: 1, tool: calculate}]", "{$ref: 1}",
]  # fmt: skip


def render(value: Any) -> str:
    """A value as flow-style YAML (JSON strings are YAML too); `Raw` fragments go in as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render(key)}: {render(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    return json.dumps(value)


def render_task(task: dict[str, Any]) -> str:
    """A task file with one top-level key per line, like the ones people write."""
    return "".join(f"{render(key)}: {render(value)}\n" for key, value in task.items())


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path to every value inside `value` (dict keys and list positions)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_in(item, (*prefix, index))
    return found


TASK_PATHS = paths_in(VALID_TASK)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
hostile_yaml = st.one_of(
    st.sampled_from(YAML_FRAGMENTS).map(Raw),
    json_values,
    st.text(max_size=40).map(Raw),  # unquoted text: whatever YAML makes of it
    st.tuples(st.sampled_from([2, 40, 400]), st.sampled_from(["[", "{a: "])).map(
        lambda deep: Raw(deep[1] * deep[0] + "1" + ("]" if deep[1] == "[" else "}") * deep[0])
    ),
)


def set_at(document: Any, path: tuple[Any, ...], change: Callable[[Any], Any]) -> None:
    """Replace the value at `path` with `change(value)`; a `Delete` result removes it."""
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    new = change(parent[path[-1]])
    if new is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new


DELETE = Raw("<delete>")


@st.composite
def mutated_tasks(draw: st.DrawFn) -> str:
    """A valid task file with a few YAML-shaped mutations, then perhaps one textual one."""
    document = json.loads(json.dumps(VALID_TASK))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_in(document) or [("task",)]))
        kind = draw(st.sampled_from(["replace", "delete", "wrap", "anchor", "extra key"]))
        if kind == "replace":
            new = draw(hostile_yaml)
            set_at(document, path, lambda _, new=new: new)
        elif kind == "delete":
            set_at(document, path, lambda _: DELETE)
        elif kind == "wrap":
            depth = draw(st.sampled_from([1, 3, 50, 400]))  # deeper costs PyYAML ~1 s; see the @example
            set_at(document, path, lambda old, depth=depth: Raw("[" * depth + render(old) + "]" * depth))
        elif kind == "anchor":
            set_at(document, path, lambda old: Raw("&a " + render(old)))
            other = draw(st.sampled_from(paths_in(document)))
            set_at(document, other, lambda _: Raw("*a"))
        else:
            key = draw(st.sampled_from(["task", "tools", "plan", "extra", "<<", "1", "null", "a\nb"]))
            set_at(document, path, lambda old, key=key: {key: old} if not isinstance(old, dict) else {**old, key: 1})
    text = render_task(document)
    edit = draw(st.sampled_from(["none", "insert", "cut", "duplicate line", "truncate"]))
    position = draw(st.integers(0, len(text)))
    if edit == "insert":
        insert = draw(st.sampled_from(["\x00", "\t", "\r", "\ufeff", ": ", "- ", "\n  ", "#", "\ud800"]))
        text = text[:position] + insert + text[position:]
    elif edit == "cut":
        text = text[:position] + text[position + draw(st.integers(1, 20)) :]
    elif edit == "duplicate line":
        lines = text.splitlines(keepends=True)
        line = draw(st.sampled_from(lines))
        text = line + text
    elif edit == "truncate":
        text = text[:position]
    return text


def assert_task_file_contract(text: str, source: str = "t.yaml") -> None:
    try:
        outcome: object = parse_task_file(text, source=source)
    except TaskFileError as error:
        outcome = str(error)
    if isinstance(outcome, str):
        lines = outcome.split("\n")  # one line per problem, each naming the file
        assert all(line.startswith(source) for line in lines), outcome
        assert "\r" not in outcome and len(lines) <= 11, outcome
        event(f"TaskFileError: {re.sub(r'[0-9]+', 'N', outcome.split(': ', 2)[1])[:30]}")
    else:
        assert isinstance(outcome, TaskFile)
        event("loaded")


def test_the_valid_task_file_loads() -> None:
    task = parse_task_file(render_task(VALID_TASK), source="t.yaml")
    assert task.allow_tools == ["calculate", "llm"]
    assert task.plan is not None and task.plan[1].depends_on == (1,)


@fuzz(300)
@given(text=mutated_tasks())
@example(text="task: x\nlimits: {max_concurrency: " + BIG + "}\n")  # found: int() past 4,300 digits
@example(text="task: x\nanswer: " + "[" * 3_000 + "1" + "]" * 3_000 + "\n")
@example(text="task: 2001-13-45\n")  # found: ValueError from the timestamp constructor
@example(text="task: !!bool maybe\n")  # found: KeyError
@example(text="task: !!timestamp abc\n")  # found: AttributeError
@example(text="task: !!set [a]\n")  # found: TypeError in the duplicate-key check
@example(text='task: x\n"a\\nb": 1\n')  # found: a message of two lines
def test_mutated_task_files_load_or_raise_task_file_error(text: str) -> None:
    assert_task_file_contract(text)


@fuzz(300)
@given(text=st.text(max_size=300) | st.text(alphabet="{}[]-:,&*!|>'\"#%@` \n\tab1", max_size=300))
def test_any_text_is_a_task_file_or_task_file_error(text: str) -> None:
    assert_task_file_contract(text)


@fuzz(150)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        mutated_tasks().map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]).map(
            lambda codec: render_task({**VALID_TASK, "task": "café ünïcode"}).encode(codec, "replace")
        ),
        st.tuples(st.binary(min_size=1, max_size=4), st.integers(0, 400)).map(
            lambda edit: render_task(VALID_TASK).encode()[: edit[1]] + edit[0] + render_task(VALID_TASK).encode()
        ),
    )
)
def test_any_bytes_in_a_file_load_or_raise_task_file_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "task.yaml"
        path.write_bytes(data)
        try:
            outcome: object = load_task_file(path)
        except TaskFileError as error:
            outcome = str(error)
        if isinstance(outcome, str):
            assert all(line.startswith(str(path)) for line in outcome.split("\n")), outcome
            event("TaskFileError")
        else:
            assert isinstance(outcome, TaskFile)
            event("loaded")


# -- plan parsers -----------------------------------------------------------------------------------------


@tool
async def search(query: str, k: int = 3) -> str:
    """Search."""
    return query


@tool
async def combine(items: list[str]) -> str:
    """Join texts."""
    return " ".join(items)


TOOLS = ToolRegistry([search, combine])
TOOL_NAME = re.compile(r"[A-Za-z_][\w.-]*")


def parse(parser: PlanParser, text: str, cuts: list[int]) -> tuple[list[Node], PlanParser]:
    """Feed `text` in the chunks `cuts` makes, then finish."""
    nodes: list[Node] = []
    position = 0
    for cut in sorted(set(cuts)):
        nodes += parser.feed(text[position:cut])
        position = max(position, cut)
    nodes += parser.feed(text[position:])
    nodes += parser.finish()
    return nodes, parser


def outcome(nodes: list[Node], parser: PlanParser) -> tuple[object, ...]:
    return (nodes, [str(problem) for problem in parser.problems], parser.complete, parser.truncated, parser.thought)


def assert_parser_contract(create: Callable[[], PlanParser], text: str, cuts: list[int]) -> list[Node]:
    nodes, parser = parse(create(), text, cuts)
    for node in nodes:
        assert isinstance(node, Node)
        json.dumps(node.arguments)  # JSON can carry every argument
    assert all(isinstance(problem, PlanProblem) for problem in parser.problems)
    assert outcome(nodes, parser) == outcome(*parse(create(), text, [])), "the chunking changed the result"
    assert all(isinstance(problem, PlanProblem) for problem in validate_plan(nodes, TOOLS))
    event(f"{len(nodes)} node(s), {'some' if parser.problems else 'no'} problems")
    return nodes


def json_text(value: Any) -> str:
    """Like `json.dumps`, but `Raw` fragments go in as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))}: {json_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(json_text(item) for item in value) + "]"
    return json.dumps(value)


def deep(depth: int, inner: str = '"${1}"') -> Raw:
    return Raw("[" * depth + inner + "]" * depth)


ids = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([Raw(BIG), Raw("1e400"), Raw("NaN"), "$1", "2", "\u0661", "\u00b2", True, None, 1.5]),
)
reference_texts = st.sampled_from(
    ["$1", "${1}", "${2.items.0}", Long("$" + BIG), Long("${" + BIG + "}"), "$\u00b2", "${1.\u00b2}", "$\u0663"]
)
arguments = st.one_of(
    st.fixed_dictionaries({"query": st.text(max_size=20) | reference_texts}, optional={"k": st.integers(-2, 5)}),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    json_values,
    st.builds(lambda inner: Raw(json.dumps(json.dumps(inner))), st.dictionaries(st.text(max_size=5), json_values)),
    st.sampled_from([Raw(BIG), Raw(json.dumps(BIG)), {"query": Raw(BIG)}]),
    st.sampled_from([1, 20, 300, 5_000]).map(lambda depth: {"query": deep(depth)}),
    st.just({"query": {"$ref": 1, "path": "items.\u00b2"}}),
)
hostile_fields = {
    "id": ids,
    "tool": st.sampled_from(["search", "combine", "join", "", "nope"]) | st.text(max_size=8),
    "arguments": arguments,
    "depends_on": st.lists(ids | reference_texts, max_size=3) | json_values,
    "thought": st.text(max_size=20),
    "extra": json_values,
}
valid_json_nodes = st.fixed_dictionaries(
    {
        "id": st.integers(1, 9),
        "tool": st.just("search"),
        "arguments": st.fixed_dictionaries({"query": st.text(max_size=10) | reference_texts}),
    },
    optional={"depends_on": st.lists(st.integers(1, 9) | st.sampled_from(["$1", "${2}"]), max_size=2)},
)


@st.composite
def spoiled_json_nodes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid node with one field made hostile."""
    field = draw(st.sampled_from(sorted(hostile_fields)))
    return {**draw(valid_json_nodes), field: draw(hostile_fields[field])}


json_nodes = valid_json_nodes | spoiled_json_nodes() | st.fixed_dictionaries({}, optional=hostile_fields)
structured_json_plans = st.builds(
    lambda prose, thought, nodes: prose + json_text({"thought": thought, "nodes": nodes}),
    st.sampled_from(["", "", "", "Here is the plan:\n", "```json\n", "{", "]"]),
    st.text(max_size=20),
    st.lists(json_nodes, min_size=1, max_size=5) | st.lists(json_nodes | json_values, max_size=5),
)
json_plans = st.one_of(
    structured_json_plans,
    structured_json_plans,
    structured_json_plans,
    st.text(alphabet='{}[]",:0123456789 \\naeiou$.-', max_size=200),
    st.text(max_size=100),
)


@fuzz(300)
@given(
    text=json_plans,
    truncate=st.sampled_from([None, None, None, None, 0, 1, 20, 100, 400]),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
@example(text='{"nodes": [{"id": ' + BIG + ', "tool": "search"}]}', truncate=None, cuts=[])  # found: ValueError
@example(text='{"nodes": [{"id": 1, "arguments": {"a": ' + deep(5_000).text + "}}]}", truncate=None, cuts=[])  # found
@example(text='{"nodes": [{"id": 1, "tool": "s", "depends_on": ["$\u00b2"]}]}', truncate=None, cuts=[])  # found
@example(text='{"nodes": [{"id": 1, "tool": "s", "arguments": "' + BIG + '"}]}', truncate=None, cuts=[])  # found
@example(text=']{"nodes": [{"id": 1, "tool": "search", "arguments": {"query": "q"}}]}', truncate=None, cuts=[])  # found
@example(text='{"nodes": []} {"nodes": [{"id": 1, "tool": "search"}]}', truncate=None, cuts=[])  # found
def test_json_parser_contract(text: str, truncate: int | None, cuts: list[int]) -> None:
    text = text if truncate is None else text[:truncate]
    nodes = assert_parser_contract(JsonPlanParser, text, cuts)
    whole = whole_document_nodes(text)
    if whole is not None:  # streaming reads the same nodes as reading the finished reply would
        assert nodes == whole


def whole_document_nodes(text: str) -> list[Node] | None:
    """The nodes of the JSON object at the first `{`, read at once; None if there is no such plan."""
    start = text.find("{")
    try:
        document, _ = json.JSONDecoder().raw_decode(text[start:]) if start >= 0 else (None, 0)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
        return None
    objects = [raw for raw in document["nodes"] if isinstance(raw, dict)]  # ids default to their position
    read = [node_from_mapping(raw, position) for position, raw in enumerate(objects, start=1)]
    return [node for node in read if isinstance(node, Node)]


ACTION_ARGUMENTS = [
    '"a"', '"a", k=2', 'query="$1"', '"a", ["$1", "$2"]', '["$1"]', '"a", 1, 2, 3', "", "k=1, k=2",
    '"a") or search("b"', '"a")("b"', '"a")[0', "{1, 2}", 'b"x"', "1j", "...", "(1, 2)", "{1: 2}",
    "os.system('x')", "*x", "**{'a': 1}", BIG, Long('"a", ["$' + BIG + '"]'), '"a", ["$\u00b2"]',
    Long("[" * 300 + "]" * 300), "lambda: 0", "f'{x}'", "'''", "\\", "(", ")", "1e999", "-0", "True", "None",
    '"\\ud800"',
]  # fmt: skip
action_arguments = st.one_of(
    st.sampled_from(ACTION_ARGUMENTS),
    st.text(max_size=30),
    st.lists(json_scalars, max_size=3).map(lambda values: ", ".join(map(repr, values))),
)
valid_action_lines = st.builds(
    lambda number, query, k: f"{number}. search({query!r}{k})",
    st.integers(1, 9),
    st.text(max_size=10) | reference_texts,
    st.sampled_from(["", ", k=2", ", 3", ', ["$1"]']),
)
action_lines = st.one_of(
    valid_action_lines,
    valid_action_lines,
    st.builds(
        lambda number, name, inner, end: f"{number}. {name}({inner}){end}",
        st.sampled_from(["1", "2", "7", "0", "-1", BIG, "\u00b2", "\u0661"]) | st.integers(0, 30).map(str),
        st.sampled_from(["search", "combine", "join", "nope", "a.b-c", "9x"]),
        action_arguments,
        st.sampled_from(["", " ", END_OF_PLAN, " # note", ")"]),
    ),
    st.sampled_from(["Thought: go", "thought:", "join()", END_OF_PLAN, "1.", "1)", "", "   ", "Plan:"]),
    st.text(max_size=30),
)
llmcompiler_plans = st.builds(
    lambda lines, newline: newline.join(lines),
    st.lists(action_lines, max_size=8),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)


@fuzz(300)
@given(text=llmcompiler_plans, cuts=st.lists(st.integers(0, 400), max_size=6))
@example(text='1. search("a") or search("b")', cuts=[])  # found: AssertionError
@example(text=BIG + '. search("a")', cuts=[])  # found: int() past 4,300 digits
@example(text="1. search({1, 2})", cuts=[])  # found: a set in the arguments, which JSON cannot carry
def test_llmcompiler_parser_contract(text: str, cuts: list[int]) -> None:
    nodes = assert_parser_contract(lambda: LLMCompilerPlanParser(TOOLS), text, cuts)
    for node in nodes:
        assert node.tool != "join" and TOOL_NAME.fullmatch(node.tool)
    parser = LLMCompilerPlanParser(TOOLS)
    parser.feed(text + "\n")
    if parser.complete:  # nothing after the end of the plan
        assert parser.feed('98. search("late")\n99. search("later")') == [] and parser.finish() == []


queries = st.text(max_size=15)
valid_plans = st.lists(st.tuples(queries, st.integers(1, 9), st.booleans()), min_size=1, max_size=4)


def as_json_plan(plan: list[tuple[str, int, bool]]) -> str:
    nodes = [
        {
            "id": index,
            "tool": "search",
            "arguments": {"query": query, "k": k},
            "depends_on": [index - 1] if after else [],
        }
        for index, (query, k, after) in enumerate(plan, start=1)
    ]
    return json.dumps({"thought": "t", "nodes": nodes})


def as_llmcompiler_plan(plan: list[tuple[str, int, bool]]) -> str:
    lines = [
        f"Thought: look up {query!r}\n{index}. search({query!r}, k={k})" for index, (query, k, _) in enumerate(plan, 1)
    ]
    return "\n".join(lines) + f"\n{len(plan) + 1}. join(){END_OF_PLAN}"


@fuzz(40)
@given(plan=valid_plans)
def test_every_prefix_of_a_valid_plan_yields_a_prefix_of_its_nodes(plan: list[tuple[str, int, bool]]) -> None:
    for create, text in (
        (JsonPlanParser, as_json_plan(plan)),
        (lambda: LLMCompilerPlanParser(TOOLS), as_llmcompiler_plan(plan)),
    ):
        full, parser = parse(create(), text, [])
        assert [node.arguments["query"] for node in full] == [query for query, _, _ in plan], parser.problems
        assert parser.problems == [] and parser.complete
        for end in range(len(text)):
            nodes = parse(create(), text[:end], [])[0]
            assert nodes == full[: len(nodes)], (text[:end], nodes)
    event(f"{len(plan)} node(s)")


# -- references -------------------------------------------------------------------------------------------

reference_strings = st.one_of(
    st.text(alphabet=st.sampled_from([*"${}.0123456789ab_ -", "\u00b2", "\u0663", "\U0001d7d9", "\n"]), max_size=30),
    reference_texts,
    st.builds(lambda a, b: f"{a} {b}", reference_texts, reference_texts),
)
reference_objects = st.fixed_dictionaries(
    {"$ref": st.one_of(st.integers(-1, 6), st.sampled_from(["$2", "2", "x", BIG, "\u00b2", True, 1.0, None]))},
    optional={
        "path": st.one_of(
            st.sampled_from(["", "items.0", "items.0.title", "0", "\u00b2", Long("items." + BIG), "a..b", None]),
            st.lists(st.integers(-3, 3) | st.text(max_size=4) | st.booleans(), max_size=3),
            json_values,
        ),
        "extra": json_values,
        7: st.just(1),
    },
)
reference_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | reference_strings | reference_objects,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5) | st.integers(0, 3), children, max_size=4)
    ),
    max_leaves=15,
)


def nested(depth: int, inner: object) -> object:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


depths = st.sampled_from([0, 0, 0, 10, 500, 5_000])
outputs = st.dictionaries(st.integers(0, 6), st.tuples(depths, json_values), max_size=4)


# Deep values are built inside the test from (depth, value): Hypothesis could not print them otherwise.
@fuzz(300)
@given(depth=depths, inner=reference_values, deep_outputs=outputs)
@example(depth=0, inner="${" + BIG + "}", deep_outputs={})  # found: int() past 4,300 digits
@example(depth=0, inner="costs $" + BIG, deep_outputs={1: (0, "x")})  # found: the same, for a number in text
@example(depth=0, inner="${1.\u00b2}", deep_outputs={1: (0, [1])})  # found: "²".isdigit() but int("²") fails
@example(depth=0, inner={"$ref": "\u00b2"}, deep_outputs={1: (0, 1)})  # found: the same
@example(depth=5_000, inner="$1", deep_outputs={1: (0, 1)})  # found: RecursionError
@example(depth=0, inner="${1}", deep_outputs={1: (5_000, 1)})  # found: RecursionError
@example(depth=0, inner={"$ref": 1, 7: 1, "x": 2}, deep_outputs={})  # found: TypeError sorting mixed keys
def test_references_raise_only_invalid_reference_error(
    depth: int, inner: object, deep_outputs: dict[int, tuple[int, object]]
) -> None:
    outputs = {node_id: nested(*output) for node_id, output in deep_outputs.items()}
    value = nested(depth, inner)
    for name, call in (
        ("find", lambda: list(find_references(value))),
        ("contains", lambda: contains_reference(value, outputs)),
        ("resolve", lambda: resolve_references(value, outputs)),
    ):
        try:
            call()
        except InvalidReferenceError:
            event(f"{name}: InvalidReferenceError")
        else:
            event(f"{name}: ok")
    if isinstance(value, str):
        assert isinstance(is_whole_reference(value, outputs), bool)
    if depth <= 10:  # renaming walks the value like resolving does, but has no error to give
        rename_references(value, {1: 2, 2: 3})


@fuzz(200)
@given(path=json_values | reference_strings | st.lists(st.integers() | st.text(max_size=3), max_size=3))
def test_parse_path_raises_only_invalid_reference_error(path: object) -> None:
    try:
        parsed = parse_path(path)
    except InvalidReferenceError:
        event("InvalidReferenceError")
    else:
        assert all(isinstance(part, str | int) for part in parsed)
        event("parsed")


# -- answers and the joiner's decision --------------------------------------------------------------------

ANSWER_CORES = [
    HUGE_FRACTION, Long("1" + "0" * 400), BIG, "1/0", "-.5", "1,,2", Long("\\boxed{" * 50), "answer is",
    "1.5e-7", "1/300000000000", "2.5E+12", "1e999", "1e999999999", "1e-999", "3e4f",
]  # fmt: skip
answer_texts = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789,./-eE \\boxed{}answer is:=\n", max_size=80),
    st.sampled_from(ANSWER_CORES).flatmap(
        lambda core: st.sampled_from([core, f"The answer is {core}.", f"\\boxed{{{core}}}", f"x = {core}"])
    ),
)


@fuzz(300)
@given(text=answer_texts, other=answer_texts)
@example(text=f"The answer is {HUGE_FRACTION}.", other="1")  # found: OverflowError
@example(text="1/300000000000", other="1")  # found: canonical 3.333333333e-12 read back as -12
@example(text="\\boxed{1e999999999}", other="1")  # found: Fraction() computed 10**999999999 for minutes
def test_answer_extraction_never_raises(text: str, other: str) -> None:
    for extract in (extract_number, extract_text, extract_boxed):
        answer = extract(text)
        assert answer is None or isinstance(answer, str)
    number = extract_number(text)
    if number is not None:
        assert extract_number(number) == number, "the canonical number is not a fixed point"
    for kind in ("auto", "number", "boxed", "text"):
        for similarity in (None, 0.8):
            rule = create_answer_rule(kind, similarity=similarity)
            first, second = rule.extract(text), rule.extract(other)
            for answer in (first, second):
                assert answer is None or rule.equivalent(answer, answer)
            if first is not None and second is not None:
                assert rule.equivalent(first, second) == rule.equivalent(second, first)
    event("an answer" if extract_number(text) or extract_text(text) else "no answer")


@fuzz(200)
@given(number=st.floats(allow_nan=False, allow_infinity=False) | st.integers())
@example(number=1.5e-7)  # found: read as 1.5
def test_a_number_alone_reads_as_itself(number: float) -> None:
    answer = extract_number(f"The answer is {number!r}")
    assert answer is not None and same_number(answer, repr(number)), answer
    event("exponent" if "e" in repr(number) else "plain")


decision_texts = st.one_of(
    st.text(max_size=100),
    st.builds(
        lambda fields, cut: json_text(fields)[:cut],
        st.fixed_dictionaries(
            {},
            optional={
                "thought": st.text(max_size=10),
                "action": st.sampled_from(["finish", "replan", "stop", 1]),
                "answer": json_values | st.sampled_from([Raw(BIG), deep(5_000, "1")]),
                "reason": json_values,
                "cancel": st.lists(ids) | json_values,
                "add": st.lists(json_nodes) | json_values,
            },
        ),
        st.integers(0, 200),
    ),
    st.builds(lambda action, inner: f"{action}({inner}", st.sampled_from(["Finish", "Replan"]), st.text(max_size=20)),
)


@fuzz(300)
@given(text=decision_texts)
@example(text='{"action": "finish", "answer": ' + BIG + "}")  # found: ValueError
@example(text='{"cancel": ' + "[" * 100_000)  # found: RecursionError
def test_decisions_and_refinements_are_read_or_none(text: str) -> None:
    decision = parse_decision(text)
    assert decision is None or (
        isinstance(decision, Decision)
        and decision.action in ("finish", "replan")
        and isinstance(decision.answer, str)
        and isinstance(decision.reason, str)
    )
    refinement = parse_refinement(text)
    assert refinement is None or (
        isinstance(refinement, Refinement)
        and all(isinstance(item, int) and not isinstance(item, bool) for item in refinement.cancel)
    )
    event(f"decision: {decision.action if decision else None}; refinement: {refinement is not None}")
