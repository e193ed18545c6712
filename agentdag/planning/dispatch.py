"""Where the nodes a planner writes go: into the run, onto an earlier call's output, or nowhere.

A planner's reply streams in node by node (`Reply.offer`). A node that calls something new is checked and
added to the run at once. A node that makes the same call as an earlier one (a *repeat*) is treated by one
rule, since tools have side effects:

* it may **reuse** the earlier call's output only when its tool is read-only or idempotent, the earlier call
  has not failed, and it comes after no side effect that the earlier call did not come after. "Comes after"
  means: downstream in the plan, or written after the side effect was planned (a later round, a repair, a
  refinement), since by then the side effect may have happened. An idempotent call straight after its own
  twin may reuse it too: doing it again would change nothing.
* every other repeat **runs**. It is held back until the reply moves on to a new call (or ends), because
  a planner that repeats itself is looping: after three repeats in a row the reading stops, and the repeats
  that would have run are dropped. A replan whose nodes repeat the last round's plan exactly is not run
  either.

The rule reads only what a plan says (tools, arguments, dependencies, the order replies came in), never
when nodes happened to run, so `agentdag plan` (which runs nothing, see `Draft`) drafts the same plan that
`agentdag run` would run for the same replies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agentdag.canonical import call_text, plan_key
from agentdag.plan import Node, PlanProblem, check_node, dependencies_of
from agentdag.references import rename_references
from agentdag.toolsets.base import Tool

__all__ = ["MAX_REPEATS", "Dispatcher", "Draft", "Placed", "Reply", "Reuse", "Target"]

MAX_REPEATS = 3
"""Repeats in a row after which a reply counts as looping and its reading stops."""

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

    def add(self, node: Node, *, check: bool = True) -> object:
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

    def add(self, node: Node, *, check: bool = True) -> object:
        """Keep the node."""
        del check
        self.records[node.id] = _Drafted(node)
        return self.records[node.id]

    @property
    def nodes(self) -> list[Node]:
        """The placed nodes, in order."""
        return [item.node for item in self.records.values()]


@dataclass(frozen=True, slots=True)
class Reuse:
    """A repeated call: node `node_id` makes the same call as node `twin`."""

    node_id: int
    twin: int


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
        self._effects: dict[int, frozenset[int]] = {}
        self._calls: dict[int, str] = {}
        self.rounds: dict[int, list[Node]] = {}

    def reply(self, *, round_index: int, first_id: int, max_nodes: int) -> Reply:
        """Start reading one planner reply (a plan, a repair, a replan or a refinement)."""
        return Reply(self, round_index=round_index, first_id=first_id, max_nodes=max_nodes)

    def side_effecting(self, node: Node) -> bool:
        """Whether the node's tool may change the world (it is not read-only)."""
        tool = self.tools.get(node.tool)
        return tool is None or not tool.policy.read_only

    def effects_of(self, node_id: int) -> frozenset[int]:
        """The side-effecting nodes that node `node_id` comes after (empty when unknown, e.g. restored)."""
        return self._effects.get(node_id, frozenset())

    def call_of(self, node_id: int, node: Node) -> str:
        """The canonical call of a placed node (cached: placed nodes never change)."""
        text = self._calls.get(node_id)
        if text is None:
            text = self._calls[node_id] = call_text(node, self.target.records)
        return text

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

    def place(self, node: Node, effects: frozenset[int]) -> list[PlanProblem]:
        """Check a node and put it into the target; its problems if it cannot be placed."""
        problems = check_node(node, self.tools, self.target.records)
        if problems:
            return problems
        self.target.add(node, check=False)
        self._effects[node.id] = effects
        return []


@dataclass(slots=True)
class _Held:
    node: Node
    effects: frozenset[int]
    twin: int


@dataclass(eq=False)
class Reply:
    """One planner reply as it streams in; create it with `Dispatcher.reply`, offer its nodes, then `close` it.

    Attributes:
        added: ids of the nodes this reply put into the run.
        problems: what was wrong with the nodes that were not placed.
        stopped: why the reading stopped early (a loop, too many nodes), or None.
        reused: repeats that reuse an earlier output instead of running.
        rerun: repeats that run again (their tool has side effects, or a side effect came first).
        dropped: repeats that would have run but were dropped because the reply was looping.
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
    rerun: list[Reuse] = field(default_factory=list, init=False)
    dropped: int = field(default=0, init=False)
    repeated_round: int | None = field(default=None, init=False)
    _held: list[_Held] = field(default_factory=list, init=False)
    _listed: list[Node] = field(default_factory=list, init=False)
    _repeats: int = field(default=0, init=False)
    _count: int = field(default=0, init=False)
    _prior: frozenset[int] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        records = self.dispatcher.target.records
        self._prior = frozenset(
            node_id for node_id, placed in records.items() if self.dispatcher.side_effecting(placed.node)
        )

    def offer(self, node: Node) -> None:
        """Take one complete node of the reply: place it, reuse an earlier output, hold it, or refuse it."""
        if self.stopped is not None:
            return
        dispatcher = self.dispatcher
        node = dispatcher.apply_aliases(node)
        existing = self._known(node.id)
        if existing is not None:
            if self._call(node) == self._call_of_known(node.id, existing):
                self._listed.append(node)  # a repaired plan or a replan lists a node that exists already
            else:
                message = f"id {node.id} is taken; number new nodes from {self.first_id}"
                self.problems.append(PlanProblem(node.id, "duplicate_id", message))
            return
        if self._count >= self.max_nodes:
            self.stopped = f"the plan has more than max_nodes ({self.max_nodes}) nodes; stopped reading"
            return
        self._count += 1
        self._listed.append(node)
        effects = self._effects_before(node)
        twins = self._twins(node)
        if not twins:
            self._repeats = 0
            self._flush()
            self._place(node, effects)
            return
        self._repeats += 1
        twin = next((twin for twin in twins if self._can_reuse(node, effects, twin)), None)
        if twin is not None:
            dispatcher.aliases[node.id] = twin
            self.reused.append(Reuse(node.id, twin))
        else:
            self._held.append(_Held(node, effects, twins[0]))
        if self._repeats >= MAX_REPEATS:
            self.stopped = f"the planner repeated earlier nodes {self._repeats} times in a row; stopped reading"
            self.dropped += len(self._held)
            self._held.clear()

    def close(self) -> None:
        """The reply has ended: run the repeats still held, unless the reply only repeated the last round."""
        if self._held and not self.added and self.round_index > 0:
            earlier = self.dispatcher.rounds.get(self.round_index - 1)
            if earlier and plan_key(self._listed) == plan_key(earlier):
                self.repeated_round = self.round_index - 1
                self.dropped += len(self._held)
                self._held.clear()
        self._flush()
        self.dispatcher.rounds.setdefault(self.round_index, []).extend(self._listed)

    # -- the rule ---------------------------------------------------------------------------------------

    def _effects_before(self, node: Node) -> frozenset[int]:
        """The side-effecting nodes `node` comes after.

        Those are its ancestors that have side effects, and every side-effecting node of an earlier reply.
        """
        dispatcher = self.dispatcher
        effects = set(self._prior)
        for dependency in dependencies_of(node, self._ids()):
            held = self._held_node(dependency)
            if held is not None:
                effects |= held.effects
                placed: Node | None = held.node
            else:
                effects |= dispatcher.effects_of(dependency)
                record = dispatcher.target.records.get(dependency)
                placed = record.node if record is not None else None
            if placed is not None and dispatcher.side_effecting(placed):
                effects.add(dependency)
        return frozenset(effects)

    def _can_reuse(self, node: Node, effects: frozenset[int], twin: int) -> bool:
        dispatcher = self.dispatcher
        tool = dispatcher.tools.get(node.tool)
        if tool is None or not tool.policy.idempotent:
            return False
        held = self._held_node(twin)
        if held is not None:
            return False  # it has not run yet and may never: nothing to reuse
        record = dispatcher.target.records.get(twin)
        if record is None or record.status in _ENDED_WITHOUT_OUTPUT:
            return False
        return effects - {twin} <= dispatcher.effects_of(twin)

    def _twins(self, node: Node) -> list[int]:
        """Earlier nodes (held ones of this reply first, then placed ones, latest first) making the same call."""
        call = self._call(node)
        twins = [held.node.id for held in reversed(self._held) if self._call(held.node) == call]
        records = self.dispatcher.target.records
        for node_id in sorted(records, reverse=True):
            record = records[node_id]
            if record.status not in _ENDED_WITHOUT_OUTPUT and self.dispatcher.call_of(node_id, record.node) == call:
                twins.append(node_id)
        return twins

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _place(self, node: Node, effects: frozenset[int]) -> None:
        problems = self.dispatcher.place(node, effects)
        if problems:
            self.problems.extend(problems)
        else:
            self.added.append(node.id)

    def _flush(self) -> None:
        held, self._held = self._held, []
        for item in held:
            self.rerun.append(Reuse(item.node.id, item.twin))
            self._place(item.node, item.effects)

    def _call(self, node: Node) -> str:
        return call_text(node, self._ids())

    def _call_of_known(self, node_id: int, node: Node) -> str:
        record = self.dispatcher.target.records.get(node_id)
        return self.dispatcher.call_of(node_id, node) if record is not None else self._call(node)

    def _ids(self) -> set[int]:
        return {*self.dispatcher.target.records, *(held.node.id for held in self._held)}

    def _held_node(self, node_id: int) -> _Held | None:
        return next((held for held in self._held if held.node.id == node_id), None)

    def _known(self, node_id: int) -> Node | None:
        """The node already listed under `node_id`: placed, held, or reused (then its twin's call)."""
        dispatcher = self.dispatcher
        record = dispatcher.target.records.get(node_id)
        if record is not None:
            return record.node
        held = self._held_node(node_id)
        if held is not None:
            return held.node
        twin = dispatcher.aliases.get(node_id)
        if twin is not None:
            placed = dispatcher.target.records.get(twin)
            if placed is not None:
                return placed.node
        return None
