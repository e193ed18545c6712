from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentdag.cli import main
from agentdag.errors import AgentdagError
from agentdag.pictures import (
    draw_plan,
    draw_timeline,
    ensure_plots_available,
    model_phases,
    plan_to_dot,
    plan_to_mermaid,
)
from agentdag.plan import Node
from agentdag.summary import summarize

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
