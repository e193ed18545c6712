"""`agentdag data fetch` against a loopback HTTP server (anyio, in the test's event loop) serving the fixtures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from agentdag.benchmarks.data_fetch import create_client, fetch_data_set, run_fetch_command, source_record_path
from agentdag.benchmarks.data_sources import DATA_SETS, DataSet, find_data_set
from data_fixtures import canonical, expected_records, release_bytes

from agentdag.cli import main

_PHRASES = {200: "OK", 302: "Found", 404: "Not Found", 500: "Internal Server Error"}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The downloads honour proxy variables; the loopback server must be reached directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Reply:
    """What the server answers to one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0  # sleep after the headers, before the body


@dataclass
class LoopbackServer:
    """A minimal HTTP/1.1 server on 127.0.0.1: one reply per path, 404 otherwise; records the paths asked."""

    port: int = 0
    routes: dict[str, Reply] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        try:
            async with stream:
                await self._answer(stream)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the client hung up (a test of timeouts or limits): nothing to answer

    async def _answer(self, stream: anyio.abc.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive()
        path = request.split(b" ", 2)[1].decode()
        self.asked.append(path)
        reply = self.routes.get(path, Reply(body=b"no such file", status=404))
        headers = {"Content-Length": str(len(reply.body)), "Connection": "close", **reply.headers}
        head = f"HTTP/1.1 {reply.status} {_PHRASES[reply.status]}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        await stream.send(head.encode())
        if reply.stall_s:
            await anyio.sleep(reply.stall_s)
        await stream.send(reply.body)


@asynccontextmanager
async def serve() -> AsyncIterator[LoopbackServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = LoopbackServer(port=listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.handle)
        yield server
        group.cancel_scope.cancel()


class ToLoopback(httpx2.AsyncBaseTransport):
    """Sends every request to the loopback server instead, at `/HOST/PATH` of the URL it was meant for."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        request.url = url.copy_with(
            scheme="http", host="127.0.0.1", port=self.port, raw_path=f"/{url.host}".encode() + url.raw_path
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def publish(server: LoopbackServer, data_set: DataSet) -> None:
    """Serve the fixture of each of the data set's sources at the path of its official URL."""
    for source in data_set.sources:
        url = httpx2.URL(source.url)
        server.routes[f"/{url.host}{url.path}"] = Reply(body=release_bytes(data_set, source))


def on_loopback(server: LoopbackServer, data_set: DataSet, *, sha256: str | bool | None = True) -> DataSet:
    """`data_set` with its sources served by `server`; sha256=True records the fixtures' true checksums."""
    sources = []
    for source in data_set.sources:
        body = release_bytes(data_set, source)
        path = f"/{data_set.name}/{source.key}/{source.url.rsplit('/', 1)[-1]}"
        server.routes[path] = Reply(body=body)
        recorded = hashlib.sha256(body).hexdigest() if sha256 is True else sha256 or None
        sources.append(dataclasses.replace(source, url=server.url(path), sha256=recorded))
    return dataclasses.replace(data_set, sources=tuple(sources))


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(dest: Path) -> list[str]:
    return [path.name for path in dest.iterdir() if path.name.startswith(".fetch-")] if dest.exists() else []


def named(name: str) -> DataSet:
    data_set = find_data_set(name)
    assert data_set is not None
    return data_set


# -- every data set, from its pinned URL ------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_data_set_downloads_from_its_pinned_url_and_converts_to_the_shared_shape(tmp_path: Path) -> None:
    lines: list[str] = []
    async with serve() as server:
        for data_set in DATA_SETS:
            publish(server, data_set)
        async with httpx2.AsyncClient(transport=ToLoopback(server.port), follow_redirects=True) as client:
            code = await run_fetch_command(
                names=[], dest=tmp_path, force=False, verify=False, timeout_s=30, print_line=lines.append, client=client
            )
    assert code == 0
    assert server.asked == [f"/{httpx2.URL(s.url).host}{httpx2.URL(s.url).path}" for d in DATA_SETS for s in d.sources]
    for data_set in DATA_SETS:
        written = read_lines(tmp_path / data_set.path)
        assert canonical(written) == canonical(expected_records(data_set)), data_set.name
        record = json.loads(source_record_path(tmp_path / data_set.path).read_text(encoding="utf-8"))
        assert record["records"] == len(written)
        assert [source["url"] for source in record["sources"]] == [source.url for source in data_set.sources]
        assert all(not source["verified"] for source in record["sources"])  # no SHA-256 is recorded yet
        assert f"{data_set.name}: {len(written)} records → {tmp_path / data_set.path}" in lines
    assert sum("UNVERIFIED: no SHA-256 is recorded for" in line for line in lines) == sum(
        len(data_set.sources) for data_set in DATA_SETS
    )
    assert lines[-1] == "10 fetched, 0 already there, 0 failed"
    assert any(line.startswith("note: the SWE records are not run here") for line in lines)
    assert leftovers(tmp_path) == []


@pytest.mark.asyncio
async def test_a_source_without_a_recorded_checksum_is_refused_unless_no_verify(tmp_path: Path) -> None:
    lines: list[str] = []
    gsm8k = named("gsm8k")
    body = release_bytes(gsm8k, gsm8k.sources[0])
    async with serve() as server:
        publish(server, gsm8k)
        async with httpx2.AsyncClient(transport=ToLoopback(server.port)) as client:
            code = await run_fetch_command(
                names=["gsm8k"],
                dest=tmp_path,
                force=False,
                verify=True,
                timeout_s=30,
                print_line=lines.append,
                client=client,
            )
    assert code == 1
    assert lines == [
        f"gsm8k: failed: no SHA-256 is recorded for {gsm8k.sources[0].url} (this download's is "
        f"{hashlib.sha256(body).hexdigest()}); refused (check the file, then pass --no-verify to accept it)",
        "0 fetched, 0 already there, 1 failed",
    ]
    assert not (tmp_path / gsm8k.path).exists()
    assert leftovers(tmp_path) == []


# -- checksums ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_recorded_checksum_that_matches_is_verified(tmp_path: Path) -> None:
    async with serve() as server, create_client() as client:
        result = await fetch_data_set(on_loopback(server, named("bfcl_parallel")), dest=tmp_path, client=client)
    assert (result.status, result.records, result.unverified) == ("fetched", 2, ())
    record = json.loads(source_record_path(result.path).read_text(encoding="utf-8"))
    assert [source["verified"] for source in record["sources"]] == [True, True]
    assert canonical(read_lines(result.path)) == canonical(expected_records(named("bfcl_parallel")))


@pytest.mark.asyncio
async def test_a_checksum_mismatch_is_refused_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    async with serve() as server, create_client() as client:
        data_set = on_loopback(server, named("parallelqa"), sha256="0" * 64)
        refused = await fetch_data_set(data_set, dest=tmp_path, client=client)
        accepted = await fetch_data_set(data_set, dest=tmp_path, client=client, verify=False)
    url = data_set.sources[0].url
    got = hashlib.sha256(release_bytes(data_set, data_set.sources[0])).hexdigest()
    assert refused.status == "failed"
    assert refused.message == (
        f"SHA-256 of {url} is {got}, not the recorded {'0' * 64}; "
        "refused (check the file, then pass --no-verify to accept it)"
    )
    assert "\n" not in refused.message
    assert (accepted.status, accepted.records) == ("fetched", 3)
    assert accepted.unverified == (f"SHA-256 of {url} is {got}, not the recorded {'0' * 64}",)
    assert leftovers(tmp_path) == []


# -- download failures -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_errors_size_limits_and_stalls_are_one_clear_line_each(tmp_path: Path) -> None:
    movie = named("movie")
    async with serve() as server, create_client(read_timeout_s=0.3) as client:
        base = on_loopback(server, movie)
        path = httpx2.URL(base.sources[0].url).path

        async def fail(data_set: DataSet, **options: Any) -> str:
            result = await fetch_data_set(data_set, dest=tmp_path, client=client, **options)
            assert result.status == "failed"
            assert not (tmp_path / movie.path).exists()
            assert leftovers(tmp_path) == []
            return result.message

        server.routes[path] = Reply(body=b"gone", status=404)
        assert await fail(base) == f"{base.sources[0].url}: HTTP 404 Not Found"
        server.routes[path] = Reply(body=b"x" * 2000)
        small = dataclasses.replace(base, sources=(dataclasses.replace(base.sources[0], max_bytes=1000),))
        assert await fail(small) == f"{base.sources[0].url}: 2,000 bytes, over the 1,000 bytes limit"
        server.routes[path] = Reply(body=b"x" * 2000, headers={"Content-Encoding": "identity"})  # no usable length
        assert await fail(small) == f"{base.sources[0].url}: more than the 1,000 bytes limit"
        server.routes[path] = Reply(body=b"late", stall_s=2.0)
        assert await fail(base) == f"{base.sources[0].url}: the server stopped answering (timed out)"
        assert await fail(base, timeout_s=0.1) == f"{base.sources[0].url}: not downloaded within 0.1 s"
        server.routes[path] = Reply(status=302, headers={"Location": path})
        assert await fail(base) == f"{base.sources[0].url}: too many redirects"


@pytest.mark.asyncio
async def test_no_network_is_one_line_naming_the_host(tmp_path: Path) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens on the port now
    gsm8k = named("gsm8k")
    unreachable = dataclasses.replace(
        gsm8k, sources=(dataclasses.replace(gsm8k.sources[0], url=f"http://127.0.0.1:{port}/test.jsonl"),)
    )
    async with create_client() as client:
        result = await fetch_data_set(unreachable, dest=tmp_path, client=client)
    assert result.status == "failed"
    assert result.message.startswith("cannot connect to 127.0.0.1 (")
    assert result.message.endswith("): is there a network?")


@pytest.mark.asyncio
async def test_a_redirect_is_followed_and_a_malformed_release_is_reported_not_written(tmp_path: Path) -> None:
    quixbugs, hotpotqa = named("quixbugs"), named("hotpotqa")
    async with serve() as server, create_client() as client:
        archive = on_loopback(server, quixbugs)
        real = httpx2.URL(archive.sources[0].url).path
        server.routes["/archive/c7d6157.tar.gz"] = Reply(status=302, headers={"Location": real})  # like GitHub's
        moved = dataclasses.replace(archive.sources[0], url=server.url("/archive/c7d6157.tar.gz"))
        redirected = await fetch_data_set(dataclasses.replace(archive, sources=(moved,)), dest=tmp_path, client=client)
        unchecked = on_loopback(server, quixbugs, sha256=False)
        server.routes[real] = Reply(body=b"<html>rate limited</html>")
        broken = await fetch_data_set(unchecked, dest=tmp_path, client=client, force=True, verify=False)
        page = on_loopback(server, hotpotqa, sha256=False)
        server.routes[httpx2.URL(page.sources[0].url).path] = Reply(body=b"<!doctype html>")
        not_json = await fetch_data_set(page, dest=tmp_path, client=client, verify=False)
    assert (redirected.status, redirected.records) == ("fetched", 2)
    assert broken.status == "failed"
    assert broken.message.startswith(
        "the download is not shaped like QuixBugs, Python programs: c7d615710629c665aacb2518e7ab77a914de03a8.tar.gz "
        "is not a gzip tar archive"
    )
    assert canonical(read_lines(tmp_path / quixbugs.path)) == canonical(expected_records(quixbugs))  # kept as it was
    assert not_json.message == (
        "the download is not shaped like HotpotQA dev set, distractor setting: "
        "hotpot_dev_distractor_v1.json is not JSON (line 1, column 1)"
    )
    assert not (tmp_path / hotpotqa.path).exists()
    assert leftovers(tmp_path) == []


@pytest.mark.asyncio
async def test_a_data_set_already_there_is_kept_unless_forced(tmp_path: Path) -> None:
    lines: list[str] = []
    async with serve() as server, create_client() as client:
        movie = on_loopback(server, named("movie"))
        first = await fetch_data_set(movie, dest=tmp_path, client=client)
        (tmp_path / movie.path).write_text("edited\n", encoding="utf-8")
        again = await fetch_data_set(movie, dest=tmp_path, client=client)
        forced = await fetch_data_set(movie, dest=tmp_path, client=client, force=True)
        await run_fetch_command(
            names=["movie"],
            dest=tmp_path,
            force=False,
            verify=True,
            timeout_s=30,
            print_line=lines.append,
            client=client,
        )
    assert [first.status, again.status, forced.status] == ["fetched", "present", "fetched"]
    assert again.message == f"already at {tmp_path / movie.path}"
    assert canonical(read_lines(tmp_path / movie.path)) == canonical(expected_records(movie))
    assert server.asked.count(httpx2.URL(movie.sources[0].url).path) == 2
    assert lines[0] == f"movie: already at {tmp_path / movie.path} (--force fetches it again)"


# -- the command line -------------------------------------------------------------------------------


def test_data_fetch_list_shows_every_data_set_and_its_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "gsm8k_test.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "math" / "gsm8k_test.source.json").write_text('{"records": 1319}', encoding="utf-8")
    assert main(["data", "fetch", "--list", "--data", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    for data_set in DATA_SETS:
        assert data_set.name in output
    assert "1319 records" in output
    assert "not recorded" in output


def test_data_fetch_rejects_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch", "gsm8k", "nope"]) == 2
    error = capsys.readouterr().err
    assert "unknown data set nope; known: fanoutqa, hotpotqa" in error
    assert "Traceback" not in error


def test_data_fetch_without_network_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch", "gsm8k", "--data", str(tmp_path), "--timeout-s", "20", "--no-verify", "--force"]) == 1
    output = capsys.readouterr().out.splitlines()
    assert output[0].startswith("gsm8k: failed: cannot connect to raw.githubusercontent.com (")
    assert output[1] == "0 fetched, 0 already there, 1 failed"
    assert leftovers(tmp_path) == []
