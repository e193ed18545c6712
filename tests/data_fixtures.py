"""The fixtures of `agentdag data fetch` (tests/data/fetch): release-shaped files and the records they give."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from agentdag.benchmarks.data_sources import DataSet, Source

FIXTURES = Path(__file__).parent / "data" / "fetch"


def expected_records(data_set: DataSet) -> list[dict[str, Any]]:
    """The harness records the fixture of `data_set` must convert to (copied from the shared data folder)."""
    lines = (FIXTURES / "expected" / data_set.path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def release_bytes(data_set: DataSet, source: Source) -> bytes:
    """The content served for `source`: the fixture file, or for an archive a gzip tar built from its tree."""
    (path,) = (FIXTURES / "sources" / data_set.name).glob(f"{source.key}.*")
    if not source.url.endswith(".tar.gz"):
        return path.read_bytes()
    tree: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    top = source.url.rsplit("/", 1)[-1].removesuffix(".tar.gz")
    return tar_gz({f"{data_set.name}-{top}/{name}": text.encode() for name, text in tree.items()})


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A gzip tar archive of `files` (path to content), folders implied."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as archive:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    return buffer.getvalue()  # the same bytes for the same files: no timestamp


def write_release(data_set: DataSet, folder: Path) -> dict[str, Path]:
    """Write the fixture of each source of `data_set` into `folder`, as a converter gets them (by key)."""
    files = {}
    for source in data_set.sources:
        path = folder / source.key
        path.write_bytes(release_bytes(data_set, source))
        files[source.key] = path
    return files


def canonical(records: list[dict[str, Any]]) -> list[str]:
    """Records as sorted-key JSON, so that an int and an equal float (or True and 1) compare different."""
    return [json.dumps(record, sort_keys=True, ensure_ascii=False) for record in records]
