"""Ranking plans: `StructureSelect` prefers a valid plan that covers the task and repeats no call.

Votes over plans compare plan keys (see `agentdag.scaling.reading.extract_plan`), so plans that make the
same calls agree however they number their nodes. When the candidates differ, this selector reads each one
with the planner's own reader and ranks them; it applies to the planner role only.
"""

from __future__ import annotations

import re

from agentdag.canonical import call_text, plan_key
from agentdag.errors import ModelError
from agentdag.models.base import Model
from agentdag.parsers import ReadPlan
from agentdag.plan import dependencies_of
from agentdag.references import REF_KEY
from agentdag.scaling.answers import vote
from agentdag.scaling.best_of_n import Candidates, Selector
from agentdag.scaling.budget import Ledger
from agentdag.scaling.reading import current_plan_reading

__all__ = ["StructureSelect", "score_plan"]

_TERM = re.compile(r"\"([^\"]{2,60})\"|'([^']{2,60})'|(\d+(?:\.\d+)?)|\b([A-Z][\w-]+)")
_WORD = re.compile(r"\w{4,}")
_NUMERIC = re.compile(r"\d+(?:\.\d+)?")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")
_REFERENCE_TEXT = re.compile(r"\$\{[^}]*\}|\$\d+")
_COMMON = frozenset(
    {
        "what",
        "which",
        "where",
        "when",
        "whom",
        "whose",
        "that",
        "this",
        "these",
        "those",
        "there",
        "their",
        "they",
        "them",
        "then",
        "than",
        "with",
        "from",
        "into",
        "about",
        "would",
        "could",
        "should",
        "have",
        "does",
        "were",
        "been",
        "being",
        "much",
        "many",
        "more",
        "most",
        "some",
        "such",
        "each",
        "also",
        "only",
        "just",
        "very",
        "task",
        "answer",
        "tell",
        "give",
        "find",
        "show",
        "list",
    }
)


def score_plan(read: ReadPlan, task: str) -> tuple[bool, float, int, int]:
    """How good a plan looks without running it: (valid, coverage, minus repeated calls, independent calls).

    Coverage is the share of the task's salient terms (quoted phrases, numbers, capitalised names; else its
    content words) that appear in the plan's arguments; a number counts only whole (the task's `2` is not
    in `12 + 30`). A repeated call is a node that makes the same call as an earlier node of the plan, which
    the planner would reuse, not run (small models repeat one node over and over). Independent calls are the
    distinct calls that wait for no other node of the plan.
    """
    nodes = read.nodes
    text = " ".join(value for node in nodes for value in _literals(node.arguments)).lower()
    terms = _terms(task)
    coverage = sum(_mentions(text, term) for term in terms) / len(terms) if terms else 1.0
    ids = {node.id for node in nodes}
    calls = [call_text(node, ids) for node in nodes]
    roots = {call for node, call in zip(nodes, calls, strict=True) if not dependencies_of(node, ids) & ids}
    return read.valid, coverage, len(set(calls)) - len(calls), len(roots)


def _mentions(text: str, term: str) -> bool:
    if _NUMERIC.fullmatch(term):
        return re.search(rf"(?<![\d.]){re.escape(term)}(?![\d]|\.\d)", text) is not None
    return term in text


def _terms(task: str) -> set[str]:
    """The task's salient terms; a capitalised word that only opens a sentence is not taken for a name."""
    found: set[str] = set()
    for match in _TERM.finditer(task):
        term = next(part for part in match.groups() if part)
        opens_sentence = match.group(4) is not None and _SENTENCE_START.search(task[: match.start()]) is not None
        if not opens_sentence:
            found.add(term.lower())
    salient = {term for term in found if term not in _COMMON}
    return salient or {word.lower() for word in _WORD.findall(task) if word.lower() not in _COMMON}


def _literals(value: object) -> list[str]:
    """The literal values of arguments, as text: strings and numbers, not keys and not references."""
    if isinstance(value, dict):
        if REF_KEY in value:
            return []
        return [text for item in value.values() for text in _literals(item)]
    if isinstance(value, list):
        return [text for item in value for text in _literals(item)]
    if isinstance(value, str):
        return [_REFERENCE_TEXT.sub(" ", value)]
    return [] if value is None or isinstance(value, bool) else [str(value)]


class StructureSelect(Selector):
    """The plan that validates, covers the task, repeats no call, and makes the most independent calls.

    It ranks the candidates of a planner call with the planner's own reader (so it applies to the planner
    role only); ties go to the plan most candidates agree on, then to the earliest candidate.
    """

    async def select(self, candidates: Candidates, ledger: Ledger, model: Model) -> int:
        """Read every candidate as a plan and rank them."""
        reading = current_plan_reading()
        if reading is None:
            raise ModelError(
                "selector 'structure' ranks plans and applies to the planner only", source="best_of_n strategy"
            )
        reads = [reading.reader.read(completion.text, known=reading.known) for completion in candidates.completions]
        keys = [f"plan:{plan_key(read.nodes, reading.known)}" if read.nodes else None for read in reads]
        majority = set(vote(keys, lambda first, second: first == second).members)
        scores = [(*score_plan(read, reading.task), index in majority, -index) for index, read in enumerate(reads)]
        return max(range(len(scores)), key=lambda index: scores[index])
