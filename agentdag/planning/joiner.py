"""The joiner: after a round's nodes end, decide to finish with an answer or to plan again.

A reply that is no decision (cut off before its answer, or not JSON at all) goes back once with the reason;
a truncated decision keeps the answer it got to write (`parse_decision` salvages it). A JSON fragment is
never taken for the answer: after a second reply that is no decision, the run fails with "no answer".
"""

from __future__ import annotations

from collections.abc import Iterable

from agentdag.planning.context import PlanningRun
from agentdag.planning.prompts import direct_request, joiner_request, joiner_retry
from agentdag.planning.stream import ask
from agentdag.records import NodeRecord
from agentdag.schemas import Decision, parse_decision

__all__ = ["answer_directly", "join"]

_ATTEMPTS = 2


async def join(run: PlanningRun, records: Iterable[NodeRecord], round_index: int) -> Decision | None:
    """The joiner's decision on the records so far, or None if it gave none twice."""
    run.emit("joining", round_index)
    request = joiner_request(run.template, run.task, records, run.config)
    for attempt in range(_ATTEMPTS):
        response = await ask(run, "joiner", request)
        decision = parse_decision(response.text)
        if decision is not None:
            return decision
        what = "empty" if not response.text.strip() else f"{len(response.text)} characters, no decision in them"
        run.journal.note(f"round {round_index}: the joiner's reply {attempt + 1} was not a decision ({what})")
        request = joiner_retry(request, run.template, response.text, f"the reply was not a decision ({what})")
    return None


async def answer_directly(run: PlanningRun) -> str:
    """The fallback when no plan is valid: the joiner's model answers without tools."""
    run.journal.note("no valid plan: answered directly without tools")
    response = await ask(run, "joiner", direct_request(run.template, run.task, run.config))
    return response.text.strip()
