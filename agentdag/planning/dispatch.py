"""Where the nodes a planner writes go: into the run, onto an earlier call's output, or nowhere.

A planner's reply streams in node by node (`Reply.offer`). A node that calls something new is checked and
added to the run at once. A node that makes the same call as an earlier one (a *repeat*) is treated by one
rule, since tools have side effects:

* it may **reuse** the earlier call's output only when its tool is read-only or idempotent, and it comes
  after no side effect that the earlier call did not come after. "Comes after" means: downstream in the
  plan, or written in a later reply than the side effect (a later round, a repair, a refinement), since by
  then the side effect may have happened. An idempotent call straight after its own twin may reuse it too:
  doing it again would change nothing. A call of an earlier round that failed is not reused: it runs again.
* every other repeat **runs**. It is held back until the reply moves on to a new call (or ends), because a
  planner that repeats itself is looping: after three repeats in a row of calls the same reply already made,
  the reading stops, and the repeats that would have run are dropped. A replan whose calls repeat the last
  round's plan exactly is not run either.

The rule reads only what the plan says (tools, arguments, dependencies, the order and the round of the
replies) and, for earlier rounds, how their nodes ended; never how far the current round's nodes have got.
So `agentdag plan` (which runs nothing, see `Draft`) drafts the same plan `agentdag run` starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agentdag.canonical import call_text, plan_key
from agentdag.plan import Node, PlanProblem, check_node, dependencies_of
from agentdag.references import rename_references
from agentdag.toolsets.base import Tool

__all__ = ["MAX_REPEATS", "Dispatcher", "Draft", "Placed", "Reply", "Rerun", "Reuse", "Target"]

MAX_REPEATS = 3
"""Repeats in a row, of calls the same reply already made, after which the reply counts as looping."""

_ENDED_WITHOUT_OUTPUT = frozenset({"failed", "skipped", "cancelled"})


class Placed(Protocol):
    """A node already in the run, as the dispatcher sees it."""

    @property
    def node(self) -> Node:
        """The node."""
        ...

    @property
    def status(self) -> str:
        """Its status; a node that failed, was skipped or was cancelled has no output to reuse."""
        ...


class Target(Protocol):
    """Where placed nodes go: an `Execution` (they run), or a `Draft` (they are only kept)."""

    @property
    def records(self) -> Mapping[int, Placed]:
        """The nodes placed so far, by id."""
        ...

    def submit(self, node: Node, *, check: bool = True) -> None:
        """Place a node that was checked already."""
        ...


@dataclass(slots=True)
class _Drafted:
    node: Node
    status: str = "queued"


class Draft:
    """A target that runs nothing: it keeps the nodes in the order they were placed (`agentdag plan`)."""

    def __init__(self) -> None:
        self.records: dict[int, _Drafted] = {}

    def submit(self, node: Node, *, check: bool = True) -> None:
        """Keep the node."""
        del check
        self.records[node.id] = _Drafted(node)

    @property
    def nodes(self) -> list[Node]:
        """The placed nodes, in order."""
        return [item.node for item in self.records.values()]


@dataclass(frozen=True, slots=True)
class Reuse:
    """A repeated call that reuses an earlier output: node `node_id` makes the same call as node `twin`."""

    node_id: int
    twin: int


@dataclass(frozen=True, slots=True)
class Rerun:
    """A repeated call that runs again, and why.

    Attributes:
        node_id: the repeat.
        twin: the earlier node making the same call.
        why: "side_effects" (its tool is neither read-only nor idempotent), "after" (a side effect comes
            before it that did not come before the twin: `after` lists them), or "failed" (the twin, of an
            earlier round, ended without an output).
        after: the side-effecting nodes it comes after and the twin does not.
    """

    node_id: int
    twin: int
    why: Literal["side_effects", "after", "failed"]
    after: tuple[int, ...] = ()


@dataclass(slots=True)
class _Known:
    """What the dispatcher keeps of each placed node."""

    call: str
    effects: frozenset[int]
    round: int


class Dispatcher:
    """The nodes a planner has written into one run, across its replies, and what became of each.

    Args:
        tools: the tools plans may call.
        target: where placed nodes go.
    """

    def __init__(self, tools: Mapping[str, Tool], target: Target) -> None:
        self.tools = tools
        self.target = target
        self.aliases: dict[int, int] = {}
        self.rounds: dict[int, list[Node]] = {}
        self._known: dict[int, _Known] = {}

    def reply(self, *, round_index: int, first_id: int, max_nodes: int) -> Reply:
        """Start reading one planner reply (a plan, a repair, a replan or a refinement)."""
        return Reply(self, round_index=round_index, first_id=first_id, max_nodes=max_nodes)

    def next_id(self) -> int:
        """The first id no node has taken: placed nodes and reused ones (whose ids stay theirs) alike."""
        return max([*self.target.records, *self.aliases], default=0) + 1

    def side_effecting(self, node: Node) -> bool:
        """Whether the node's tool may change the world (it is not read-only)."""
        tool = self.tools.get(node.tool)
        return tool is None or not tool.policy.read_only

    def effects_of(self, node_id: int) -> frozenset[int]:
        """The side-effecting nodes that node `node_id` comes after (empty when unknown, e.g. restored)."""
        known = self._known.get(node_id)
        return known.effects if known is not None else frozenset()

    def call_of(self, node_id: int, node: Node) -> str:
        """The canonical call of a placed node, as it read when it was placed."""
        known = self._known.get(node_id)
        return known.call if known is not None else call_text(node, self.target.records)

    def round_of(self, node_id: int) -> int | None:
        """The round a placed node was planned in (None for a node placed otherwise, e.g. restored)."""
        known = self._known.get(node_id)
        return known.round if known is not None else None

    def apply_aliases(self, node: Node) -> Node:
        """The node with references to reused nodes pointed at the nodes whose outputs they reuse."""
        if not self.aliases:
            return node
        return node.model_copy(
            update={
                "arguments": rename_references(node.arguments, self.aliases),
                "depends_on": tuple(self.aliases.get(item, item) for item in node.depends_on),
            }
        )

    def place(self, node: Node, effects: frozenset[int], round_index: int) -> list[PlanProblem]:
        """Check a node and put it into the target; its problems if it cannot be placed."""
        problems = check_node(node, self.tools, self.target.records)
        if problems:
            return problems
        call = call_text(node, self.target.records)
        self.target.submit(node, check=False)
        self._known[node.id] = _Known(call=call, effects=effects, round=round_index)
        return []


@dataclass(slots=True)
class _Held:
    node: Node
    effects: frozenset[int]
    rerun: Rerun


@dataclass(eq=False)
class Reply:
    """One planner reply as it streams in; create it with `Dispatcher.reply`, offer its nodes, then `close` it.

    Attributes:
        added: ids of the nodes this reply put into the run.
        problems: what was wrong with the nodes that were not placed.
        stopped: why the reading stopped early (a loop, too many nodes), or None.
        reused: repeats that reuse an earlier output instead of running.
        rerun: repeats that run again, with why.
        dropped: repeats that would have run (or reuse one that would have) but were dropped because the
            reply was looping.
        repeated_round: the round whose plan this reply repeated exactly (it added nothing), or None.
    """

    dispatcher: Dispatcher
    round_index: int
    first_id: int
    max_nodes: int
    added: list[int] = field(default_factory=list, init=False)
    problems: list[PlanProblem] = field(default_factory=list, init=False)
    stopped: str | None = field(default=None, init=False)
    reused: list[Reuse] = field(default_factory=list, init=False)
    rerun: list[Rerun] = field(default_factory=list, init=False)
    dropped: int = field(default=0, init=False)
    repeated_round: int | None = field(default=None, init=False)
    _held: list[_Held] = field(default_factory=list, init=False)
    _mine: set[int] = field(default_factory=set, init=False)  # ids this reply placed, held or reused
    _accepted: list[Node] = field(default_factory=list, init=False)
    _repeats: int = field(default=0, init=False)
    _count: int = field(default=0, init=False)
    _prior: frozenset[int] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        dispatcher = self.dispatcher
        records = dispatcher.target.records
        self._prior = frozenset(
            node_id for node_id, placed in records.items() if dispatcher.side_effecting(placed.node)
        )

    def offer(self, node: Node) -> None:
        """Take one complete node of the reply: place it, reuse an earlier output, hold it, or refuse it."""
        if self.stopped is not None:
            return
        dispatcher = self.dispatcher
        node = dispatcher.apply_aliases(node)
        existing = self._existing(node.id)
        if existing is not None:
            if self._call(node) != self._call(existing):
                message = f"id {node.id} is taken; number new nodes from {dispatcher.next_id()}"
                self.problems.append(PlanProblem(node.id, "duplicate_id", message))
            return  # else a repaired plan or a replan lists a node that exists already
        if self._count >= self.max_nodes:
            self.stopped = f"the plan has more than max_nodes ({self.max_nodes}) nodes; stopped reading"
            return
        self._count += 1
        effects = self._effects_before(node)
        twins = self._twins(node)
        if not twins:
            self._repeats = 0
            self._flush()
            self._place(node, effects)
            return
        self._accepted.append(node)
        self._mine.add(node.id)
        if any(twin in self._mine for twin in twins):
            self._repeats += 1  # the reply repeats a call it made itself: the plan is repeating itself
        outcome = self._judge(node, effects, twins)
        if isinstance(outcome, Reuse):
            dispatcher.aliases[node.id] = outcome.twin
            self.reused.append(outcome)
        else:
            self._held.append(_Held(node, effects, outcome))
        if self._repeats >= MAX_REPEATS:
            self.stopped = f"the planner repeated earlier nodes {self._repeats} times in a row; stopped reading"
            self._drop_held()

    def close(self) -> None:
        """The reply has ended: run the repeats still held, unless the reply only repeated the last round."""
        if self._held and not self.added and self.round_index > 0:
            earlier = self.dispatcher.rounds.get(self.round_index - 1)
            if earlier and plan_key(self._accepted) == plan_key(earlier):
                self.repeated_round = self.round_index - 1
                self._drop_held()
        self._flush()
        self.dispatcher.rounds.setdefault(self.round_index, []).extend(self._accepted)

    # -- the rule ---------------------------------------------------------------------------------------

    def _judge(self, node: Node, effects: frozenset[int], twins: list[int]) -> Reuse | Rerun:
        """Reuse the latest twin the rule allows, or say why the repeat runs again."""
        tool = self.dispatcher.tools.get(node.tool)
        if tool is None or not tool.policy.idempotent:
            return Rerun(node.id, twins[0], "side_effects")
        reason: Rerun | None = None
        for twin in twins:
            if self._failed_earlier(twin):
                reason = reason or Rerun(node.id, twin, "failed")
                continue
            extra = effects - {twin} - self._effects_of(twin)
            if not extra:
                return Reuse(node.id, twin)
            reason = reason or Rerun(node.id, twin, "after", tuple(sorted(extra)))
        assert reason is not None
        return reason

    def _failed_earlier(self, twin: int) -> bool:
        """Whether the twin is of an earlier round and ended without an output (then it is not reused)."""
        dispatcher = self.dispatcher
        record = dispatcher.target.records.get(twin)
        planned_in = dispatcher.round_of(twin)
        earlier = planned_in is None or planned_in < self.round_index
        return record is not None and earlier and record.status in _ENDED_WITHOUT_OUTPUT

    def _effects_before(self, node: Node) -> frozenset[int]:
        """The side-effecting nodes `node` comes after.

        Those are its ancestors that have side effects, and every side-effecting node of an earlier reply.
        """
        dispatcher = self.dispatcher
        effects = set(self._prior)
        for dependency in dependencies_of(node, self._ids()):
            effects |= self._effects_of(dependency)
            upstream = self._node_of(dependency)
            if upstream is not None and dispatcher.side_effecting(upstream):
                effects.add(dependency)
        return frozenset(effects)

    def _twins(self, node: Node) -> list[int]:
        """Earlier nodes making the same call: held ones of this reply first, then placed ones, latest first."""
        call = self._call(node)
        twins = [held.node.id for held in reversed(self._held) if self._call(held.node) == call]
        records = self.dispatcher.target.records
        call_of = self.dispatcher.call_of
        latest_first = sorted(records, reverse=True)
        return twins + [node_id for node_id in latest_first if call_of(node_id, records[node_id].node) == call]

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _place(self, node: Node, effects: frozenset[int]) -> None:
        problems = self.dispatcher.place(node, effects, self.round_index)
        if problems:
            self.problems.extend(problems)
            return
        self.added.append(node.id)
        if node.id not in self._mine:
            self._mine.add(node.id)
            self._accepted.append(node)

    def _flush(self) -> None:
        held, self._held = self._held, []
        for item in held:
            self.rerun.append(item.rerun)
            self._place(item.node, item.effects)

    def _drop_held(self) -> None:
        """Drop the held repeats, and the reuses of them (they would reuse what never runs)."""
        dropped = {held.node.id for held in self._held}
        self._held.clear()
        aliases = self.dispatcher.aliases
        for reuse in [item for item in self.reused if item.twin in dropped]:
            del aliases[reuse.node_id]
            self.reused.remove(reuse)
            dropped.add(reuse.node_id)
        self.dropped += len(dropped)
        self._accepted = [node for node in self._accepted if node.id not in dropped]

    def _call(self, node: Node) -> str:
        return call_text(node, self._ids())

    def _ids(self) -> set[int]:
        return {*self.dispatcher.target.records, *(held.node.id for held in self._held)}

    def _held_item(self, node_id: int) -> _Held | None:
        return next((held for held in self._held if held.node.id == node_id), None)

    def _effects_of(self, node_id: int) -> frozenset[int]:
        held = self._held_item(node_id)
        return held.effects if held is not None else self.dispatcher.effects_of(node_id)

    def _node_of(self, node_id: int) -> Node | None:
        held = self._held_item(node_id)
        if held is not None:
            return held.node
        record = self.dispatcher.target.records.get(node_id)
        return record.node if record is not None else None

    def _existing(self, node_id: int) -> Node | None:
        """The node already listed under `node_id`: placed, held, or reused (then its twin's call)."""
        found = self._node_of(node_id)
        if found is not None:
            return found
        twin = self.dispatcher.aliases.get(node_id)
        return self._node_of(twin) if twin is not None else None
