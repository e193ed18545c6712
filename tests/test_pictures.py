from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from agentdag.cli import main
from agentdag.errors import AgentdagError
from agentdag.pictures import (
    STATUS_COLOURS,
    draw_plan,
    draw_timeline,
    ensure_plots_available,
    model_phases,
    plan_figure,
    plan_to_dot,
    plan_to_mermaid,
    timeline_figure,
)
from agentdag.plan import Node
from agentdag.summary import RunSummary, summarize

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

EXAMPLES = Path(__file__).parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PLAN = [
    Node(id=1, tool="search", arguments={"query": 'the "Eiffel" tower'}),
    Node(id=2, tool="search", arguments={"query": "Skytree"}),
    Node(id=3, tool="calculate", arguments={"expression": "$1 - $2"}),
    Node(id=4, tool="calculate", arguments={"expression": "1"}, depends_on=[3]),
]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_mermaid_draws_every_node_and_edge() -> None:
    text = plan_to_mermaid(PLAN)
    assert text.splitlines()[0] == "flowchart TD"
    assert 'n1["1: search<br/>the #quot;Eiffel#quot; tower"]' in text
    for edge in ("n1 --> n3", "n2 --> n3", "n3 --> n4"):
        assert edge in text
    assert text.count("-->") == 3


def test_dot_draws_every_node_and_edge() -> None:
    text = plan_to_dot(PLAN)
    assert text.startswith("digraph plan {")
    assert 'n1 [label="1: search\\nthe \\"Eiffel\\" tower"];' in text
    for edge in ("n1 -> n3;", "n2 -> n3;", "n3 -> n4;"):
        assert edge in text
    assert text.rstrip().endswith("}")


def test_plan_formats_on_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    quickstart = str(EXAMPLES / "quickstart.yaml")
    assert main(["plan", quickstart, "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD") and "n3 --> n4" in out
    assert main(["plan", quickstart, "--format", "dot"]) == 0
    assert "n2 -> n4;" in capsys.readouterr().out
    assert main(["plan", quickstart, "--format", "dot", "--output", str(tmp_path / "p.dot")]) == 0
    assert (tmp_path / "p.dot").read_text().startswith("digraph")


def test_a_png_needs_matplotlib_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(AgentdagError, match=r"pip install 'agentdag\[plots\]'"):
        ensure_plots_available()
    assert main(["plan", str(EXAMPLES / "quickstart.yaml"), "--format", "png"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'agentdag[plots]'" in err
    assert "Traceback" not in err
    assert main(["run", str(EXAMPLES / "quickstart.yaml"), "--timeline", "t.png"]) == 2
    assert not Path("runs").exists()  # refused before anything ran


def test_model_phases_pair_starts_with_ends() -> None:
    steps = [("planning", 0.0), ("plan_invalid", 1.0), ("planning", 1.0), ("planned", 2.0), ("joining", 3.0)]
    steps += [("replanning", 4.0), ("planning", 4.0), ("planned", 5.0), ("joining", 6.0), ("finished", 7.0)]
    assert model_phases(steps, 8.0) == [
        ("planner", 0.0, 1.0),
        ("planner", 1.0, 2.0),
        ("joiner", 3.0, 4.0),
        ("planner", 4.0, 5.0),
        ("joiner", 6.0, 7.0),
    ]
    assert model_phases([("planning", 0.5)], 2.0) == [("planner", 0.5, 2.0)]


def test_pngs_of_a_plan_and_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert draw_plan(PLAN, tmp_path / "plan.png", title="t").read_bytes().startswith(PNG_MAGIC)
    summary = summarize(
        {"status": "failed", "answer": None, "wall_s": 3.0, "nodes": [
            {"id": 1, "tool": "a", "status": "done", "started_at": 0.1, "finished_at": 1.0, "dependencies": []},
            {"id": 2, "tool": "b", "status": "failed", "started_at": 0.1, "finished_at": 2.0, "dependencies": []},
            {"id": 3, "tool": "c", "status": "skipped", "started_at": None, "finished_at": 2.0, "dependencies": [2]},
            {"id": 4, "tool": "d", "status": "done", "started_at": 1.0, "finished_at": 2.5, "dependencies": [1]}]}
    )  # fmt: skip
    path = draw_timeline(summary, tmp_path / "deep" / "timeline.png", steps=[("planning", 0.0), ("planned", 0.1)])
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert main(["plan", str(EXAMPLES / "quickstart.yaml"), "--format", "png"]) == 0
    assert Path("quickstart-plan.png").read_bytes().startswith(PNG_MAGIC)
    assert main(["run", str(EXAMPLES / "quickstart.yaml"), "--timeline", "run.png", "--trace", "t.jsonl"]) == 0
    assert Path("run.png").read_bytes().startswith(PNG_MAGIC)
    assert "timeline: run.png" in capsys.readouterr().out
    assert main(["trace", "show", "t.jsonl", "--timeline", "again.png"]) == 0
    assert Path("again.png").read_bytes().startswith(PNG_MAGIC)


def test_an_unwritable_picture_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AgentdagError, match="cannot write the picture"):
        draw_plan(PLAN, blocker / "plan.png")


def generated_plan(size: int) -> list[Node]:
    """A plan of `size` nodes: fan-outs, joins and edges that skip layers, the same every time."""
    nodes = []
    for index in range(1, size + 1):
        depends = {(index * 7) % (index - 1) + 1} if index > 2 and index % 3 else set()
        if index % 5 == 0:
            depends.add(index - 1)
        nodes.append(
            Node(id=index, tool="search" if index % 2 else "calculate", arguments={"query": f"city {index}"},
                 depends_on=tuple(sorted(depends)))
        )  # fmt: skip
    return nodes


def run_of(plan: list[Node], *, short_s: float = 0.001, long_s: float = 2.0) -> RunSummary:
    """A finished run of `plan`: every third node takes `long_s`, the rest `short_s`; node 4 failed, and
    what waited for it was skipped."""
    finish: dict[int, float] = {}
    rows = []
    for node in plan:
        start = max((finish[dependency] for dependency in node.depends_on), default=0.0)
        if 4 in node.depends_on or any(row["status"] == "skipped" and row["id"] in node.depends_on for row in rows):
            rows.append({"id": node.id, "tool": node.tool, "status": "skipped", "started_at": None,
                         "finished_at": start, "dependencies": list(node.depends_on)})  # fmt: skip
            finish[node.id] = start
            continue
        finish[node.id] = start + (long_s if node.id % 3 == 0 else short_s)
        status = "failed" if node.id == 4 else "done"
        rows.append({"id": node.id, "tool": node.tool, "status": status, "started_at": start,
                     "finished_at": finish[node.id], "dependencies": list(node.depends_on)})  # fmt: skip
    return summarize({"status": "done", "answer": 1, "wall_s": max(finish.values()) + 0.1, "nodes": rows})


def patches_by_gid(figure: Figure) -> dict[str, Artist]:
    (axes,) = figure.axes
    return {str(artist.get_gid()): artist for artist in [*axes.patches, *axes.lines] if artist.get_gid()}


def test_a_node_of_a_millisecond_shows_its_status_colour_even_on_the_critical_path() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_hex, to_rgb

    # 1 ms, then 2 s, then 1 ms: all three on the critical path, two of them a sliver on a 2 s axis.
    summary = summarize(
        {"status": "done", "answer": 1, "wall_s": 2.01, "nodes": [
            {"id": 1, "tool": "a", "status": "done", "started_at": 0.0, "finished_at": 0.001, "dependencies": []},
            {"id": 2, "tool": "b", "status": "done", "started_at": 0.001, "finished_at": 2.0, "dependencies": [1]},
            {"id": 3, "tool": "c", "status": "failed", "started_at": 2.0, "finished_at": 2.001, "dependencies": [2]}]}
    )  # fmt: skip
    assert summary.critical_path[0] == (1, 2, 3)
    figure = timeline_figure(summary)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[:, :, :3].astype(int)
    bars = patches_by_gid(figure)
    for node_id, status in ((1, "done"), (3, "failed")):
        bar = bars[f"node-{node_id}"]
        assert to_hex(bar.get_facecolor()) == STATUS_COLOURS[status]
        assert bar.get_linewidth() == 0 or to_hex(bar.get_edgecolor()) == STATUS_COLOURS[status]
        box = bar.get_window_extent()
        height = pixels.shape[0]
        inside = pixels[
            int(height - box.y1) + 1 : int(height - box.y0) - 1, int(box.x0) + 1 : max(int(box.x1) - 1, int(box.x0) + 2)
        ]
        expected = np.array([round(channel * 255) for channel in to_rgb(STATUS_COLOURS[status])])
        close = (np.abs(inside - expected).max(axis=2) <= 12).mean()
        assert close > 0.6, f"node {node_id}: only {close:.0%} of its bar is {status} colour"


def test_the_timeline_legend_names_every_colour_drawn() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    summary = run_of(generated_plan(30))
    assert {node.status for node in summary.nodes} == {"done", "failed", "skipped"}
    figure = timeline_figure(summary, steps=[("planning", 0.0), ("planned", 0.1), ("joining", 5.0), ("finished", 5.1)])
    (axes,) = figure.axes
    drawn = {to_hex(bar.get_facecolor()) for bar in axes.patches}
    drawn |= {to_hex(bar.get_edgecolor()) for bar in axes.patches if bar.get_edgecolor()[3] > 0}
    drawn |= {to_hex(line.get_color()) for line in axes.lines}
    drawn |= {to_hex(text.arrow_patch.get_edgecolor()) for text in axes.texts if getattr(text, "arrow_patch", None)}
    legend = axes.get_legend()
    assert legend is not None
    named = {
        to_hex(handle.get_facecolor() if isinstance(handle, Patch) else handle.get_color())
        for handle in legend.legend_handles
        if isinstance(handle, Patch | Line2D)
    }
    assert drawn <= named
    labels = {text.get_text() for text in legend.get_texts()}
    assert {"done", "failed", "skipped, never started", "critical path", "planner", "joiner"} <= labels


def test_every_plan_edge_ends_in_an_arrowhead_on_its_target_box() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    plan = generated_plan(30)
    figure = plan_figure(plan)
    FigureCanvasAgg(figure).draw()
    artists = patches_by_gid(figure)
    edges = {(source, node.id) for node in plan for source in node.depends_on}
    assert len(edges) > 20
    assert {gid for gid in artists if gid.startswith("edge-")} == {f"edge-{s}-{t}" for s, t in edges}
    boxes = {gid: artist for gid, artist in artists.items() if gid.startswith("node-")}
    assert len(boxes) == 30
    for source, target in edges:
        arrow = artists[f"edge-{source}-{target}"]
        assert arrow.get_arrowstyle().arrow == "-|>"
        assert arrow.get_zorder() > boxes[f"node-{target}"].get_zorder()  # no box covers a head
        reach, box = arrow.get_window_extent(), boxes[f"node-{target}"].get_window_extent()
        # The arrow reaches the target's border (within two pixels) and stops there, short of its middle.
        assert reach.x0 - 2 <= box.x1 and box.x0 <= reach.x1 + 2 and reach.y0 - 2 <= box.y1 and box.y0 <= reach.y1 + 2
        assert not reach.contains(*box.get_points().mean(axis=0))


@pytest.mark.parametrize("size", [3, 30, 300])
def test_plans_and_runs_of_3_30_and_300_nodes_draw_readable_pictures(size: int, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plan = generated_plan(size)
    for path in (draw_plan(plan, tmp_path / "plan.png", title="t" * 300),
                 draw_timeline(run_of(plan), tmp_path / "run.png", title="t")):  # fmt: skip
        header = path.read_bytes()[:24]
        assert header.startswith(PNG_MAGIC)
        width, height = struct.unpack(">II", header[16:24])
        assert 300 <= width <= 5000 and 200 <= height <= 5000, (path.name, width, height)
    (axes,) = plan_figure(plan).axes
    labels = [text for text in axes.texts if text.get_text()]
    assert len(labels) == size and all(text.get_fontsize() >= 4.5 for text in labels)
    (axes,) = timeline_figure(run_of(plan)).axes
    ticks = axes.get_yticklabels()
    assert len(ticks) == size and all(text.get_fontsize() >= 4.5 for text in ticks)
    assert axes.get_ylim() == (size - 0.5, -0.5)  # no empty rows above the first node or below the last
