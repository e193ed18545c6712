"""Incremental parsers for the two plan formats, fed with the planner's text as it streams.

Each parser yields every node the moment its text is complete, so the executor can start it while the
planner is still writing. Whatever cannot be parsed becomes a `PlanProblem`, never an exception: the
problems go back to the model in a repair request.

* JSON: `{"thought": "...", "nodes": [{"id": 1, "tool": "search", "arguments": {...}}, ...]}`.
* LLMCompiler's numbered text: `1. search("x")`, `2. search("y", ["$1"])`, `3. join()<END_OF_PLAN>`,
  with optional `Thought: ...` lines before an action.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from agentdag.plan import Node, PlanProblem, validate_plan
from agentdag.toolsets.base import Tool

__all__ = [
    "END_OF_PLAN",
    "JsonPlanParser",
    "LLMCompilerPlanParser",
    "PlanParser",
    "PlanReader",
    "PlanStyle",
    "ReadPlan",
    "node_from_mapping",
]

PlanStyle = Literal["json", "llmcompiler"]

END_OF_PLAN = "<END_OF_PLAN>"
# At most 18 digits: a node id, not a long number that `int()` refuses (past 4,300 digits) or is slow to read.
_ACTION = re.compile(r"^\s*(\d{1,18})\s*[.)]\s*([A-Za-z_][\w.-]*)\s*\((.*)\)\s*(?:<END_OF_PLAN>)?\s*$")
_ACTION_START = re.compile(r"^\s*(\d{1,18})\s*[.)]\s*")
_THOUGHT = re.compile(r"^\s*Thought\s*:\s*(.*)$", re.IGNORECASE)
_JOIN = "join"
_MAX_ID_DIGITS = 18


@dataclass(slots=True)
class PlanParser:
    """Common state of both parsers.

    Attributes:
        problems: what could not be parsed.
        complete: the plan said it was complete (closing brace, `join()` or `<END_OF_PLAN>`).
        truncated: the text stopped in the middle of the plan; the caller decides whether that matters.
    """

    problems: list[PlanProblem] = field(default_factory=list)
    complete: bool = False
    truncated: bool = False
    thought: str | None = None

    def feed(self, chunk: str) -> list[Node]:
        """Consume more text; return the nodes completed by it."""
        raise NotImplementedError

    def finish(self) -> list[Node]:
        """Consume the end of the text; return the last nodes and record truncation problems."""
        raise NotImplementedError


def node_from_mapping(raw: object, position: int) -> Node | PlanProblem:
    """Read one node from a model's JSON; `$N` in `depends_on` and arguments as a JSON string are tolerated."""
    if not isinstance(raw, Mapping):
        return PlanProblem(None, "malformed", f"plan entry {position} is not an object")
    data = dict(raw)
    node_id = data.get("id", position)
    depends_on = data.get("depends_on")
    if isinstance(depends_on, list):
        data["depends_on"] = [_strip_dollar(item) for item in depends_on]
    if isinstance(data.get("arguments"), str):  # some models encode arguments as a JSON string
        with contextlib.suppress(ValueError, RecursionError):  # not JSON, too long a number, too deep
            data["arguments"] = json.loads(data["arguments"])
    try:
        return Node.model_validate(data)
    except pydantic.ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'node'}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        label = node_id if isinstance(node_id, int) and not isinstance(node_id, bool) else position
        return PlanProblem(label, "malformed", f"cannot read this node: {reasons}")


def _strip_dollar(item: object) -> object:
    if isinstance(item, str):
        stripped = item.strip().lstrip("$").strip("{}")
        if stripped.isdecimal() and len(stripped) <= _MAX_ID_DIGITS:  # not "²", which int() refuses
            return int(stripped)
    return item


class JsonPlanParser(PlanParser):
    """Parses `{"nodes": [...]}` incrementally: a node is emitted when its closing brace arrives.

    The plan is the JSON object that starts at the first `{`; text before and after it is ignored.
    """

    def __init__(self) -> None:
        super().__init__()
        self._text: list[str] = []
        self._length = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._node_start: int | None = None
        self._count = 0
        self._started = False

    def feed(self, chunk: str) -> list[Node]:
        """Scan the chunk; every node object that closes inside the `nodes` array is parsed and returned."""
        nodes: list[Node] = []
        base = self._length
        self._text.append(chunk)
        self._length += len(chunk)
        buffer: str | None = None
        for offset, char in enumerate(chunk):
            if self.complete:
                break  # text after the plan is not the plan's, as `finish` reads it
            if not self._started and char != "{":
                continue  # nor is prose before it: its brackets and quotes would throw the depth off
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                continue
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._started = True
                self._depth += 1
                if char == "{" and self._depth == 3:
                    self._node_start = base + offset
            elif char in "}]":
                if char == "}" and self._depth == 3 and self._node_start is not None:
                    buffer = buffer if buffer is not None else "".join(self._text)
                    parsed = self._parse_node(buffer[self._node_start : base + offset + 1])
                    if parsed is not None:
                        nodes.append(parsed)
                    self._node_start = None
                self._depth -= 1
                if self._depth == 0 and self._started:
                    self.complete = True
        return nodes

    def _parse_node(self, text: str) -> Node | None:
        self._count += 1
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as error:  # ValueError: also a number too long to convert
            self.problems.append(
                PlanProblem(self._count, "malformed", f"plan entry {self._count} is not JSON: {_reason(error)}")
            )
            return None
        result = node_from_mapping(raw, self._count)
        if isinstance(result, PlanProblem):
            self.problems.append(result)
            return None
        return result

    def finish(self) -> list[Node]:
        """Check the whole document: it must be one JSON object with a `nodes` list."""
        text = "".join(self._text).strip()
        start = text.find("{")
        if start < 0:
            self.problems.append(PlanProblem(None, "malformed", "the reply holds no JSON object"))
            return []
        try:
            document, _ = json.JSONDecoder().raw_decode(text[start:])
        except (ValueError, RecursionError) as error:
            if self.complete:
                self.problems.append(PlanProblem(None, "malformed", f"the plan is not valid JSON ({_reason(error)})"))
            else:
                self.truncated = True
            return []
        if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
            self.problems.append(PlanProblem(None, "malformed", 'the plan must be an object with a "nodes" list'))
            return []
        thought = document.get("thought")
        self.thought = thought if isinstance(thought, str) else None
        self.complete = True
        return []


class LLMCompilerPlanParser(PlanParser):
    """Parses LLMCompiler's numbered plan line by line; `join()` or `<END_OF_PLAN>` ends it.

    Positional arguments map onto the tool's schema properties in order. A surplus last argument that is
    a list of `$N` references (LLMCompiler's context list) only adds dependencies.
    """

    def __init__(self, tools: Mapping[str, Tool]) -> None:
        super().__init__()
        self._tools = tools
        self._line = ""
        self._thought: str | None = None

    def feed(self, chunk: str) -> list[Node]:
        """Consume text; each complete line that holds an action becomes a node."""
        nodes: list[Node] = []
        self._line += chunk
        while "\n" in self._line and not self.complete:
            line, self._line = self._line.split("\n", 1)
            nodes.extend(self._parse_line(line))
        return nodes

    def finish(self) -> list[Node]:
        """Parse the last line (the reply may end without a newline)."""
        nodes: list[Node] = []
        if not self.complete and self._line.strip():
            nodes.extend(self._parse_line(self._line))
        self._line = ""
        return nodes

    def _parse_line(self, line: str) -> list[Node]:
        if END_OF_PLAN in line and not _ACTION_START.match(line):
            self.complete = True
            return []
        thought_line = _THOUGHT.match(line)
        if thought_line:
            self._thought = thought_line.group(1).strip() or None
            return []
        match = _ACTION.match(line)
        if match is None:
            start = _ACTION_START.match(line)
            if start is not None:
                node_id = int(start.group(1))
                self.problems.append(PlanProblem(node_id, "malformed", f"cannot read action {line.strip()!r}"))
            return []
        node_id, name, raw_arguments = int(match.group(1)), match.group(2), match.group(3)
        if END_OF_PLAN in line:
            self.complete = True
        if name == _JOIN:
            self.complete = True
            return []
        thought, self._thought = self._thought, None
        arguments = self._arguments(node_id, name, raw_arguments)
        if arguments is None:
            return []
        context = arguments.pop("__context__", None)
        depends_on = sorted({item for item in map(_strip_dollar, context or []) if isinstance(item, int)})
        result = node_from_mapping(
            {"id": node_id, "tool": name, "arguments": arguments, "depends_on": depends_on, "thought": thought},
            node_id,
        )
        if isinstance(result, PlanProblem):
            self.problems.append(result)
            return []
        return [result]

    def _arguments(self, node_id: int, name: str, text: str) -> dict[str, Any] | None:
        try:
            call = ast.parse(f"f({text})", mode="eval").body
            # `search("a") or search("b")` and `search("a")("b")` parse too, as something other than one call.
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
                raise ValueError("not a single call")
            positional = [_json_value(ast.literal_eval(argument)) for argument in call.args]
            keywords = {
                keyword.arg: _json_value(ast.literal_eval(keyword.value)) for keyword in call.keywords if keyword.arg
            }
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
            message = f"cannot read the arguments of {name}({text}); use literals: strings, numbers, lists, dicts"
            self.problems.append(PlanProblem(node_id, "malformed", message))
            return None
        tool = self._tools.get(name)
        if tool is None:  # keep the call readable; validation reports the unknown tool by name
            return {f"argument_{index}": value for index, value in enumerate(positional)} | keywords
        names = list(tool.input_schema.get("properties", {}))
        arguments: dict[str, Any] = {}
        for index, value in enumerate(positional):
            if index < len(names) and names[index] not in keywords:
                arguments[names[index]] = value
            elif index == len(positional) - 1 and _is_reference_list(value):
                arguments["__context__"] = value
            else:
                self.problems.append(
                    PlanProblem(node_id, "invalid_arguments", f"{name} takes {len(names)} argument(s): {names}")
                )
                return None
        arguments.update(keywords)
        return arguments


def _json_value(value: object) -> object:
    """A Python literal as a JSON value (tuples become lists).

    Raises:
        ValueError: the literal holds something JSON cannot carry (a set, bytes, a complex number, `...`,
            a dict key that is not a string).
    """
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _json_value(item) for key, item in value.items()}
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


def _reason(error: ValueError | RecursionError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return error.msg
    return "nested too deeply" if isinstance(error, RecursionError) else str(error).split(":")[0]


def _is_reference_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item.strip().startswith("$") for item in value)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """A whole reply read as a plan: its nodes and every problem (parsing, validation, a cut-off end)."""

    nodes: tuple[Node, ...]
    problems: tuple[PlanProblem, ...]

    @property
    def valid(self) -> bool:
        """Whether the plan has nodes and no problem."""
        return bool(self.nodes) and not self.problems


@dataclass(frozen=True, slots=True)
class PlanReader:
    """How plans of one style are read against a set of tools.

    Attributes:
        style: "json" or "llmcompiler".
        tools: the tools plans may call, by name.
    """

    style: PlanStyle
    tools: Mapping[str, Tool]

    def parser(self) -> PlanParser:
        """A fresh incremental parser for one streamed reply."""
        return JsonPlanParser() if self.style == "json" else LLMCompilerPlanParser(self.tools)

    def read(self, text: str, *, known: Collection[int] = ()) -> ReadPlan:
        """Parse and validate a whole reply, as the planner would if the reply streamed in.

        Args:
            text: the reply.
            known: ids of the nodes that exist already (earlier rounds), which the plan may reference; nodes
                that list those ids again are left out, as the planner leaves them out.
        """
        parser = self.parser()
        nodes = [node for node in (*parser.feed(text), *parser.finish()) if node.id not in known]
        problems = [*parser.problems, *validate_plan(nodes, self.tools, completed=known)]
        if parser.truncated:
            problems.append(PlanProblem(None, "malformed", "the plan was cut off"))
        return ReadPlan(tuple(nodes), tuple(problems))
