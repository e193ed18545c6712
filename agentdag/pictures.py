"""Pictures of plans and runs: mermaid and graphviz text of a DAG, and PNGs drawn with matplotlib.

Mermaid and dot are plain text and need nothing. The PNGs need matplotlib (`pip install 'agentdag[plots]'`),
imported only when a picture is drawn.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
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
    "plan_to_dot",
    "plan_to_mermaid",
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
_LABEL_CHARS = 36


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


def draw_plan(nodes: Sequence[Node], path: Path, *, title: str = "") -> Path:
    """Draw the plan's DAG as a PNG: one box per node, in layers by dependency depth, arrows for edges.

    Raises:
        AgentdagError: matplotlib is not installed, or the file cannot be written.
    """
    edges = _edges(nodes)
    depth: dict[int, int] = {}
    for node in nodes:  # dependencies name earlier nodes, so one pass in plan order suffices
        depth[node.id] = 1 + max((depth.get(source, 0) for source, target in edges if target == node.id), default=-1)
    layers: dict[int, list[int]] = {}
    for node in nodes:
        layers.setdefault(depth[node.id], []).append(node.id)
    widest = max((len(ids) for ids in layers.values()), default=1)
    position: dict[int, tuple[float, float]] = {}
    for level, ids in layers.items():
        for index, node_id in enumerate(ids):
            position[node_id] = ((index + 0.5) * widest / len(ids), -float(level))
    figure = _new_figure(max(4.0, 2.8 * widest), max(2.5, 1.3 * len(layers) + 0.8))
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_xlim(0, widest)
    axes.set_ylim(-len(layers) + 0.4, 0.6)
    for source, target in edges:
        axes.annotate(
            "",
            xy=position[target],
            xytext=position[source],
            arrowprops={"arrowstyle": "-|>", "color": "#546e7a", "shrinkA": 18, "shrinkB": 18, "lw": 1.2},
        )
    for node in nodes:
        x, y = position[node.id]
        axes.text(
            x,
            y,
            f"{node.id}: {node.tool}\n{_arguments_text(node)}",
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "#e3f2fd", "edgecolor": "#1e88e5"},
        )
    if title:
        axes.set_title(textwrap.fill(title, width=int(28 * max(4.0, 2.8 * widest) / 2.8)), fontsize=10)
    return _save(figure, path)


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


def draw_timeline(summary: RunSummary, path: Path, *, title: str = "", steps: Sequence[tuple[str, float]] = ()) -> Path:
    """Draw a run as a Gantt chart: one bar per node from its start to its finish, coloured by status.

    Nodes are ordered by start time, top to bottom; grey arrows run from each dependency's end to the
    start of the node that waited for it, and the bars of the critical path are outlined in black, so the
    parallel overlap and what the run waited on are both visible. With `steps` (the planner/joiner events
    as `(kind, seconds since the run started)`), a first row shows when the planner and the joiner worked.

    Raises:
        AgentdagError: matplotlib is not installed, or the file cannot be written.
    """
    nodes = sorted(summary.nodes, key=lambda node: (_start(node), node.id))
    phases = model_phases(steps, summary.wall_s)
    first = 1 if phases else 0
    row = {node.id: index + first for index, node in enumerate(nodes)}
    critical, critical_s = summary.critical_path
    on_path = set(critical)
    figure = _new_figure(9.0, max(2.5, 0.45 * (len(nodes) + first) + 1.6))
    axes = figure.add_subplot()
    end = max([node.finished_at or 0.0 for node in nodes] + [finish for _, _, finish in phases] + [0.001])
    for role, start, finish in phases:
        axes.barh(0, max(finish - start, end * 0.004), left=start, height=0.6, color=PHASE_COLOURS[role], alpha=0.8)
    for node in nodes:
        colour = STATUS_COLOURS.get(node.status, "#90a4ae")
        y = row[node.id]
        if node.started_at is not None:
            finish = node.finished_at if node.finished_at is not None else end
            axes.barh(
                y,
                max(finish - node.started_at, end * 0.004),
                left=node.started_at,
                height=0.6,
                color=colour,
                edgecolor="black" if node.id in on_path else colour,
                linewidth=1.8 if node.id in on_path else 0.5,
            )
        else:  # skipped or cancelled before it started: a mark where it was given up
            axes.plot([node.finished_at or 0.0], [y], marker="x", color=colour, markersize=9, mew=2)
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
                xytext=(upstream.finished_at, row[dependency]),
                arrowprops={"arrowstyle": "->", "color": "#607d8b", "lw": 0.8, "alpha": 0.8},
            )
    labels = (["planner / joiner"] if phases else []) + [_row_label(node) for node in nodes]
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the run started")
    axes.grid(axis="x", alpha=0.3)
    axes.set_xlim(0, end * 1.05)
    statuses = sorted({node.status for node in nodes})
    handles = [_legend_patch(status, STATUS_COLOURS) for status in statuses]
    handles += [_legend_patch(role, PHASE_COLOURS) for role in sorted({role for role, _, _ in phases})]
    if handles:
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    heading = (
        f"wall {format_seconds(summary.wall_s)} · critical path {format_seconds(critical_s)} · "
        f"node time {format_seconds(summary.busy_s)} · "
        f"parallelism {summary.parallelism:.2f}x"
    )
    axes.set_title(f"{textwrap.fill(title, width=100)}\n{heading}" if title else heading, fontsize=10)
    return _save(figure, path)


def _start(node: NodeSummary) -> float:
    if node.started_at is not None:
        return node.started_at
    return node.finished_at if node.finished_at is not None else float("inf")


def _row_label(node: NodeSummary) -> str:
    return f"{node.id} {node.tool}"


def _legend_patch(label: str, colours: dict[str, str]) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=colours.get(label, "#90a4ae"), label=label)
