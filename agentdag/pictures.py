"""Pictures of plans and runs: mermaid and graphviz text of a DAG, and PNGs drawn with matplotlib.

Mermaid and dot are plain text and need nothing. The PNGs need matplotlib (`pip install 'agentdag[plots]'`),
imported only when a picture is drawn.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentdag.errors import AgentdagError
from agentdag.plan import Node, dependencies_of
from agentdag.summary import NodeSummary, RunSummary, format_seconds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PLOTS_INSTALL_HINT",
    "draw_plan",
    "draw_timeline",
    "ensure_plots_available",
    "model_phases",
    "plan_figure",
    "plan_to_dot",
    "plan_to_mermaid",
    "timeline_figure",
]

PLOTS_INSTALL_HINT = "pip install 'agentdag[plots]' (or pip install matplotlib)"
STATUS_COLOURS = {
    "done": "#4caf50",
    "failed": "#e53935",
    "skipped": "#ab47bc",
    "cancelled": "#9e9e9e",
    "running": "#fbc02d",
    "queued": "#cfd8dc",
}
PHASE_COLOURS = {"planner": "#1e88e5", "joiner": "#fb8c00"}
_PHASE_ENDS = {
    "planner": frozenset({"planned", "plan_invalid", "fallback", "planning", "stopped"}),
    "joiner": frozenset({"finished", "replanning", "stopped", "joining", "planning"}),
}
_OTHER_COLOUR = "#90a4ae"  # a status without a colour of its own
_EDGE_COLOUR = "#607d8b"
_CRITICAL_COLOUR = "#212121"
_LABEL_CHARS = 36
_MARK_LABELS = frozenset({"waited for", "critical path"})
_MOST_INCHES = 44.0  # a picture's longest side; bigger ones are scaled down (about 4,800 pixels)
_SMALLEST_FONT = 4.5  # points: below this, labels are dropped rather than shrunk
# Plan pictures: slots of this size hold one box each; a layer wider than _MOST_COLUMNS boxes wraps.
_SLOT_IN, _ROW_IN = 2.5, 0.9
_BOX_HALF_WIDTH, _BOX_HALF_HEIGHT = 0.44, 0.28  # in slots and rows
_MOST_COLUMNS = 10
_LAYER_GAP = 0.4  # rows between one layer and the next, beyond the rows of a wrapped layer
# Timelines: a row per node, thinner when there are many; bars at least this share of the time axis.
_ROW_PITCH_IN, _TIMELINE_MARGIN_IN = 0.4, 1.6
_SHORTEST_BAR = 0.008


def _edges(nodes: Sequence[Node]) -> list[tuple[int, int]]:
    known = {node.id for node in nodes}
    return [(dependency, node.id) for node in nodes for dependency in sorted(dependencies_of(node, known))]


def _arguments_text(node: Node) -> str:
    if len(node.arguments) == 1:
        (value,) = node.arguments.values()
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(node.arguments, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def plan_to_mermaid(nodes: Sequence[Node]) -> str:
    """The plan as a mermaid `flowchart TD` (paste it into any mermaid renderer, or a GitHub README)."""
    lines = ["flowchart TD"]
    for node in nodes:
        label = f"{node.id}: {node.tool}<br/>{_arguments_text(node)}".replace('"', "#quot;")
        lines.append(f'    n{node.id}["{label}"]')
    lines.extend(f"    n{source} --> n{target}" for source, target in _edges(nodes))
    return "\n".join(lines) + "\n"


def plan_to_dot(nodes: Sequence[Node]) -> str:
    """The plan as graphviz dot text (`dot -Tsvg plan.dot > plan.svg`)."""
    lines = ["digraph plan {", "    rankdir=TB;", '    node [shape=box, style="rounded,filled", fillcolor="#e3f2fd"];']
    for node in nodes:
        label = f"{node.id}: {node.tool}\\n{_arguments_text(node)}".replace('"', '\\"')
        lines.append(f'    n{node.id} [label="{label}"];')
    lines.extend(f"    n{source} -> n{target};" for source, target in _edges(nodes))
    lines.append("}")
    return "\n".join(lines) + "\n"


def ensure_plots_available() -> None:
    """Check that PNGs can be drawn, before any work is done.

    Raises:
        AgentdagError: matplotlib is not installed, with how to install it.
    """
    try:
        import matplotlib  # noqa: F401 - imported only to find out whether it is there
    except ImportError:
        raise AgentdagError(f"drawing a PNG needs matplotlib, which is not installed: {PLOTS_INSTALL_HINT}") from None


def _new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise AgentdagError(f"drawing a PNG needs matplotlib: {PLOTS_INSTALL_HINT}") from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(figure: Figure, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    except OSError as error:
        raise AgentdagError(f"{path}: cannot write the picture: {error.strerror}") from None
    return path


def plan_figure(nodes: Sequence[Node], *, title: str = "") -> Figure:
    """The plan's DAG as a matplotlib figure: one box per node, in layers by dependency depth, arrows for edges.

    Layer N holds the nodes whose longest chain of dependencies is N long (the first layer needs nothing);
    a layer wider than ten boxes wraps onto more rows. Each arrow ends on the border of the box it points
    at, so every edge shows its direction; edges run over the boxes and under the labels, so one that
    crosses a box is not mistaken for an edge of that box. A plan too big for a readable page is scaled down, and below
    a legible font size its boxes show only the node ids. Box patches have the gid `node-ID`, arrows
    `edge-SOURCE-TARGET`.

    Raises:
        AgentdagError: matplotlib is not installed.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    edges = _edges(nodes)
    layout = _plan_layout(nodes, edges)
    width_in, height_in = layout.columns * _SLOT_IN, layout.rows * _ROW_IN
    scale = min(1.0, _MOST_INCHES / max(width_in, height_in))
    figure = _new_figure(max(4.0, width_in * scale), max(2.0, height_in * scale + (0.6 if title else 0.2)))
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_xlim(0, layout.columns)
    axes.set_ylim(-layout.rows, 0)
    fontsize = 8.0 * scale
    detailed = fontsize >= _SMALLEST_FONT
    for source, target in edges:
        (x0, y0), (x1, y1) = layout.position[source], layout.position[target]
        arrow = FancyArrowPatch(
            _box_border((x0, y0), (x1, y1)),
            _box_border((x1, y1), (x0, y0)),
            arrowstyle="-|>",
            # An edge that skips a layer bends, so it is not drawn on top of a chain of edges in line with it.
            connectionstyle=f"arc3,rad={0.15 if layout.depth[target] - layout.depth[source] > 1 else 0.0}",
            mutation_scale=max(4.0, 10.0 * scale),
            shrinkA=0,
            shrinkB=0,
            color=_EDGE_COLOUR,
            linewidth=max(0.4, 1.1 * scale),
            alpha=0.9 if len(edges) <= 60 else 0.5,
            zorder=2.5,  # over the boxes, under the labels: an edge that crosses a box is seen to go on
            gid=f"edge-{source}-{target}",
        )
        axes.add_patch(arrow)
    for node in nodes:
        x, y = layout.position[node.id]
        box = FancyBboxPatch(
            (x - _BOX_HALF_WIDTH, y - _BOX_HALF_HEIGHT),
            2 * _BOX_HALF_WIDTH,
            2 * _BOX_HALF_HEIGHT,
            boxstyle="round,pad=0,rounding_size=0.05",
            mutation_aspect=_SLOT_IN / _ROW_IN,
            facecolor="#e3f2fd",
            edgecolor="#1e88e5",
            linewidth=max(0.4, scale),
            zorder=2,
            gid=f"node-{node.id}",
        )
        axes.add_patch(box)
        label = _node_label(node) if detailed else str(node.id)
        size = fontsize if detailed else min(8.0, 3.0 * fontsize)
        axes.text(x, y, label, ha="center", va="center", fontsize=size, zorder=3, clip_on=True)
    if title:
        axes.set_title(textwrap.fill(title, width=max(40, int(12 * width_in * scale))), fontsize=10)
    return figure


def draw_plan(nodes: Sequence[Node], path: Path, *, title: str = "") -> Path:
    """Draw the plan's DAG as a PNG (`plan_figure`).

    Raises:
        AgentdagError: matplotlib is not installed, or the file cannot be written.
    """
    return _save(plan_figure(nodes, title=title), path)


@dataclass(frozen=True, slots=True)
class _PlanLayout:
    position: dict[int, tuple[float, float]]  # box centres: x in slots, y in rows (0 at the top, downwards)
    depth: dict[int, int]  # the layer of each node
    columns: int
    rows: float


def _plan_layout(nodes: Sequence[Node], edges: Sequence[tuple[int, int]]) -> _PlanLayout:
    sources: dict[int, list[int]] = {node.id: [] for node in nodes}
    for source, target in edges:
        sources[target].append(source)
    depth: dict[int, int] = {}
    for node in nodes:  # dependencies name earlier nodes, so one pass in plan order suffices
        depth[node.id] = 1 + max((depth.get(source, -1) for source in sources[node.id]), default=-1)
    layers: dict[int, list[int]] = {}
    for node in nodes:
        layers.setdefault(depth[node.id], []).append(node.id)
    columns = min(_MOST_COLUMNS, max((len(ids) for ids in layers.values()), default=1))
    position: dict[int, tuple[float, float]] = {}
    top = 0.0
    for level in sorted(layers):
        ids = layers[level]
        if level:  # under the middle of what each node waits for: fewer edges cross

            def middle(node_id: int) -> float:
                return sum(position[source][0] for source in sources[node_id]) / len(sources[node_id])

            ids = sorted(ids, key=lambda node_id: (middle(node_id), node_id))
        rows = -(-len(ids) // columns)
        used = -(-len(ids) // rows)
        for index, node_id in enumerate(ids):  # column by column, so left to right still follows the order
            column, row = divmod(index, rows)
            position[node_id] = ((columns - used) / 2 + column + 0.5, -(top + row + 0.5))
        top += rows + _LAYER_GAP
    return _PlanLayout(position=position, depth=depth, columns=columns, rows=max(1.0, top - _LAYER_GAP))


def _box_border(centre: tuple[float, float], toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre toward a point leaves the box."""
    dx, dy = toward[0] - centre[0], toward[1] - centre[1]
    reach = min(
        _BOX_HALF_WIDTH / abs(dx) if dx else float("inf"),
        _BOX_HALF_HEIGHT / abs(dy) if dy else float("inf"),
    )
    return centre[0] + reach * dx, centre[1] + reach * dy


def _node_label(node: Node) -> str:
    heading = f"{node.id}: {node.tool}"
    if len(heading) > _LABEL_CHARS:
        heading = heading[: _LABEL_CHARS - 1] + "…"
    return f"{heading}\n{_arguments_text(node)}"


def model_phases(steps: Sequence[tuple[str, float]], end: float) -> list[tuple[str, float, float]]:
    """The planner's and joiner's busy spans, `(role, start, finish)`, from planner/joiner events `(kind, time)`."""
    phases: list[tuple[str, float, float]] = []
    open_role: tuple[str, float] | None = None
    for kind, time in steps:
        if open_role is not None and kind in _PHASE_ENDS[open_role[0]]:
            phases.append((open_role[0], open_role[1], time))
            open_role = None
        if kind == "planning":
            open_role = ("planner", time)
        elif kind == "joining":
            open_role = ("joiner", time)
    if open_role is not None:
        phases.append((open_role[0], open_role[1], end))
    return phases


def timeline_figure(summary: RunSummary, *, title: str = "", steps: Sequence[tuple[str, float]] = ()) -> Figure:
    """A run as a Gantt chart figure: one bar per node from its start to its finish, coloured by status.

    Nodes are ordered by start time, top to bottom; grey arrows run from each dependency's end to the
    start of the node that waited for it, and a thin black line runs along the bars of the critical path,
    so the parallel overlap and what the run waited on are both visible. Bars have no outline and are
    at least a little wide, so a node that took a millisecond still shows its status colour. A node that
    never started is a cross where it was given up. With `steps` (the planner/joiner events as
    `(kind, seconds since the run started)`), a first row shows when the planner and the joiner worked.
    Node bars have the gid `node-ID`; the legend names every colour and mark drawn.

    Raises:
        AgentdagError: matplotlib is not installed.
    """
    from matplotlib.lines import Line2D

    nodes = sorted(summary.nodes, key=lambda node: (_start(node), node.id))
    phases = model_phases(steps, summary.wall_s)
    first = 1 if phases else 0
    row = {node.id: index + first for index, node in enumerate(nodes)}
    critical, critical_s = summary.critical_path
    rows = len(nodes) + first
    pitch_in = min(_ROW_PITCH_IN, (_MOST_INCHES - _TIMELINE_MARGIN_IN) / max(1, rows))
    figure = _new_figure(10.0, max(2.5, pitch_in * rows + _TIMELINE_MARGIN_IN))
    axes = figure.add_subplot()
    end = max([node.finished_at or 0.0 for node in nodes] + [finish for _, _, finish in phases] + [0.001])
    shortest = end * _SHORTEST_BAR
    for role, start, finish in phases:
        axes.barh(0, max(finish - start, shortest), left=start, height=0.6, color=PHASE_COLOURS[role], alpha=0.8)
    handles: dict[str, Any] = {}
    marker_size = min(9.0, pitch_in * 72 * 0.6)
    for node in nodes:
        colour = STATUS_COLOURS.get(node.status, _OTHER_COLOUR)
        y = row[node.id]
        if node.started_at is not None:
            finish = node.finished_at if node.finished_at is not None else end
            (bar,) = axes.barh(
                y, max(finish - node.started_at, shortest), left=node.started_at, height=0.6, color=colour, linewidth=0
            )
            bar.set_gid(f"node-{node.id}")
            handles.setdefault(node.status, _legend_patch(node.status, colour))
        else:  # skipped or cancelled before it started: a mark where it was given up
            (mark,) = axes.plot([node.finished_at or 0.0], [y], marker="x", color=colour, markersize=marker_size, mew=2)
            mark.set_gid(f"node-{node.id}")
            label = f"{node.status}, never started"
            handles.setdefault(label, Line2D([], [], color=colour, marker="x", mew=2, linestyle="none", label=label))
    by_id = {node.id: node for node in nodes}
    for node in nodes:
        for dependency in node.dependencies:
            upstream = by_id.get(dependency)
            if upstream is None or upstream.finished_at is None:
                continue
            target_x = node.started_at if node.started_at is not None else (node.finished_at or upstream.finished_at)
            axes.annotate(
                "",
                xy=(target_x, row[node.id]),
                xytext=(_drawn_end(upstream, shortest), row[dependency]),
                arrowprops={"arrowstyle": "->", "color": _EDGE_COLOUR, "lw": 0.8, "alpha": 0.8},
            )
            handles.setdefault("waited for", Line2D([], [], color=_EDGE_COLOUR, lw=0.8, label="waited for"))
    path_x, path_y = _critical_line([by_id[node_id] for node_id in critical if node_id in by_id], row, shortest)
    if path_x:
        axes.plot(path_x, path_y, color=_CRITICAL_COLOUR, lw=1.4, solid_capstyle="butt", zorder=3)
        handles["critical path"] = Line2D([], [], color=_CRITICAL_COLOUR, lw=1.4, label="critical path")
    for role in sorted({role for role, _, _ in phases}):
        handles[role] = _legend_patch(role, PHASE_COLOURS[role], alpha=0.8)
    _label_rows(axes, (["planner / joiner"] if phases else []) + [_row_label(node) for node in nodes], pitch_in)
    axes.set_xlabel("seconds since the run started")
    axes.grid(axis="x", alpha=0.3)
    axes.set_xlim(0, end * 1.05)
    if handles:  # statuses in a fixed order (STATUS_COLOURS', then any other), then the marks and the model rows
        ranks = {label: rank for rank, label in enumerate(STATUS_COLOURS)}
        order = sorted(
            handles, key=lambda label: (label in _MARK_LABELS or label in PHASE_COLOURS, ranks.get(label, 99))
        )
        axes.legend(
            handles=[handles[label] for label in order],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
        )
    heading = (
        f"wall {format_seconds(summary.wall_s)} · critical path {format_seconds(critical_s)} · "
        f"node time {format_seconds(summary.busy_s)} · "
        f"parallelism {summary.parallelism:.2f}x"
    )
    axes.set_title(f"{textwrap.fill(title, width=100)}\n{heading}" if title else heading, fontsize=10)
    return figure


def draw_timeline(summary: RunSummary, path: Path, *, title: str = "", steps: Sequence[tuple[str, float]] = ()) -> Path:
    """Draw a run as a Gantt chart PNG (`timeline_figure`).

    Raises:
        AgentdagError: matplotlib is not installed, or the file cannot be written.
    """
    return _save(timeline_figure(summary, title=title, steps=steps), path)


def _critical_line(
    chain: Sequence[NodeSummary], row: dict[int, int], shortest: float
) -> tuple[list[float], list[float]]:
    """A line through the middle of each critical bar, broken between bars (NaN), so it never crosses a bar."""
    xs: list[float] = []
    ys: list[float] = []
    for node in chain:
        if node.started_at is not None:
            xs += [node.started_at, _drawn_end(node, shortest), math.nan]
            ys += [row[node.id], row[node.id], math.nan]
    return xs, ys


def _drawn_end(node: NodeSummary, shortest: float) -> float:
    """Where a node's bar ends on the picture: at its finish, or further right when it is drawn wider."""
    finish = node.finished_at if node.finished_at is not None else 0.0
    return finish if node.started_at is None else max(finish, node.started_at + shortest)


def _label_rows(axes: Any, labels: Sequence[str], pitch_in: float) -> None:
    """One label per row, in a font that fits the row; when even the smallest does not, every k-th row."""
    fontsize = min(8.0, pitch_in * 72 * 0.75)
    step = 1 if fontsize >= _SMALLEST_FONT else -(-_SMALLEST_FONT // fontsize)
    ticks = range(0, len(labels), int(step))
    axes.set_yticks(list(ticks), [labels[index] for index in ticks], fontsize=max(fontsize, _SMALLEST_FONT))
    axes.set_ylim(len(labels) - 0.5, -0.5)  # top to bottom, without empty rows of margin


def _start(node: NodeSummary) -> float:
    if node.started_at is not None:
        return node.started_at
    return node.finished_at if node.finished_at is not None else float("inf")


def _row_label(node: NodeSummary) -> str:
    return f"{node.id} {node.tool}"


def _legend_patch(label: str, colour: str, *, alpha: float = 1.0) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, alpha=alpha, label=label)
