"""Where the benchmarks find their data: the one lookup every benchmark uses.

A data folder holds the harness files by kind: `search/`, `calls/`, `swe/`, `math/`. A file is looked for

1. in the folder given with `--data DIR`, else in `$AGENTDAG_DATA` (a folder named this way is the only
   one looked in);
2. otherwise in `../shared/data` (from the working directory, then from the repository), then in the
   fetch cache that `agentdag data fetch` fills (`$XDG_CACHE_HOME/agentdag/data`, else
   `~/.cache/agentdag/data`).

When it is in none of them, one error lists each path looked at once and names the command that fetches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .data_sources import data_set_for_path, find_data_set

__all__ = [
    "DATA_ENV",
    "DataNotFoundError",
    "data_folders",
    "default_cache_dir",
    "fetch_destination",
    "find_data_file",
    "resolve_dataset",
]

DATA_ENV = "AGENTDAG_DATA"
_REPOSITORY = Path(__file__).resolve().parents[1]


class DataNotFoundError(FileNotFoundError):
    """A benchmark data file is in none of the data folders."""


@dataclass(frozen=True, slots=True)
class _Folders:
    paths: tuple[Path, ...]
    chosen: bool  # named by --data or $AGENTDAG_DATA: the only folder looked in


def default_cache_dir() -> Path:
    """The fetch cache: `$XDG_CACHE_HOME/agentdag/data`, else `~/.cache/agentdag/data`."""
    configured = os.environ.get("XDG_CACHE_HOME")
    base = Path(configured) if configured and Path(configured).is_absolute() else Path.home() / ".cache"
    return base / "agentdag" / "data"


def fetch_destination(data_dir: Path | None = None) -> Path:
    """Where `agentdag data fetch` stores data sets: `--data DIR`, else `$AGENTDAG_DATA`, else the cache."""
    if data_dir is not None:
        return data_dir
    configured = os.environ.get(DATA_ENV)
    return Path(configured) if configured else default_cache_dir()


def data_folders(data_dir: Path | None = None) -> list[Path]:
    """The data folders looked in, in order, each once."""
    return list(_folders(data_dir).paths)


def _folders(data_dir: Path | None) -> _Folders:
    configured = os.environ.get(DATA_ENV)
    if data_dir is not None or configured:
        return _Folders(paths=(Path(data_dir if data_dir is not None else str(configured)).absolute(),), chosen=True)
    candidates = [Path.cwd() / ".." / "shared" / "data", _REPOSITORY / ".." / "shared" / "data", default_cache_dir()]
    unique = dict.fromkeys(Path(os.path.normpath(candidate.absolute())) for candidate in candidates)
    return _Folders(paths=tuple(unique), chosen=False)


def find_data_file(relative: str, *, data_dir: Path | None = None) -> Path:
    """The first data folder's copy of `relative` (like `search/fanoutqa_dev.jsonl`).

    Raises:
        DataNotFoundError: no folder has it; the message lists every path tried and the fetch command.
    """
    folders = _folders(data_dir)
    tried = [folder / relative for folder in folders.paths]
    for path in tried:
        if path.is_file():
            return path
    data_set = data_set_for_path(relative)
    fetch = f"agentdag data fetch {data_set.name}" if data_set is not None else "agentdag data fetch"
    if folders.chosen:
        fetch += f" --data {folders.paths[0]}"
    where = "in the data folder" if folders.chosen else "in ../shared/data or the fetch cache"
    listed = ", ".join(str(path) for path in tried)
    raise DataNotFoundError(f"no {relative} {where} (looked for {listed}); fetch it with `{fetch}`")


def resolve_dataset(dataset: Path | str | None, *, kind: str, default: str, data_dir: Path | None = None) -> Path:
    """The file a benchmark's `--dataset` option names.

    `dataset` is a path to a file; or a data set's name (`hotpotqa`) or harness file name
    (`hotpotqa_distractor.jsonl`), looked up in the data folders; or None for `default` (a harness file
    name). `kind` is the folder of the benchmark's data sets (`search`, `swe`, `math`).

    Raises:
        DataNotFoundError: the file is in none of the data folders.
        FileNotFoundError: a path that does not exist.
    """
    if dataset is None:
        return find_data_file(f"{kind}/{default}", data_dir=data_dir)
    path = Path(dataset)
    if path.is_file():
        return path
    data_set = find_data_set(str(dataset)) if len(path.parts) == 1 else None
    if data_set is not None:
        if not data_set.path.startswith(f"{kind}/"):
            raise FileNotFoundError(f"{dataset} is not a {kind} data set (its file is {data_set.path})")
        return find_data_file(data_set.path, data_dir=data_dir)
    if len(path.parts) == 1 and path.suffix == ".jsonl":
        return find_data_file(f"{kind}/{path.name}", data_dir=data_dir)
    raise FileNotFoundError(f"no data set at {path}")
