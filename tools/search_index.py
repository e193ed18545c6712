"""A BM25 full-text index over titled documents, in SQLite FTS5 (standard library), and its corpus loaders.

Shared by the `search` MCP server (`python -m agentdag.tools.search`) and the search benchmark, so both rank
the same paragraphs the same way. Documents are deduplicated by title (ignoring case; the first one wins).

User text never reaches FTS5's query language: `to_match_expression` keeps the words only and quotes each,
so `"AT&T" OR (` is searched as the words `AT`, `T` and `OR`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

__all__ = [
    "Document",
    "SearchHit",
    "SearchIndex",
    "SimulatedLatency",
    "read_hotpotqa_paragraphs",
    "read_jsonl_documents",
    "to_match_expression",
]

_WORD = re.compile(r"\w+")
_MAX_QUERY_WORDS = 64
_TITLE_WEIGHT = 2.0
_BODY_WEIGHT = 1.0
_SCHEMA_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Document:
    """One searchable document: a unique title and its text."""

    title: str
    text: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A ranked search result.

    Attributes:
        score: BM25 relevance, higher is better (SQLite's `bm25()` negated); only comparable within one query.
    """

    title: str
    text: str
    score: float


def to_match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression for free text: its words, each quoted, joined by OR; None if it has no words.

    Quoting makes every word a literal phrase, so FTS5 operators and punctuation in user text (`AND`, `NEAR`,
    `*`, `"`, `(`, `:`, `-`) never reach the query parser. Only the first 64 distinct words are kept.
    """
    words = list(dict.fromkeys(word.casefold() for word in _WORD.findall(query)))[:_MAX_QUERY_WORDS]
    if not words:
        return None
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def read_hotpotqa_paragraphs(path: Path) -> Iterator[Document]:
    """Every context paragraph (`context: [[title, [sentences]]]`) of a HotpotQA JSON Lines file, in order.

    A paragraph's text is its sentences joined as HotpotQA stores them (each sentence after the first starts
    with its own space). Titles repeat across records; `SearchIndex` keeps the first.

    Raises:
        ValueError: a line is not JSON or has no `context` list.
    """
    for number, record in _read_jsonl(path):
        context = record.get("context")
        if not isinstance(context, list):
            raise ValueError(f"{path}:{number}: a HotpotQA record needs a `context` list of [title, [sentences]]")
        for title, sentences in context:
            yield Document(title=str(title), text="".join(sentences).strip())


def read_jsonl_documents(path: Path, *, title_field: str = "title", text_field: str = "text") -> Iterator[Document]:
    """The documents of a JSON Lines file: one object a line with a title and a text field.

    A text field that holds a list of strings (sentences) is joined with spaces.

    Raises:
        ValueError: a line is not a JSON object or lacks one of the fields.
    """
    for number, record in _read_jsonl(path):
        title, text = record.get(title_field), record.get(text_field)
        if title is None or text is None:
            raise ValueError(f"{path}:{number}: the record has no {title_field!r} or no {text_field!r} field")
        if isinstance(text, list):
            text = " ".join(str(part) for part in text)
        yield Document(title=str(title), text=str(text))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            yield number, record


class SearchIndex:
    """Documents in SQLite: an FTS5 table for BM25 search and a title table for exact and fuzzy look-up.

    Words are stemmed (porter) and BM25 weighs title hits double.

    Queries take well under a millisecond on HotpotQA-sized corpora and run on the caller's thread; the
    connection belongs to the thread that built or opened the index.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        """Wrap an open index database; use `build`, `open` or `from_hotpotqa` instead."""
        self._connection = connection
        rows = connection.execute("SELECT title FROM documents ORDER BY id").fetchall()
        self._titles: list[str] = [str(title) for (title,) in rows]
        self._folded: dict[str, str] = {title.casefold(): title for title in self._titles}

    @classmethod
    def build(cls, documents: Iterable[Document], *, path: Path | None = None, fingerprint: str = "") -> SearchIndex:
        """Index `documents` in memory, or in a new database file at `path` (replaced if it exists).

        Args:
            documents: the corpus; a title seen before (ignoring case) is skipped.
            path: where to keep the index for `open`; None keeps it in memory.
            fingerprint: a description of the source that `open` compares to decide whether the file is stale.
        """
        if path is None:
            connection = sqlite3.connect(":memory:")
            _fill(connection, documents, fingerprint)
            return cls(connection)
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        connection = sqlite3.connect(partial)
        try:
            _fill(connection, documents, fingerprint)
        finally:
            connection.close()
        os.replace(partial, path)
        return cls(sqlite3.connect(path))

    @classmethod
    def open(cls, path: Path, *, fingerprint: str = "") -> SearchIndex | None:
        """Open an index file that `build` wrote from the source described by `fingerprint`; None if stale.

        A missing, unreadable or foreign file, or one built from another source or schema, counts as stale.
        """
        if not path.is_file():
            return None
        connection = sqlite3.connect(path)
        try:
            rows = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            connection.close()
            return None
        if rows.get("schema") != _SCHEMA_VERSION or rows.get("fingerprint") != fingerprint:
            connection.close()
            return None
        return cls(connection)

    @classmethod
    def from_hotpotqa(cls, path: Path, *, cache: Path | None = None) -> SearchIndex:
        """Index every distinct paragraph of a HotpotQA file, reusing the index file `cache` if it is fresh."""
        return cls.from_documents(lambda: read_hotpotqa_paragraphs(path), source=path, kind="hotpotqa", cache=cache)

    @classmethod
    def from_jsonl(
        cls, path: Path, *, title_field: str = "title", text_field: str = "text", cache: Path | None = None
    ) -> SearchIndex:
        """Index the documents of a JSON Lines file, reusing the index file `cache` if it is fresh."""
        return cls.from_documents(
            lambda: read_jsonl_documents(path, title_field=title_field, text_field=text_field),
            source=path,
            kind=f"jsonl:{title_field}:{text_field}",
            cache=cache,
        )

    @classmethod
    def from_documents(
        cls, read: Callable[[], Iterable[Document]], *, source: Path, kind: str, cache: Path | None = None
    ) -> SearchIndex:
        """Index the documents `read()` yields from `source`, through the index file `cache` if one is given.

        The cache is fresh while `source` keeps its resolved path, size and modification time and `kind`
        (how it was read) is unchanged.
        """
        status = source.stat()
        fingerprint = f"{kind}\x00{source.resolve()}\x00{status.st_size}\x00{status.st_mtime_ns}"
        if cache is not None:
            cached = cls.open(cache, fingerprint=fingerprint)
            if cached is not None:
                return cached
        return cls.build(read(), path=cache, fingerprint=fingerprint)

    def __len__(self) -> int:
        return len(self._titles)

    @property
    def titles(self) -> list[str]:
        """Every title, in indexing order."""
        return list(self._titles)

    def get(self, title: str) -> Document | None:
        """The document titled exactly `title`, else the one whose title matches ignoring case, else None."""
        # Titles are unique ignoring case, so the case-folded map finds an exact title too.
        found = self._folded.get(title.casefold()) or self._folded.get(title.strip().casefold())
        if found is None:
            return None
        (text,) = self._connection.execute("SELECT text FROM documents WHERE title = ?", (found,)).fetchone()
        return Document(title=found, text=str(text))

    def close_titles(self, title: str, *, limit: int = 5, cutoff: float = 0.6) -> list[str]:
        """Titles resembling `title` (difflib ratio of the case-folded titles at least `cutoff`), closest first."""
        matches = difflib.get_close_matches(title.strip().casefold(), self._folded, n=limit, cutoff=cutoff)
        return [self._folded[match] for match in matches]

    def search(self, query: str, *, limit: int = 5) -> list[SearchHit]:
        """The `limit` documents that best match the words of `query` by BM25, best first.

        Any text is accepted: a query without words returns no hits rather than an error.
        """
        expression = to_match_expression(query)
        if expression is None or limit <= 0:
            return []
        rows = self._connection.execute(
            "SELECT title, text, bm25(fts, ?, ?) AS rank FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?",
            (_TITLE_WEIGHT, _BODY_WEIGHT, expression, limit),
        ).fetchall()
        return [SearchHit(title=str(title), text=str(text), score=round(-float(rank), 4)) for title, text, rank in rows]

    def close(self) -> None:
        """Close the database."""
        self._connection.close()


def _fill(connection: sqlite3.Connection, documents: Iterable[Document], fingerprint: str) -> None:
    with connection:
        connection.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT NOT NULL, folded TEXT NOT NULL UNIQUE,
                                    text TEXT NOT NULL);
            CREATE INDEX documents_title ON documents (title);
            CREATE VIRTUAL TABLE fts USING fts5(title, text, content='documents', content_rowid='id',
                                                tokenize='porter unicode61');
            """
        )
        connection.executemany(
            "INSERT OR IGNORE INTO documents (title, folded, text) VALUES (?, ?, ?)",
            ((document.title, document.title.casefold(), document.text) for document in documents),
        )
        connection.execute("INSERT INTO fts (fts) VALUES ('rebuild')")
        connection.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)", [("schema", _SCHEMA_VERSION), ("fingerprint", fingerprint)]
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedLatency:
    """A web API's latency: `mean_ms` on average, jittered ±50% by a hash of the seed and the call.

    The delay depends on the call, not on the order of calls, so two agents making the same calls wait the
    same time for each (the search benchmark's in-process tools use the same rule and keys).
    """

    mean_ms: float
    seed: int = 0

    def delay_s(self, key: str) -> float:
        """The simulated delay of the call identified by `key`, in seconds."""
        if self.mean_ms <= 0:
            return 0.0
        digest = hashlib.sha256(f"{self.seed}\x00{key}".encode()).digest()
        jitter = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        return self.mean_ms * (0.5 + jitter) / 1000

    async def wait(self, key: str) -> None:
        """Sleep for the call's delay."""
        await anyio.sleep(self.delay_s(key))
