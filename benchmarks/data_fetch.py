"""`agentdag data fetch`: download each data set from its official source, verify it, convert it.

For each data set (see `data_sources`): every release file is streamed to a temporary file inside the
destination (with connect and read timeouts, a deadline for the whole file and a size limit), its SHA-256
is checked against the recorded one, and the files are converted to the harness format. The harness file
and a `.source.json` record of where it came from are then moved into place atomically, so that a failed
or interrupted fetch leaves nothing half-written. Nothing downloaded is executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx2
from rich.table import Table

from .convert_common import ConversionError, Converted
from .data_sources import DATA_SETS, DataSet, Source, find_data_set

__all__ = [
    "FetchError",
    "FetchResult",
    "create_client",
    "create_data_table",
    "download",
    "fetch_data_set",
    "select_data_sets",
    "source_record_path",
]

_CHUNK = 1 << 16
_SWE_NOTE = (
    "the SWE records are not run here: `agentdag bench swe --dataset NAME --model oracle` must resolve every case"
    " and `--model noop` none"
)


class FetchError(Exception):
    """One data set could not be fetched; the message is one line that says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Downloaded:
    """A release file on disk, with the SHA-256 and size of its content."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """What happened to one data set.

    Attributes:
        data_set: the data set.
        status: "fetched", "present" (already there; not fetched again without `force`) or "failed".
        path: its harness file.
        message: one line: the failure, or what was written.
        records: records written.
        skipped: the source records the converter left out, each with its reason.
        unverified: one line per release file accepted without a matching recorded SHA-256.
    """

    data_set: DataSet
    status: Literal["fetched", "present", "failed"]
    path: Path
    message: str
    records: int = 0
    skipped: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()


def create_client(*, connect_timeout_s: float = 15.0, read_timeout_s: float = 60.0) -> httpx2.AsyncClient:
    """The HTTP client of the downloads: timeouts on every operation, redirects followed (at most 5)."""
    try:
        agent = f"agentdag/{version('agentdag')} (data fetch)"
    except PackageNotFoundError:
        agent = "agentdag (data fetch)"
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(read_timeout_s, connect=connect_timeout_s),
        follow_redirects=True,
        max_redirects=5,
        headers={"User-Agent": agent},
    )


def select_data_sets(names: Sequence[str]) -> list[DataSet]:
    """The data sets `names` asks for, in order and each once; all of them for no names.

    Raises:
        ValueError: a name that is no data set's.
    """
    if not names:
        return list(DATA_SETS)
    unknown = [name for name in names if find_data_set(name) is None]
    if unknown:
        known = ", ".join(data_set.name for data_set in DATA_SETS)
        raise ValueError(f"unknown data set {', '.join(unknown)}; known: {known}")
    chosen = [find_data_set(name) for name in names]
    return list(dict.fromkeys(data_set for data_set in chosen if data_set is not None))


def source_record_path(path: Path) -> Path:
    """Where the record of a harness file's origin is kept: `NAME.source.json` beside `NAME.jsonl`."""
    return path.with_suffix(".source.json")


async def download(client: httpx2.AsyncClient, source: Source, folder: Path, *, timeout_s: float) -> Downloaded:
    """Stream `source` to `folder/KEY/NAME` (NAME: the URL's file name) through a temporary file.

    The file gets its name only once it is complete; a failed download leaves only the `.part` file.

    Raises:
        FetchError: no network, an HTTP error, a timeout, a file over the size limit, or a write error.
    """
    name = httpx2.URL(source.url).path.rsplit("/", 1)[-1] or "download"
    final = folder / source.key / name
    part = final.with_name(f"{name}.part")
    digest, size = hashlib.sha256(), 0
    try:
        await anyio.Path(final.parent).mkdir(parents=True, exist_ok=True)
        with anyio.fail_after(timeout_s):
            async with client.stream("GET", source.url) as response:
                if response.status_code != httpx2.codes.OK:
                    raise FetchError(f"{source.url}: HTTP {response.status_code} {response.reason_phrase}".rstrip())
                declared = _declared_size(response)
                if declared is not None and declared > source.max_bytes:
                    raise FetchError(f"{source.url}: {_size(declared)}, over the {_size(source.max_bytes)} limit")
                async with await anyio.open_file(part, "wb") as output:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        size += len(chunk)
                        if size > source.max_bytes:
                            raise FetchError(f"{source.url}: more than the {_size(source.max_bytes)} limit")
                        digest.update(chunk)
                        await output.write(chunk)
        await anyio.Path(part).rename(final)
    except TimeoutError:
        raise FetchError(f"{source.url}: not downloaded within {timeout_s:g} s") from None
    except httpx2.ConnectError as error:
        host = httpx2.URL(source.url).host
        raise FetchError(f"cannot connect to {host} ({error or 'connection failed'}): is there a network?") from None
    except httpx2.TimeoutException:
        raise FetchError(f"{source.url}: the server stopped answering (timed out)") from None
    except httpx2.TooManyRedirects:
        raise FetchError(f"{source.url}: too many redirects") from None
    except httpx2.HTTPError as error:
        raise FetchError(f"{source.url}: {type(error).__name__}: {error}") from None
    except OSError as error:
        raise FetchError(f"cannot write {part}: {error.strerror or error}") from None
    return Downloaded(path=final, sha256=digest.hexdigest(), size=size)


def _declared_size(response: httpx2.Response) -> int | None:
    """The body's size as the server declares it, when that is the size of the content (not compressed)."""
    declared = response.headers.get("content-length", "")
    return int(declared) if declared.isdigit() and "content-encoding" not in response.headers else None


def _check(source: Source, downloaded: Downloaded, *, verify: bool) -> str | None:
    """None if the recorded SHA-256 matches; else a note (without `verify`) or a refusal (FetchError)."""
    got = downloaded.sha256
    if source.sha256 is not None and source.sha256.lower() == got:
        return None
    if source.sha256 is not None:
        problem = f"SHA-256 of {source.url} is {got}, not the recorded {source.sha256}"
    else:
        problem = f"no SHA-256 is recorded for {source.url} (this download's is {got})"
    if verify:
        raise FetchError(f"{problem}; refused (check the file, then pass --no-verify to accept it)")
    return problem


async def fetch_data_set(
    data_set: DataSet,
    *,
    dest: Path,
    client: httpx2.AsyncClient,
    force: bool = False,
    verify: bool = True,
    timeout_s: float = 1200.0,
) -> FetchResult:
    """Download, verify and convert one data set into `dest` (its harness file is `dest/PATH`).

    A failure is returned as a `FetchResult` with status "failed", never raised, so that the other data
    sets can still be fetched.
    """
    target = dest / data_set.path
    if target.is_file() and not force:
        return FetchResult(data_set=data_set, status="present", path=target, message=f"already at {target}")
    try:
        work = await anyio.to_thread.run_sync(_create_work_folder, dest, data_set.name)
    except FetchError as error:
        return FetchResult(data_set=data_set, status="failed", path=target, message=str(error))
    try:
        files: dict[str, Path] = {}
        provenance, unverified = [], []
        for source in data_set.sources:
            downloaded = await download(client, source, work, timeout_s=timeout_s)
            note = _check(source, downloaded, verify=verify)
            if note is not None:
                unverified.append(note)
            files[source.key] = downloaded.path
            provenance.append(
                {"url": source.url, "sha256": downloaded.sha256, "bytes": downloaded.size, "verified": note is None}
            )
        converted = await anyio.to_thread.run_sync(_convert, data_set, files)
        record = _source_record(data_set, converted, provenance)
        await anyio.to_thread.run_sync(_install, converted, record, work, target)
    except FetchError as error:
        return FetchResult(data_set=data_set, status="failed", path=target, message=str(error))
    finally:
        with anyio.CancelScope(shield=True):  # an interrupted fetch still removes its partial files
            await anyio.to_thread.run_sync(shutil.rmtree, work, True)
    return FetchResult(
        data_set=data_set,
        status="fetched",
        path=target,
        message=f"{len(converted.records)} records → {target}",
        records=len(converted.records),
        skipped=converted.skipped,
        unverified=tuple(unverified),
    )


def _create_work_folder(dest: Path, name: str) -> Path:
    try:
        dest.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".fetch-{name}-", dir=dest))
    except OSError as error:
        raise FetchError(f"cannot write to {dest}: {error.strerror or error}") from None


def _convert(data_set: DataSet, files: Mapping[str, Path]) -> Converted:
    try:
        converted = data_set.convert(files)
    except ConversionError as error:
        raise FetchError(f"the download is not shaped like {data_set.title}: {error}") from None
    if not converted.records:
        raise FetchError(f"no record of {data_set.title} could be converted ({len(converted.skipped)} skipped)")
    return converted


def _source_record(data_set: DataSet, converted: Converted, sources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": data_set.name,
        "title": data_set.title,
        "license": data_set.license,
        "homepage": data_set.homepage,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": len(converted.records),
        "skipped": list(converted.skipped),
        "sources": sources,
    }


def _install(converted: Converted, record: Mapping[str, Any], work: Path, target: Path) -> None:
    """Write the harness file and its source record in `work`, then rename both into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = work / "harness.jsonl"
        with staged.open("w", encoding="utf-8") as output:
            for item in converted.records:
                output.write(json.dumps(item, ensure_ascii=False) + "\n")
        staged_record = work / "source.json"
        staged_record.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(staged_record, source_record_path(target))
        os.replace(staged, target)
    except OSError as error:
        raise FetchError(f"cannot write {target}: {error.strerror or error}") from None


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 2**20 else f"{count / 2**20:.1f} MiB"


# -- the command ----------------------------------------------------------------------------------


def create_data_table(dest: Path) -> Table:
    """The data sets, their harness files, their state in `dest`, and where they come from."""
    table = Table(title=f"data sets (fetched into {dest})")
    for column in ("name", "file", "in that folder", "checksums", "official source"):
        table.add_column(column, overflow="fold")
    for data_set in DATA_SETS:
        target = dest / data_set.path
        state = "-"
        if target.is_file():
            state = "present"
            with suppress(OSError, ValueError, KeyError, TypeError):
                state = f"{json.loads(source_record_path(target).read_text(encoding='utf-8'))['records']} records"
        recorded = sum(source.sha256 is not None for source in data_set.sources)
        checksums = "recorded" if recorded == len(data_set.sources) else "not recorded" if not recorded else "partly"
        urls = "\n".join(source.url for source in data_set.sources)
        table.add_row(data_set.name, data_set.path, state, checksums, urls)
    return table


async def run_fetch_command(
    *,
    names: Sequence[str],
    dest: Path,
    force: bool,
    verify: bool,
    timeout_s: float,
    print_line: Callable[[str], None],
    client: httpx2.AsyncClient | None = None,
) -> int:
    """Fetch the named data sets (all for none) one after another, printing one line per outcome.

    Returns:
        0 when every data set is fetched or already there, 1 when one failed.

    Raises:
        ValueError: an unknown data set name.
    """
    chosen = select_data_sets(names)
    results = []
    async with AsyncExitStack() as stack:
        opened = client if client is not None else await stack.enter_async_context(create_client())
        for data_set in chosen:
            result = await fetch_data_set(
                data_set, dest=dest, client=opened, force=force, verify=verify, timeout_s=timeout_s
            )
            results.append(result)
            for line in _describe(result):
                print_line(line)
    if any(result.status == "fetched" and result.data_set.path.startswith("swe/") for result in results):
        print_line(f"note: {_SWE_NOTE}")
    counts = {status: sum(result.status == status for result in results) for status in ("fetched", "present", "failed")}
    print_line(f"{counts['fetched']} fetched, {counts['present']} already there, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def _describe(result: FetchResult) -> list[str]:
    name = result.data_set.name
    if result.status == "present":
        return [f"{name}: {result.message} (--force fetches it again)"]
    if result.status == "failed":
        return [f"{name}: failed: {result.message}"]
    lines = [f"{name}: {result.message}"]
    lines += [f"{name}: UNVERIFIED: {note}" for note in result.unverified]
    if result.skipped:
        shown = "; ".join(result.skipped[:3]) + (
            f"; and {len(result.skipped) - 3} more" if len(result.skipped) > 3 else ""
        )
        lines.append(f"{name}: {len(result.skipped)} source records not converted: {shown}")
    return lines
