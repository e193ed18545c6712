"""Run state in a run directory, written as the run goes, so that a crashed run can resume.

`RunStore` keeps one SQLite database, `run.sqlite`, in the run directory: the task, every planner reply
(the plan versions), every node with its status, resolved arguments, output or error, the token usage
by role, the replans and the notes. Each change is one small transaction in write-ahead-log mode, so a
`kill -9` loses at most the change being written; SQLite rolls back a half-written one on the next open.

On resume (`agentdag run --resume RUN_DIR`, or `Agent.run(task, store=...)` over a store that holds an
unfinished run) nodes that finished (done or failed) are restored with their outputs and errors and are
not run again; every other node (queued, running, skipped, or cancelled because the run was
interrupted) runs again. A node that was running when the process died therefore runs a second time:
tools with side effects should be idempotent, as with any at-least-once engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdag.errors import AgentdagError
from agentdag.events import NodeError
from agentdag.messages import Usage
from agentdag.plan import Node
from agentdag.records import NodeRecord, NodeStatus
from agentdag.result import Replan, RunResult, RunStatus
from agentdag.toolsets.base import JsonValue

__all__ = ["RunStore", "RunStoreError", "SavedNode", "SavedRun"]

STATE_FILE = "run.sqlite"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    round INTEGER NOT NULL, attempt INTEGER NOT NULL, text TEXT NOT NULL, saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY, round INTEGER NOT NULL, node TEXT NOT NULL, status TEXT NOT NULL,
    arguments TEXT, output TEXT, error TEXT, attempts INTEGER NOT NULL, duration_s REAL, saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (role TEXT PRIMARY KEY, usage TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replans (round INTEGER PRIMARY KEY, reason TEXT NOT NULL, nodes_added INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS notes (seq INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL);
"""
_KEPT: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class RunStoreError(AgentdagError):
    """A run directory cannot be used: missing, unreadable, of another task, or already finished."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedNode:
    """One node as the store last saw it."""

    node: Node
    round: int
    status: NodeStatus
    arguments: dict[str, JsonValue] | None
    output: JsonValue
    error: NodeError | None
    attempts: int
    duration_s: float | None

    @property
    def kept(self) -> bool:
        """Whether the node ended (done, failed, or cancelled by choice), so a resumed run restores it.

        A node cancelled because the run stopped is never saved as cancelled: it runs again.
        """
        return self.status in _KEPT


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedRun:
    """What a run directory holds.

    Attributes:
        task: the task, in words.
        meta: what the caller saved with it (for the CLI: the task file's path and text).
        nodes: every node saved, by id, in id order.
        usage: token usage by role.
        replans: the replanning rounds so far.
        notes: the run's notes so far.
        status: the final status, or None while the run is unfinished.
        answer: the final answer, once there is one.
    """

    task: str
    meta: Mapping[str, str]
    nodes: Mapping[int, SavedNode]
    usage: Mapping[str, Usage]
    replans: tuple[Replan, ...]
    notes: tuple[str, ...]
    status: RunStatus | None
    answer: JsonValue

    @property
    def round(self) -> int:
        """The last planning round that left a trace (0 when none did)."""
        rounds = [node.round for node in self.nodes.values()] + [replan.round for replan in self.replans]
        return max(rounds, default=0)

    @property
    def started(self) -> bool:
        """Whether the run got as far as adding nodes or replanning."""
        return bool(self.nodes or self.replans)


class RunStore:
    """The state of one run in `RUN_DIR/run.sqlite`. Use it from the event loop's thread.

    Create one with `RunStore.create` for a new run or `RunStore.open` to resume; close it when the run
    ends. Writes are synchronous: each is a short transaction in write-ahead-log mode.
    """

    def __init__(self, directory: Path, connection: sqlite3.Connection) -> None:
        self.directory = directory
        self._connection = connection

    @classmethod
    def create(cls, directory: str | Path, *, task: str, meta: Mapping[str, str] | None = None) -> RunStore:
        """Start a new run directory (created if needed; it must not hold a run yet).

        Raises:
            RunStoreError: the directory already holds a run, or cannot be written.
        """
        folder = Path(directory)
        if (folder / STATE_FILE).exists():
            raise RunStoreError(f"{folder}: already holds a run; resume it with --resume, or choose another folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Outputs and arguments are saved unredacted (a resumed run needs them): keep them private.
            os.close(os.open(folder / STATE_FILE, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as error:
            raise RunStoreError(f"{folder}: cannot create the run directory: {error.strerror}") from None
        store = cls(folder, _connect(folder / STATE_FILE))
        store._write(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            *[
                (key, value)
                for key, value in {
                    "schema": str(_SCHEMA_VERSION),
                    "task": task,
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **{f"meta.{key}": value for key, value in (meta or {}).items()},
                }.items()
            ],
        )
        return store

    @classmethod
    def open(cls, directory: str | Path) -> RunStore:
        """Open an existing run directory.

        Raises:
            RunStoreError: there is no run there, or its state cannot be read.
        """
        folder = Path(directory)
        path = folder / STATE_FILE
        if not path.is_file():
            raise RunStoreError(f"{folder}: no run here (no {STATE_FILE}); was it started with --no-state?")
        store = cls(folder, _connect(path))
        try:
            schema = store._meta().get("schema")
            if schema != str(_SCHEMA_VERSION):
                raise RunStoreError(f"{folder}: unknown state format {schema!r}")
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._connection.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------

    def save_node(self, record: NodeRecord, *, round_index: int) -> None:
        """Save a node's current state (insert or replace)."""
        error = record.error
        self._write(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                round_index,
                record.node.model_dump_json(),
                record.status,
                None if record.arguments is None else _dump(record.arguments),
                _dump(record.output) if record.status == "done" else None,
                None if error is None else json.dumps([error.kind, error.message, error.cause]),
                record.attempts,
                record.duration_s,
                time.time(),
            ),
        )

    def save_plan(self, round_index: int, attempt: int, text: str) -> None:
        """Save one planner reply (a plan version), whether or not it was valid."""
        self._write("INSERT INTO plans VALUES (?, ?, ?, ?)", (round_index, attempt, text, time.time()))

    def save_usage(self, usage: Mapping[str, Usage]) -> None:
        """Save the token usage by role so far."""
        self._write(
            "INSERT OR REPLACE INTO usage VALUES (?, ?)",
            *[(role, json.dumps(_usage_fields(item))) for role, item in usage.items()],
        )

    def save_replan(self, replan: Replan) -> None:
        """Save one replanning round."""
        row = (replan.round, replan.reason, replan.nodes_added)
        self._write("INSERT OR REPLACE INTO replans VALUES (?, ?, ?)", row)

    def save_note(self, note: str) -> None:
        """Save one note."""
        self._write("INSERT INTO notes (text) VALUES (?)", (note,))

    def save_result(self, result: RunResult) -> None:
        """Save the end of the run: its status, answer and final usage."""
        self.save_usage(result.usage)
        self._write(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            ("status", result.status),
            ("answer", _dump(result.answer)),
            ("error", result.error or ""),
        )

    def _write(self, statement: str, *rows: tuple[Any, ...]) -> None:
        try:
            with self._connection:
                self._connection.executemany(statement, rows)
        except sqlite3.Error as error:
            raise RunStoreError(f"{self.directory}: cannot save the run's state: {error}") from None

    # -- reading -------------------------------------------------------------------------------------

    def load(self) -> SavedRun:
        """Read everything saved so far.

        Raises:
            RunStoreError: the state cannot be read or is damaged.
        """
        try:
            meta = self._meta()
            node_rows = self._connection.execute("SELECT * FROM nodes ORDER BY id").fetchall()
            usage_rows = self._connection.execute("SELECT role, usage FROM usage").fetchall()
            replan_rows = self._connection.execute("SELECT * FROM replans ORDER BY round").fetchall()
            note_rows = self._connection.execute("SELECT text FROM notes ORDER BY seq").fetchall()
            nodes = {row[0]: _load_node(row) for row in node_rows}
            usage = {role: Usage(**json.loads(text)) for role, text in usage_rows}
        except (sqlite3.Error, ValueError, TypeError, KeyError) as error:
            raise RunStoreError(f"{self.directory}: the run's state is damaged: {error}") from None
        status = meta.get("status")
        return SavedRun(
            task=meta.get("task", ""),
            meta={key.removeprefix("meta."): value for key, value in meta.items() if key.startswith("meta.")},
            nodes=nodes,
            usage=usage,
            replans=tuple(Replan(round=row[0], reason=row[1], nodes_added=row[2]) for row in replan_rows),
            notes=tuple(row[0] for row in note_rows),
            status="done" if status == "done" else "failed" if status == "failed" else None,
            answer=json.loads(meta["answer"]) if "answer" in meta else None,
        )

    def load_unfinished(self, task: str | None = None) -> SavedRun:
        """`load`, for a run about to resume (of `task`, when given).

        Raises:
            RunStoreError: the run is of another task or already done, or its state cannot be read.
        """
        saved = self.load()
        if task is not None and saved.task != task:
            raise RunStoreError(f"{self.directory}: holds a run of another task ({saved.task[:60]!r})")
        if saved.status == "done":
            raise RunStoreError(f"{self.directory}: this run is already done; there is nothing to resume")
        return saved

    def plans(self) -> list[tuple[int, int, str]]:
        """Every planner reply saved: (round, attempt, text), oldest first."""
        return [tuple(row) for row in self._connection.execute("SELECT round, attempt, text FROM plans ORDER BY rowid")]

    def _meta(self) -> dict[str, str]:
        try:
            return dict(self._connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as error:
            raise RunStoreError(f"{self.directory}: the run's state cannot be read: {error}") from None


def _connect(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    except sqlite3.Error as error:
        raise RunStoreError(f"{path}: cannot open the run's state: {error}") from None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL survives a killed process (the OS keeps the log); only a power
        # loss could drop the last transactions.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(_SCHEMA)
    except sqlite3.Error as error:
        connection.close()
        raise RunStoreError(f"{path}: cannot open the run's state: {error}") from None
    connection.isolation_level = "DEFERRED"
    return connection


def _dump(value: JsonValue) -> str:
    # Tool outputs are JSON values; anything else is saved as its text, and the note is in the value.
    return json.dumps(value, ensure_ascii=False, default=repr)


def _usage_fields(usage: Usage) -> dict[str, float]:
    return dataclasses.asdict(usage)


def _load_node(row: tuple[Any, ...]) -> SavedNode:
    node_id, round_index, node, status, arguments, output, error, attempts, duration, _ = row
    del node_id
    failure: NodeError | None = None
    if error is not None:
        kind, message, cause = json.loads(error)
        failure = NodeError(kind, str(message), cause)
    return SavedNode(
        node=Node.model_validate_json(node),
        round=round_index,
        status=status,
        arguments=None if arguments is None else json.loads(arguments),
        output=None if output is None else json.loads(output),
        error=failure,
        attempts=attempts,
        duration_s=duration,
    )
