"""The repair loop: ask for a plan, read it as it streams, and send its problems back until it is valid.

`plan_round` is the one path from planner replies to nodes: `Planner.run` takes it for every round and
`Planner.draft` for the draft, so the same replies give the same plan. Valid nodes go to the dispatcher's
target at once (into the run, or into a draft); invalid ones go back to the model with the exact problems,
up to `max_repairs` times.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdag.plan import PlanProblem
from agentdag.planning.context import PlanningRun
from agentdag.planning.dispatch import Dispatcher, Reply
from agentdag.planning.prompts import planner_request, repair_request
from agentdag.planning.stream import stream_reply

__all__ = ["Planned", "note_reply", "plan_round"]


@dataclass(frozen=True, slots=True)
class Planned:
    """What one round of planning did.

    Attributes:
        added: nodes added to the target.
        problems: what was still wrong after the last repair (empty when the plan was valid).
        repeated: the round whose plan this one repeated exactly (then nothing of it ran), or None.
    """

    added: int
    problems: list[PlanProblem]
    repeated: int | None = None


async def plan_round(run: PlanningRun, dispatcher: Dispatcher, *, replanning: str | None = None) -> Planned:
    """Stream a plan into the dispatcher's target for the journal's current round, repairing it as needed.

    Args:
        run: the run's planning.
        dispatcher: where the nodes go.
        replanning: for a replan, the replan prompt (results so far, why, where ids start).
    """
    round_index = run.journal.round
    first_id = dispatcher.next_id()
    request = planner_request(run.template, run.config, run.tools, run.task, first_id=first_id, replanning=replanning)
    added: list[int] = []
    problems: list[PlanProblem] = []
    for attempt in range(run.config.max_repairs + 1):
        run.emit("planning", round_index, f"attempt {attempt + 1}")
        reply = dispatcher.reply(round_index=round_index, first_id=first_id, max_nodes=run.config.max_nodes)
        parser = run.reader.parser()
        text, cut_off = await stream_reply(run, request, reply, parser)
        run.journal.planned(attempt + 1, text)
        added += reply.added
        note_reply(run, reply)
        if reply.repeated_round is not None:
            return Planned(len(added), [], reply.repeated_round)
        problems = [*parser.problems, *reply.problems]
        stopped = reply.stopped or cut_off
        if stopped:
            if added:
                dropped = f"; dropped {reply.dropped} repeat(s)" if reply.dropped else ""
                run.journal.note(f"round {round_index}: {stopped}{dropped}; ran the complete nodes")
            else:
                problems.append(PlanProblem(None, "malformed", f"{stopped}; write a shorter plan"))
        if not problems:
            run.emit("planned", round_index, f"{len(added)} node(s)")
            if attempt:
                run.journal.note(f"round {round_index}: plan repaired after {attempt} attempt(s)")
            return Planned(len(added), [])
        run.emit("plan_invalid", round_index, "; ".join(str(problem) for problem in problems[:5]))
        if attempt < run.config.max_repairs:
            kept = f"Nodes {', '.join(map(str, added))} are valid and already running." if added else ""
            problem_lines = "\n".join(f"- {problem}" for problem in problems)
            request = repair_request(request, run.template, text, problem_lines, kept)
    what = f"ran the {len(added)} valid node(s)" if added else "no valid node"
    run.journal.note(
        f"round {round_index}: the plan was still invalid after {run.config.max_repairs} repair(s); {what}"
    )
    run.emit("fallback", round_index, what)
    return Planned(len(added), problems)


def note_reply(run: PlanningRun, reply: Reply) -> None:
    """Say which repeated calls of a reply reused an earlier output and which ran again."""
    if reply.reused:
        pairs = ", ".join(f"node {item.node_id} → node {item.twin}" for item in reply.reused)
        run.journal.note(f"{len(reply.reused)} planned node(s) repeated earlier calls; reused their outputs: {pairs}")
    for item in reply.rerun:
        record = reply.dispatcher.target.records.get(item.node_id)
        if record is None:
            continue  # it was not valid after all: its problems went back to the planner
        if item.why == "side_effects":
            why = f"{record.node.tool!r} may have side effects"
        elif item.why == "failed":
            why = f"node {item.twin} ended without an output"
        else:
            why = f"it comes after node(s) {', '.join(map(str, item.after))}, which may have changed its result"
        run.journal.note(f"node {item.node_id} repeats node {item.twin}'s call and runs again: {why}")
