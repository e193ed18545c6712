"""Where the benchmarks find their data: --data DIR / $AGENTDAG_DATA, then ../shared/data, then the fetch cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentdag.benchmarks import data_paths
from agentdag.benchmarks.data_paths import (
    DataNotFoundError,
    data_folders,
    default_cache_dir,
    fetch_destination,
    find_data_file,
    resolve_dataset,
)
from data_fixtures import FIXTURES

from agentdag.cli import main


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout at tmp/agentdag beside tmp/shared/data, a private cache, and no $AGENTDAG_DATA."""
    checkout = tmp_path / "agentdag"
    checkout.mkdir()
    monkeypatch.setattr(data_paths, "_REPOSITORY", checkout)
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("AGENTDAG_DATA", raising=False)
    return tmp_path


def put(folder: Path, relative: str, text: str = "{}\n") -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_cache_follows_xdg_cache_home(layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == layout / "cache" / "agentdag" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert default_cache_dir() == Path.home() / ".cache" / "agentdag" / "data"


def test_shared_data_comes_before_the_fetch_cache(layout: Path) -> None:
    shared, cache = layout / "shared" / "data", layout / "cache" / "agentdag" / "data"
    assert data_folders() == [shared, cache]  # ../shared/data from here and from the checkout: the same, once
    in_cache = put(cache, "math/gsm8k_test.jsonl")
    assert find_data_file("math/gsm8k_test.jsonl") == in_cache
    in_shared = put(shared, "math/gsm8k_test.jsonl")
    assert find_data_file("math/gsm8k_test.jsonl") == in_shared


def test_a_named_data_folder_is_the_only_one_looked_in(layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put(layout / "shared" / "data", "swe/quixbugs.jsonl")
    mine, theirs = layout / "mine", layout / "theirs"
    monkeypatch.setenv("AGENTDAG_DATA", str(theirs))
    assert data_folders() == [theirs]
    assert data_folders(mine) == [mine]  # --data wins over $AGENTDAG_DATA
    assert fetch_destination() == theirs
    assert fetch_destination(mine) == mine
    with pytest.raises(DataNotFoundError) as raised:
        find_data_file("swe/quixbugs.jsonl", data_dir=mine)
    assert str(raised.value) == (
        f"no swe/quixbugs.jsonl in the data folder (looked for {mine / 'swe' / 'quixbugs.jsonl'}); "
        f"fetch it with `agentdag data fetch quixbugs --data {mine}`"
    )


def test_missing_data_names_the_fetch_command_and_each_path_once(layout: Path) -> None:
    with pytest.raises(DataNotFoundError) as raised:
        find_data_file("search/hotpotqa_distractor.jsonl")
    message = str(raised.value)
    shared = layout / "shared" / "data" / "search" / "hotpotqa_distractor.jsonl"
    cached = layout / "cache" / "agentdag" / "data" / "search" / "hotpotqa_distractor.jsonl"
    assert message == (
        f"no search/hotpotqa_distractor.jsonl in ../shared/data or the fetch cache (looked for {shared}, {cached}); "
        "fetch it with `agentdag data fetch hotpotqa`"
    )
    assert message.count(str(shared)) == 1


def test_a_dataset_option_takes_a_path_a_data_set_name_or_a_file_name(layout: Path) -> None:
    shared = layout / "shared" / "data"
    hotpotqa = put(shared, "search/hotpotqa_distractor.jsonl")
    elsewhere = put(layout, "elsewhere/questions.jsonl")
    assert resolve_dataset(None, kind="search", default="hotpotqa_distractor.jsonl") == hotpotqa
    assert resolve_dataset("hotpotqa", kind="search", default="x.jsonl") == hotpotqa
    assert resolve_dataset("hotpotqa_distractor.jsonl", kind="search", default="x.jsonl") == hotpotqa
    assert resolve_dataset(elsewhere, kind="search", default="x.jsonl") == elsewhere
    with pytest.raises(
        FileNotFoundError, match=r"^gsm8k is not a search data set \(its file is math/gsm8k_test.jsonl\)$"
    ):
        resolve_dataset("gsm8k", kind="search", default="x.jsonl")
    with pytest.raises(FileNotFoundError, match=r"^no data set at nowhere/questions.jsonl$"):
        resolve_dataset("nowhere/questions.jsonl", kind="search", default="x.jsonl")
    with pytest.raises(DataNotFoundError, match="fetch it with `agentdag data fetch movie`"):
        resolve_dataset("movie", kind="search", default="x.jsonl")


def test_bench_reads_the_data_folder_given_with_data(layout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = layout / "fetched"
    gsm8k = (FIXTURES / "expected" / "math" / "gsm8k_test.jsonl").read_text(encoding="utf-8")
    put(folder, "math/gsm8k_test.jsonl", gsm8k)
    arguments = ["bench", "scaling", "--strategy", "single", "--limit", "2", "--json", "--data", str(folder)]
    assert main(arguments) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["dataset"] == "gsm8k_test.jsonl"
    assert report["config"]["questions"] == 2


@pytest.mark.parametrize(
    ("bench", "name", "file"),
    [("search", "fanoutqa", "search/fanoutqa_dev.jsonl"), ("swe", "quixbugs", "swe/quixbugs.jsonl")],
)
def test_bench_without_its_data_fails_in_one_line_naming_the_fetch_command(
    layout: Path, capsys: pytest.CaptureFixture[str], bench: str, name: str, file: str
) -> None:
    assert main(["bench", bench, "--limit", "1"]) == 2
    error = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert f"no {file} in ../shared/data or the fetch cache" in error
    assert f"fetch it with `agentdag data fetch {name}`" in error
    assert "Traceback" not in error
