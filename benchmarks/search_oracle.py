"""The search benchmark's oracle scripts: each record's own structure, played as a planner could play it.

A script knows the record's plan (which sub-questions to ask, which earlier answers each one's wording
needs) but none of the answers: every value a later call's text needs is read from the output of the call
it depends on, as the run observed it, so a call can only be written in the round after that output is
seen. The DAG oracle plans each round from the replan prompt's observations; the ReAct oracle makes the
same calls one per step.

* **FanOutQA**: the gold `decomposition`. A sub-question needs the sub-questions it `depends_on`, and
  those its enclosing sub-questions depend on (a part of "the population of the five smallest countries in
  Asia" needs "Asia" too). Where its wording names a value of such an answer (a name the question itself
  does not name), that value is a slot: the oracle looks the value up in the observed output and writes
  the text with the output's spelling. Where a wording names none (e.g. "Finnish passport" after
  "Finland"), the record's wording is kept, written only after the result it depends on
  (`record_wording`). A value the output does not show cannot be written: the sub-question is dropped
  (`unknowable`), with everything that needs it. A sub-question that declares no dependency but names a
  value of an earlier answer gets that dependency.
* **HotpotQA**: `type` and `supporting_facts`. Round 0 searches every supporting title the question names
  (as the question words it; for a comparison, each of its titles), or the question itself when it names
  none. A bridge question's other titles need round 0's results: the oracle searches a title once an
  output names it (the title as the output spells it); when none does, it searches the question instead
  (`fallbacks`), once.
* **ParallelQA and Movie**: the fixed one-round plans of `search_data` (ParallelQA's `math` takes the
  searches' outputs by reference, in the same round: the tool's output carries the value).

Calls are never repeated: two sub-questions that make the same call make it once.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from agentdag.references import resolve_references
from agentdag.toolsets import JsonValue, Tool

from .oracle import Call, FixedPlan, Observation, OracleScript, parse_plan_calls
from .search_data import SearchCase, SubQuestion

__all__ = ["TALLIES", "OraclePlan", "StepScript", "create_script", "find_phrase", "plan_oracle"]

_WORD = re.compile(r"[^\W_]+")
_ARTICLES = frozenset({"a", "an", "the"})
_MIN_VALUE_CHARS = 3
_SIMILAR = 0.85
_DISAMBIGUATION = re.compile(r"\s*\([^)]*\)\s*$")

_How = Literal["from_question", "from_observations", "record_wording", "fallbacks"]
TALLIES: tuple[str, ...] = ("from_question", "from_observations", "record_wording", "fallbacks", "unknowable")
"""How an oracle's calls were written: from the question alone; with values read from earlier outputs; in the
record's words, after the results they depend on; the question searched when no output named the entity
(HotpotQA); and the steps no output allowed to write at all."""


def find_phrase(text: str, phrase: str) -> tuple[int, int] | None:
    """Where `text` states `phrase` (start, end), or None.

    The phrase as written (ignoring case), else its words in order, ignoring case, accents, punctuation and
    articles, a word also matching a near-identical spelling ("Kenny" for "Kenney").
    """
    exact = re.search(r"(?<![^\W_])" + re.escape(phrase) + r"(?![^\W_])", text, re.IGNORECASE)
    if exact is not None:
        return exact.span()
    wanted = [word for word, _, _ in _words(phrase)]
    if not wanted:
        return None
    words = _words(text)
    for first in range(len(words) - len(wanted) + 1):
        if all(_same(words[first + index][0], word) for index, word in enumerate(wanted)):
            return words[first][1], words[first + len(wanted) - 1][2]
    return None


def _words(text: str) -> list[tuple[str, int, int]]:
    found = ((_fold(match.group()), match.start(), match.end()) for match in _WORD.finditer(text))
    return [item for item in found if item[0] not in _ARTICLES]


def _fold(word: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFKD", word) if not unicodedata.combining(char)).casefold()


def _same(left: str, right: str) -> bool:
    if left == right:
        return True
    shorter, total = min(len(left), len(right)), len(left) + len(right)
    if shorter < 4 or 2 * shorter < _SIMILAR * total:  # the ratio cannot reach the threshold
        return False
    return difflib.SequenceMatcher(None, left, right).ratio() >= _SIMILAR


# -- scripts ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Slot:
    """A stretch of a step's text that comes from an earlier output: the value, looked for in the sources."""

    sources: tuple[int, ...]
    values: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Step:
    """One search the record plans: its wording, the earlier steps it is written after, and its slots."""

    text: str
    needs: tuple[int, ...] = ()
    slots: tuple[_Slot, ...] = ()
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class _State:
    kind: Literal["made", "ready", "waiting", "unknowable"]
    text: str = ""
    output: str | None = None
    how: _How = "from_question"


class StepScript(OracleScript):
    """A script of `search` steps whose texts are written from earlier outputs (FanOutQA and HotpotQA).

    Built by `create_script` from a record; it keeps no state, so one script serves any number of runs.
    """

    def __init__(self, steps: Sequence[_Step], *, tool: str = "search") -> None:
        self.steps = list(steps)
        self.tool = tool

    def next_calls(self, observed: Sequence[Observation]) -> list[Call]:
        """The steps whose text can be written now and that were not called yet, each text once."""
        texts = dict.fromkeys(state.text for state in self._states(observed) if state.kind == "ready")
        return [Call(tool=self.tool, arguments={"query": text}) for text in texts]

    def tally(self, observed: Sequence[Observation]) -> dict[str, int]:
        """How the calls made so far were written, and how many steps could not be written at all."""
        states = self._states(observed)
        made = {state.text: state.how for state in states if state.kind == "made"}
        counts = dict.fromkeys(TALLIES, 0)
        for how in made.values():
            counts[how] += 1
        counts["unknowable"] = sum(state.kind == "unknowable" for state in states)
        return counts

    def _states(self, observed: Sequence[Observation]) -> list[_State]:
        outputs: dict[str, str | None] = {}
        for item in observed:
            if item.tool == self.tool:
                outputs.setdefault(_query(item.arguments), item.output)
        states: list[_State] = []
        for step in self.steps:
            needed = [states[index].kind for index in step.needs]
            if "unknowable" in needed:
                states.append(_State("unknowable"))
                continue
            if any(kind != "made" for kind in needed):
                states.append(_State("waiting"))
                continue
            text, how = _write(step, states)
            if text is None:
                states.append(_State("unknowable"))
            elif text in outputs:
                states.append(_State("made", text, outputs[text], how))
            else:
                states.append(_State("ready", text, None, how))
        return states


def _write(step: _Step, states: Sequence[_State]) -> tuple[str | None, _How]:
    """The step's text with each slot filled from its sources' outputs, or its fallback, or None."""
    text = step.text
    for slot in sorted(step.slots, key=lambda item: -item.start):
        value = _look_up(slot, states)
        if value is None:
            return step.fallback, "fallbacks"
        text = text[: slot.start] + value + text[slot.end :]
    if step.slots:
        return text, "from_observations"
    return text, "record_wording" if step.needs else "from_question"


def _look_up(slot: _Slot, states: Sequence[_State]) -> str | None:
    """The first of the slot's values that a source's output states, as the output spells it."""
    for value in slot.values:
        for source in slot.sources:
            output = states[source].output or ""
            span = find_phrase(output, value)
            if span is not None:
                return output[span[0] : span[1]]
    return None


def _query(arguments: Mapping[str, JsonValue]) -> str:
    value = arguments.get("query")
    return value if isinstance(value, str) else json.dumps(value)


# -- building the scripts ---------------------------------------------------------------------------


def create_script(case: SearchCase, tools: Mapping[str, Tool]) -> OracleScript:
    """The oracle's script for a case, from the record's own structure (see the module docstring)."""
    if case.kind == "fanoutqa":
        return StepScript(_fanout_steps(case))
    if case.kind == "hotpotqa":
        return StepScript(_hotpot_steps(case))
    return FixedPlan(text=case.plan_text, calls=parse_plan_calls(case.plan_text, tools))


def _flatten(level: Sequence[SubQuestion], inherited: frozenset[str]) -> Iterator[tuple[SubQuestion, frozenset[str]]]:
    """The sub-questions in the gold plan's order (parts before the whole), each with what it needs."""
    for sub in level:
        needs = inherited | set(sub.depends_on)
        yield from _flatten(sub.parts, needs)
        yield sub, needs


def _fanout_steps(case: SearchCase) -> list[_Step]:
    flat = list(_flatten(case.decomposition, frozenset()))
    position = {sub.id: index for index, (sub, _) in enumerate(flat)}
    steps: list[_Step] = []
    rounds: list[int] = []
    for index, (sub, needs) in enumerate(flat):
        declared = sorted({position[name] for name in needs if position.get(name, index) < index})
        candidates = declared or range(index)  # no declared dependency: any earlier answer its wording names
        ordered = sorted(candidates, key=lambda source: (rounds[source], source))
        slots = _slots(sub.question, case.question, [(source, flat[source][0].answer) for source in ordered])
        sources = declared or sorted({source for slot in slots for source in slot.sources})
        rounds.append(1 + max((rounds[source] for source in sources), default=-1))
        steps.append(_Step(text=sub.question, needs=tuple(sources), slots=slots))
    return steps


def _slots(text: str, question: str, answers: Sequence[tuple[int, JsonValue]]) -> tuple[_Slot, ...]:
    """The values of earlier answers that `text` names and `question` does not, longest first, not overlapping."""
    values = [
        (value, source)
        for source, answer in answers
        for value in dict.fromkeys(_values(answer))
        if len(_fold(value).strip()) >= _MIN_VALUE_CHARS and find_phrase(question, value) is None
    ]
    values.sort(key=lambda item: -len(item[0]))
    slots: list[_Slot] = []
    for value, source in values:
        span = find_phrase(text, value)
        if span is None or any(span[0] < slot.end and slot.start < span[1] for slot in slots):
            continue
        slots.append(_Slot(sources=(source,), values=(value,), start=span[0], end=span[1]))
    return tuple(sorted(slots, key=lambda slot: slot.start))


def _values(answer: JsonValue) -> Iterator[str]:
    """The names an answer states: strings, dict keys, and numbers of three digits or more (years)."""
    if isinstance(answer, str):
        yield answer
    elif isinstance(answer, bool):
        return
    elif isinstance(answer, int) and abs(answer) >= 100:
        yield str(answer)
    elif isinstance(answer, list):
        for item in answer:
            yield from _values(item)
    elif isinstance(answer, Mapping):
        for key, item in answer.items():
            yield key
            yield from _values(item)


def _hotpot_steps(case: SearchCase) -> list[_Step]:
    named = {title: find_phrase(case.question, _base(title)) for title in case.gold_titles}
    first = [title for title in case.gold_titles if case.hop_type == "comparison" or named[title] is not None]
    steps = []
    for title in first:
        span = named[title]
        steps.append(_Step(text=case.question[span[0] : span[1]] if span is not None else case.question))
    if not steps:  # a bridge question that names no supporting title: search its words
        steps.append(_Step(text=case.question))
    sources = tuple(range(len(steps)))
    fallback = None if any(step.text == case.question for step in steps) else case.question
    for title in case.gold_titles:
        if title in first:
            continue
        slot = _Slot(sources=sources, values=(title, _base(title)), start=0, end=len(title))
        steps.append(_Step(text=title, needs=sources, slots=(slot,), fallback=fallback))
    return steps


def _base(title: str) -> str:
    """A Wikipedia title without its disambiguation: "Kiss and Tell (1945 film)" -> "Kiss and Tell"."""
    return _DISAMBIGUATION.sub("", title) or title


# -- the plan, run offline --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OraclePlan:
    """The calls an oracle script makes on a case, run offline against the case's tools (no latency).

    Attributes:
        rounds: the calls of each planning round, arguments resolved (what the executor would run).
        tally: how the calls were written (see `StepScript.tally`; empty for fixed plans).
    """

    rounds: tuple[tuple[Call, ...], ...]
    tally: Mapping[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> list[Call]:
        """Every call, round after round."""
        return [call for calls in self.rounds for call in calls]


async def plan_oracle(script: OracleScript, tools: Mapping[str, Tool], *, max_rounds: int = 20) -> OraclePlan:
    """Run a script against the tools directly, round by round, feeding it each round's outputs in full.

    The result is what both agents' oracles should call when every observation reaches them intact: the
    reference their executed calls are checked against.
    """
    observed: list[Observation] = []
    outputs: dict[int, JsonValue] = {}
    rounds: list[tuple[Call, ...]] = []
    while len(rounds) < max_rounds:
        calls = script.next_calls(observed)
        if not calls:
            break
        made = []
        for call in calls:
            arguments = resolve_references(dict(call.arguments), outputs)
            try:
                output: JsonValue = await tools[call.tool].call(arguments)
                text: str | None = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
            except Exception:  # a failing tool is an observation like any other
                output, text = None, None
            outputs[len(outputs) + 1] = output
            observed.append(Observation(tool=call.tool, arguments=arguments, output=text))
            made.append(Call(tool=call.tool, arguments=arguments))
        rounds.append(tuple(made))
    tally = script.tally(observed) if isinstance(script, StepScript) else {}
    return OraclePlan(rounds=tuple(rounds), tally=tally)
