"""The task store: every submitted task, the callbacks and polls that update it.

SQLAlchemy Core on SQLite (WAL) by default; the SQL is portable to PostgreSQL; the only
SQLite-specific statements live in the SQLite connection hooks below.

Merging. A task's state (stage, code/msg, errors, tracks) is the merge of every event
that reached it, callbacks and polls alike, and the merge does not depend on the order
of arrival:

- stages only move forward: submitted < text < first < error < complete. `error` and
  `complete` are both final; should a task report both, `complete` (the one with the
  tracks) wins whichever came first;
- code, msg, errorCode and errorMessage come from the highest stage seen; an event of
  the same stage only fills blanks;
- tracks merge by track id, field by field: the value from the highest stage that had a
  non-empty value wins; an empty value never blanks a known one; only http(s) URLs are
  kept as media URLs;
- a duplicate callback (same task, same stage) changes nothing; a callback of an unknown
  type is kept in `callbacks` and changes nothing else;
- a callback for a task id no visitor submitted goes to `orphan_callbacks` (capped); if
  the task is recorded later (a callback that raced the submission), it is replayed.

Tasks are keyed by (task_id, visitor_id): one Kie task may appear in two visitors'
histories after an import; every copy receives the task's callbacks and polls.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

import sqlalchemy as sa
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from kie.models import CALLBACK_CODES, FINAL_STAGES, STAGES, CallbackPayload, TaskInfo, Track

__all__ = [
    "ImportResult",
    "callback_problem",
    "TaskStore",
    "TaskView",
    "open_store",
    "redact_request",
]

# Merge precedence. Both final stages outrank the others; complete outranks error so
# the result never depends on the order the two arrive in.
PRECEDENCE: dict[str, int] = {"submitted": 0, "text": 1, "first": 2, "error": 3, "complete": 4}
MEDIA_URL_FIELDS = (
    "audio_url",
    "source_audio_url",
    "stream_audio_url",
    "source_stream_audio_url",
    "image_url",
    "source_image_url",
)
TRACK_FIELDS: tuple[str, ...] = tuple(name for name in Track.model_fields if name != "id")
REDACTED_QUERY_KEYS = frozenset({"token"})
REDACTED = "***"
ORPHAN_CAP = 1000
MAX_IMPORT_RECORDS = 10_000
MAX_STAGE_KEY = 40
MAX_TASK_ID = 200
BUSY_TIMEOUT_MS = 5000
WRITER_GROUP_MAX = 64  # callbacks committed together at most
WRITER_IDLE_S = 5.0  # the writer thread ends after this long without work
LOOP_GROUP_MAX = 32  # callbacks one event-loop flush commits at most (bounds its time)
LOOP_CHECKPOINT_EVERY = 64  # event-loop flushes between two WAL checkpoints (in a thread)
_WRITE = "studio_write"  # execution option: this connection's transaction writes

Outcome = Literal["stored", "duplicate", "orphan"]
_UNSAFE_URL_CHAR = re.compile(r"[\x00-\x1f\s]")  # control characters and any whitespace
_CONTROL_CHAR = re.compile(r"[\x00-\x1f]")

log = logging.getLogger(__name__)

# --- schema --------------------------------------------------------------------------

metadata = sa.MetaData()

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", sa.String(MAX_TASK_ID), primary_key=True),
    sa.Column("visitor_id", sa.String(200), primary_key=True),
    sa.Column("submitted_at", sa.Double, nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("model", sa.String(40)),
    sa.Column("title", sa.Text),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("code", sa.Integer),
    sa.Column("msg", sa.Text),
    sa.Column("error_code", sa.String(100)),
    sa.Column("error_message", sa.Text),
    sa.Column("tracks", sa.JSON, nullable=False),
    # {track_id: {"pos": [rank, index], "fields": {field: rank}}}: provenance for merging
    sa.Column("track_ranks", sa.JSON, nullable=False),
    sa.Column("stages_seen", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("last_callback_at", sa.Double),
    sa.Column("last_polled_at", sa.Double),
    sa.Index("ix_tasks_visitor_submitted", "visitor_id", "submitted_at"),
)

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("task_id", sa.String(MAX_TASK_ID), primary_key=True),
    sa.Column("stage", sa.String(MAX_STAGE_KEY), primary_key=True),
    sa.Column("callback_type", sa.String(MAX_STAGE_KEY), nullable=False),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("msg", sa.Text),
    sa.Column("tracks", sa.JSON, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
)

orphan_callbacks = sa.Table(
    "orphan_callbacks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(MAX_TASK_ID), nullable=False, index=True),
    sa.Column("stage", sa.String(MAX_STAGE_KEY), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
)

app_secrets = sa.Table(
    "app_secrets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# --- views -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskView:
    """One task as a page shows it."""

    task_id: str
    visitor_id: str
    submitted_at: datetime
    request: dict[str, Any]
    model: str | None
    title: str | None
    stage: str
    code: int | None
    msg: str | None
    error_code: str | None
    error_message: str | None
    tracks: list[Track]
    stages_seen: dict[str, datetime]
    updated_at: datetime
    last_polled_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        """True once the task completed or failed."""
        return self.stage in FINAL_STAGES

    @property
    def code_meaning(self) -> str | None:
        """What Kie's callback code means, in plain words (None when unknown)."""
        return CALLBACK_CODES.get(self.code) if self.code is not None else None


@dataclass(frozen=True)
class ImportResult:
    """What import_records did."""

    added: int
    skipped: int
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Event:
    """One piece of news about a task: a callback or a poll."""

    stage: str | None  # the stage it stands for; None: moves nothing
    at: float
    code: int | None = None
    msg: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    tracks: Sequence[Track] = ()
    # _clean_track of each of `tracks`, when the caller has them already (a callback's
    # row needs them too); computed on demand otherwise.
    cleaned: Sequence[dict[str, Any]] | None = None


# --- small pure helpers ------------------------------------------------------------------


def _now() -> float:
    return time.time()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def safe_media_url(value: Any) -> str | None:
    """`value` when it is an http(s) URL, else None (javascript:, data:, junk...)."""
    if not isinstance(value, str) or not value or len(value) > 4096:
        return None
    if _UNSAFE_URL_CHAR.search(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return value


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None (they are not JSON)."""
    if value is None or isinstance(value, (str, int)):  # the usual case, first
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _clean_track(track: Track) -> dict[str, Any]:
    data = _finite(track.model_dump(mode="json"))
    for name in MEDIA_URL_FIELDS:
        data[name] = safe_media_url(data.get(name))
    return data


def redact_url(url: str) -> str:
    """`url` with the values of secret query parameters (the callback token) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    pieces = []
    for piece in parts.query.split("&"):
        key = piece.split("=", 1)[0]
        if unquote_plus(key).lower() in REDACTED_QUERY_KEYS:
            piece = f"{key}={REDACTED}"
        pieces.append(piece)
    return parts._replace(query="&".join(pieces)).geturl()


def redact_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The wire request without secrets: the callBackUrl's token becomes ***."""
    clean = dict(request)
    for key in ("callBackUrl", "call_back_url"):
        if isinstance(clean.get(key), str):
            clean[key] = redact_url(clean[key])
    return clean


def _text(value: Any, limit: int) -> str | None:
    """`value` as bounded text without NUL characters (PostgreSQL refuses them)."""
    if value is None:
        return None
    return str(value).replace("\x00", "")[:limit]


def _stage_key(payload: CallbackPayload) -> str:
    """The callbacks-table key: failures count as the error stage."""
    if payload.code != 200:
        return "error"
    return _text(payload.data.callback_type, MAX_STAGE_KEY) or ""


def callback_problem(payload: CallbackPayload) -> str | None:
    """Why the store would refuse this callback (None when it can keep it)."""
    if not -(2**31) <= payload.code < 2**31:
        return "code is out of range."
    task_id = payload.data.task_id
    if not task_id.strip() or len(task_id) > MAX_TASK_ID:
        return f"data.task_id must be 1 to {MAX_TASK_ID} characters."
    if _CONTROL_CHAR.search(task_id):
        return "data.task_id contains control characters."
    return None


def _callback_row(
    payload: CallbackPayload,
    *,
    verified: bool,
    at: float,
    cleaned: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The callbacks-table row that keeps this callback (`cleaned`: its tracks through
    _clean_track, when the caller has them)."""
    data = payload.data
    return {
        "task_id": data.task_id,
        "stage": _stage_key(payload),
        "callback_type": _text(data.callback_type, MAX_STAGE_KEY),
        "code": payload.code,
        "msg": _text(payload.msg, 2000),
        "tracks": [_clean_track(t) for t in data.tracks] if cleaned is None else cleaned,
        "received_at": at,
        "verified": verified,
    }


def _orphan_row(payload: CallbackPayload, *, verified: bool, at: float) -> dict[str, Any]:
    """The orphan_callbacks row that keeps a callback for a task nobody recorded (yet)."""
    return {
        "task_id": payload.data.task_id,
        "stage": _stage_key(payload),
        "payload": _finite(payload.model_dump(mode="json", by_alias=True)),
        "received_at": at,
        "verified": verified,
    }


def _callback_event(
    payload: CallbackPayload, at: float, cleaned: Sequence[dict[str, Any]] | None = None
) -> _Event:
    kind = payload.data.callback_type
    if payload.code != 200 or kind == "error":
        stage: str | None = "error"
    else:
        stage = kind if kind in PRECEDENCE and kind != "submitted" else None
    return _Event(
        stage=stage,
        at=at,
        code=payload.code,
        msg=_text(payload.msg, 2000),
        tracks=payload.data.tracks,
        cleaned=cleaned,
    )


def _poll_event(info: TaskInfo, at: float) -> _Event:
    stage = info.stage
    failed = stage == "error"
    return _Event(
        stage=stage,
        at=at,
        error_code=_text(info.error_code, 100) if failed else None,
        error_message=_text(info.error_message, 2000) if failed else None,
        tracks=info.tracks,
    )


# --- the merge -------------------------------------------------------------------------

_STATE = (
    "stage",
    "code",
    "msg",
    "error_code",
    "error_message",
    "tracks",
    "track_ranks",
    "stages_seen",
)


# What a stored callback may change in a task row (written back whole by a group).
_CALLBACK_UPDATES = (*_STATE, "version", "updated_at", "last_callback_at")


def _merge_tracks(
    tracks: list[dict[str, Any]],
    ranks: dict[str, Any],
    incoming: Sequence[Track],
    rank: int,
    cleaned: Sequence[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    by_id = {t["id"]: dict(t) for t in tracks}
    ranks = {k: {"pos": list(v["pos"]), "fields": dict(v["fields"])} for k, v in ranks.items()}
    for index, track in enumerate(incoming):
        data = _clean_track(track) if cleaned is None else cleaned[index]
        current = by_id.setdefault(track.id, {"id": track.id})
        meta = ranks.setdefault(track.id, {"pos": [rank, index], "fields": {}})
        if rank >= meta["pos"][0]:
            meta["pos"] = [rank, index]
        for name in TRACK_FIELDS:
            value = data.get(name)
            if _blank(value):
                current.setdefault(name, None)
                continue
            if _blank(current.get(name)) or rank >= meta["fields"].get(name, -1):
                current[name] = value
                meta["fields"][name] = rank
    order = sorted(by_id, key=lambda tid: (-ranks[tid]["pos"][0], ranks[tid]["pos"][1], tid))
    return [by_id[tid] for tid in order], ranks


def _merge(state: Mapping[str, Any], event: _Event) -> dict[str, Any]:
    """The new values of the state columns after `event`; only the ones that changed."""
    if event.stage is None:
        return {}
    new = {name: state[name] for name in _STATE}
    rank = PRECEDENCE[event.stage]
    current = PRECEDENCE.get(state["stage"], 0)
    outcome = ("code", "msg", "error_code", "error_message")
    if rank > current:
        new["stage"] = event.stage
        for name in outcome:
            new[name] = getattr(event, name)
    elif rank == current:
        for name in outcome:
            if new[name] is None and getattr(event, name) is not None:
                new[name] = getattr(event, name)
    if event.tracks:
        new["tracks"], new["track_ranks"] = _merge_tracks(
            state["tracks"], state["track_ranks"], event.tracks, rank, event.cleaned
        )
    if event.stage not in state["stages_seen"] and event.stage != "submitted":
        new["stages_seen"] = {**state["stages_seen"], event.stage: event.at}
    return {name: value for name, value in new.items() if value != state[name]}


# --- the store -------------------------------------------------------------------------


def _sqlite_hooks(
    engine: Engine, busy_timeout_ms: int = BUSY_TIMEOUT_MS, autocheckpoint: bool = True
) -> None:
    """WAL, sane pragmas, and BEGIN IMMEDIATE for writes (SQLAlchemy's pysqlite recipe)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not autocheckpoint:
                cursor.execute("PRAGMA wal_autocheckpoint = 0")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _loop_engine(url: str) -> Engine | None:
    """The engine event-loop flushes write with (see _LoopBatcher): SQLite files only
    (a network database or a shared in-memory connection would block or clash), never
    waiting for a lock (busy_timeout 0: a busy database sends the group to the writer
    thread instead), and never checkpointing on commit (a thread does that)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in database:
        return None
    engine = sa.create_engine(
        parsed, connect_args={"timeout": 0, "check_same_thread": False}, pool_size=2
    )
    _sqlite_hooks(engine, busy_timeout_ms=0, autocheckpoint=False)
    return engine


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if in_memory:  # one shared connection; for tests and throwaway runs only
        engine = sa.create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        if not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    _sqlite_hooks(engine)
    return engine


# --- the callback writer -----------------------------------------------------------------

# A group of callbacks is merged by one piece of code (TaskStore._record_group), which
# reaches the database through one of two small adapters with the same four methods:
# _SqlaGroupDB (SQLAlchemy Core, any database: the writer thread) and _SqliteGroupDB
# (the plain sqlite3 connection: the event loop's flushes, where SQLAlchemy's per-
# statement work was most of the store's time per callback).

# The task columns a callback reads and writes (not `request` and the like).
_GROUP_COLUMNS = ("task_id", "visitor_id", *_CALLBACK_UPDATES)
_JSON_STATE = ("tracks", "track_ranks", "stages_seen")  # the JSON columns among them
_CALLBACK_COLUMNS = tuple(column.name for column in callbacks.columns)
_ORPHAN_COLUMNS = ("task_id", "stage", "payload", "received_at", "verified")

# The SQLAlchemy statements, built once: building and hashing a statement costs more
# than running it on SQLite.
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_GROUP_TASKS = sa.select(*(tasks.c[name] for name in _GROUP_COLUMNS)).where(
    tasks.c.task_id.in_(_IDS)
)
_GROUP_KEPT = sa.select(callbacks.c.task_id, callbacks.c.stage).where(
    callbacks.c.task_id.in_(_IDS)
)
_GROUP_INSERT = callbacks.insert()
_GROUP_UPDATE = tasks.update().where(
    tasks.c.task_id == sa.bindparam("b_task_id"),
    tasks.c.visitor_id == sa.bindparam("b_visitor_id"),
)
_ORPHAN_CUTOFF = (
    sa.select(orphan_callbacks.c.id)
    .order_by(orphan_callbacks.c.id.desc())
    .offset(sa.bindparam("cap"))
    .limit(1)
)
_ORPHAN_TRIM = orphan_callbacks.delete().where(orphan_callbacks.c.id <= sa.bindparam("cutoff"))

# The same statements as plain SQL for sqlite3 (same tables, same columns, same JSON
# text: SQLAlchemy's JSON type stores json.dumps(value) on SQLite too). Only column
# names and "?" placeholders are pasted in (S608): every value is a bound parameter.
_SQL_KEPT = "SELECT task_id, stage FROM callbacks WHERE task_id IN ({marks})"
_SQL_TASKS = f"SELECT {', '.join(_GROUP_COLUMNS)} FROM tasks WHERE task_id IN ({{marks}})"  # noqa: S608
_SQL_INSERT = (
    f"INSERT INTO callbacks ({', '.join(_CALLBACK_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_CALLBACK_COLUMNS))})"
)
_SQL_UPDATE = (
    f"UPDATE tasks SET {', '.join(f'{name} = ?' for name in _CALLBACK_UPDATES)} "  # noqa: S608
    "WHERE task_id = ? AND visitor_id = ?"
)
_SQL_ORPHAN = (
    f"INSERT INTO orphan_callbacks ({', '.join(_ORPHAN_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_ORPHAN_COLUMNS))})"
)
_SQL_ORPHAN_CUTOFF = "SELECT id FROM orphan_callbacks ORDER BY id DESC LIMIT 1 OFFSET ?"
_SQL_ORPHAN_TRIM = "DELETE FROM orphan_callbacks WHERE id <= ?"


class _SqlaGroupDB:
    """_record_group's database access through SQLAlchemy (any database)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def load(self, ids: list[str]) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
        """The task rows (_GROUP_COLUMNS) and the (task_id, stage) callbacks kept."""
        found = self._conn.execute(_GROUP_TASKS, {"ids": ids}).mappings()
        kept = self._conn.execute(_GROUP_KEPT, {"ids": ids})
        return [dict(row) for row in found], {(task_id, stage) for task_id, stage in kept}

    def insert_callbacks(self, rows: list[dict[str, Any]]) -> None:
        self._conn.execute(_GROUP_INSERT, rows)

    def update_tasks(self, rows: list[dict[str, Any]]) -> None:
        self._conn.execute(
            _GROUP_UPDATE,
            [
                {
                    **{name: row[name] for name in _CALLBACK_UPDATES},
                    "b_task_id": row["task_id"],
                    "b_visitor_id": row["visitor_id"],
                }
                for row in rows
            ],
        )

    def store_orphan(self, row: dict[str, Any]) -> None:
        """Keep a callback for an unknown task; only the newest ORPHAN_CAP stay."""
        self._conn.execute(orphan_callbacks.insert(), row)
        cutoff = self._conn.execute(_ORPHAN_CUTOFF, {"cap": ORPHAN_CAP}).scalar()
        if cutoff is not None:
            self._conn.execute(_ORPHAN_TRIM, {"cutoff": cutoff})


class _SqliteGroupDB:
    """_record_group's database access on a plain sqlite3 connection (the same SQL as
    _SqlaGroupDB). A task's JSON columns are encoded again only when the merge changed
    them (the merge replaces a changed value, it never edits one in place); the others
    are written back as the text that was read."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._read: dict[int, tuple[Any, str]] = {}  # id(decoded value) -> (value, its text)

    def load(self, ids: list[str]) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
        marks = ", ".join("?" * len(ids))
        rows = []
        for found in self._conn.execute(_SQL_TASKS.format(marks=marks), ids):
            row = dict(zip(_GROUP_COLUMNS, found, strict=True))
            for name in _JSON_STATE:
                text = row[name]
                row[name] = value = json.loads(text)
                self._read[id(value)] = (value, text)
            rows.append(row)
        kept = set(self._conn.execute(_SQL_KEPT.format(marks=marks), ids))
        return rows, kept

    def _json(self, value: Any) -> str:
        read = self._read.get(id(value))
        if read is not None and read[0] is value:  # as read: unchanged
            return read[1]
        return json.dumps(value)

    def insert_callbacks(self, rows: list[dict[str, Any]]) -> None:
        self._conn.executemany(
            _SQL_INSERT,
            [
                tuple(json.dumps(row[name]) if name == "tracks" else row[name]
                      for name in _CALLBACK_COLUMNS)
                for row in rows
            ],
        )

    def update_tasks(self, rows: list[dict[str, Any]]) -> None:
        self._conn.executemany(
            _SQL_UPDATE,
            [
                (
                    *(self._json(row[name]) if name in _JSON_STATE else row[name]
                      for name in _CALLBACK_UPDATES),
                    row["task_id"],
                    row["visitor_id"],
                )
                for row in rows
            ],
        )

    def store_orphan(self, row: dict[str, Any]) -> None:
        values = {**row, "payload": json.dumps(row["payload"])}
        self._conn.execute(_SQL_ORPHAN, tuple(values[name] for name in _ORPHAN_COLUMNS))
        cutoff = self._conn.execute(_SQL_ORPHAN_CUTOFF, (ORPHAN_CAP,)).fetchone()
        if cutoff is not None:
            self._conn.execute(_SQL_ORPHAN_TRIM, cutoff)


@dataclass(frozen=True)
class _CallbackWrite:
    """One callback waiting for the writer; `done` resolves after its group committed."""

    payload: CallbackPayload
    verified: bool
    at: float
    done: Future[Outcome] | None  # None: an event-loop flush answers it (_LoopBatcher)

    @property
    def waiter(self) -> Future[Outcome]:
        """`done`, for the writer thread (which is only handed items that have one)."""
        assert self.done is not None
        return self.done


class _CallbackWriter:
    """Group commit for callbacks: one thread takes whatever is waiting (up to
    WRITER_GROUP_MAX), stores it all in ONE write transaction, and only after the
    commit resolves each callback's future. A durable commit costs the same for one
    callback as for sixty-four, so under load this is what keeps up.

    The thread starts on the first callback and ends after WRITER_IDLE_S without any.
    """

    def __init__(self, commit: Callable[[list[_CallbackWrite]], None]) -> None:
        self._commit = commit
        self._waiting: deque[_CallbackWrite] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, item: _CallbackWrite) -> None:
        with self._wake:
            self._waiting.append(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskstore-callback-writer", daemon=True
                )
                self._thread.start()
            else:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._waiting:
                    self._wake.wait(WRITER_IDLE_S)
                if not self._waiting:
                    self._thread = None  # under the lock: submit() starts a new one
                    return
                count = min(len(self._waiting), WRITER_GROUP_MAX)
                group = [self._waiting.popleft() for _ in range(count)]
            # From here on a waiter cannot cancel: what was handed in gets written.
            for item in group:
                item.waiter.set_running_or_notify_cancel()
            try:
                self._commit(group)
            except BaseException as exc:  # never leave a waiter hanging
                for item in group:
                    if not item.waiter.done():
                        item.waiter.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise


class _LoopBatcher:
    """Group commit on the event loop, for the callback route (no thread, no GIL
    ping-pong between the loop and a writer thread).

    Each callback appends itself and gets an asyncio future. The first of a group
    schedules a flush with call_soon; while the group keeps growing from one loop
    iteration to the next (requests read in the meantime), the flush waits one more
    iteration, up to LOOP_GROUP_MAX callbacks (at 32 concurrent requests this turned
    groups of ~10 into groups of 32: a third of the commits). The flush stores the
    group in ONE immediate transaction synchronously on the loop thread, on the plain
    sqlite3 connection (_SqliteGroupDB; SQLite in WAL with synchronous=NORMAL: well
    under a millisecond per commit), and resolves the futures only after the commit;
    more waiting means another flush via call_soon, so other work on the loop runs in
    between. The merge is the writer thread's (TaskStore._record_group) and the SQL
    the same, so the outcomes and rows are the same.

    The flush never waits on a lock (busy_timeout 0). Should its transaction fail for
    any reason (another writer holds the lock, a bad event), nothing was committed and
    the whole group goes to the writer thread, which waits for the lock and retries a
    failing group one callback per transaction, so a bad event fails alone.
    """

    def __init__(self, store: TaskStore, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
        self._store = store
        self._loop = loop
        self._engine = engine
        self._waiting: deque[tuple[_CallbackWrite, asyncio.Future[Outcome]]] = deque()
        self._scheduled = False
        self._seen = 0  # callbacks waiting when the scheduled flush last looked
        self._flushes = 0
        self._checkpointing = False

    def submit(self, item: _CallbackWrite) -> asyncio.Future[Outcome]:
        done: asyncio.Future[Outcome] = self._loop.create_future()
        self._waiting.append((item, done))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        return done

    def _flush(self) -> None:
        waiting = len(self._waiting)
        if self._seen < waiting < LOOP_GROUP_MAX:
            # Still growing: wait one more loop iteration (which also polls the sockets)
            # so the requests that just arrived join this group.
            self._seen = waiting
            self._loop.call_soon(self._flush)
            return
        self._seen = 0
        count = min(waiting, LOOP_GROUP_MAX)
        group = [self._waiting.popleft() for _ in range(count)]
        if self._waiting:
            self._loop.call_soon(self._flush)  # the rest after the loop's other work
        else:
            self._scheduled = False
        if not group:
            return
        try:
            outcomes = self._commit([item for item, _ in group])
        except Exception as exc:  # noqa: BLE001 - nothing committed: the thread retries
            log.debug("loop flush of %d callbacks failed (%s); to the writer thread", count, exc)
            for item, done in group:
                self._hand_to_thread(item, done)
            return
        for (_item, done), outcome in zip(group, outcomes, strict=True):
            if not done.done():  # a cancelled waiter: written all the same
                done.set_result(outcome)
        self._flushes += 1
        if self._flushes % LOOP_CHECKPOINT_EVERY == 0 and not self._checkpointing:
            self._checkpointing = True
            self._loop.run_in_executor(None, self._checkpoint)

    def _commit(self, group: list[_CallbackWrite]) -> list[Outcome]:
        """Store `group` in one BEGIN IMMEDIATE transaction on the pool's plain sqlite3
        connection (no SQLAlchemy per statement: see _SqliteGroupDB); raises, with
        nothing committed, if anything fails."""
        pooled = self._engine.raw_connection()
        try:
            conn = pooled.driver_connection  # sqlite3, autocommit: we say BEGIN ourselves
            assert isinstance(conn, sqlite3.Connection)
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = self._store._record_group(_SqliteGroupDB(conn), group)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return outcomes
        finally:
            pooled.close()  # back to the pool

    def _hand_to_thread(self, item: _CallbackWrite, done: asyncio.Future[Outcome]) -> None:
        retry: Future[Outcome] = Future()
        self._store._writer.submit(_CallbackWrite(item.payload, item.verified, item.at, retry))

        def settle(finished: Future[Outcome]) -> None:
            if done.done():
                return
            exc = finished.exception()
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(finished.result())

        retry.add_done_callback(lambda f: self._loop.call_soon_threadsafe(settle, f))

    def _checkpoint(self) -> None:
        """Move the WAL into the database (PASSIVE: never blocks the loop's writes)."""
        try:
            with self._store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # noqa: BLE001 - the next one will try again
            log.debug("WAL checkpoint failed", exc_info=True)
        finally:
            self._checkpointing = False


class TaskStore:
    """Tasks, their callbacks and the server's own secrets, in one database.

    Safe to share between threads: every method opens its own short transaction.
    Callbacks are committed in groups, and a callback is acknowledged only once it is
    committed: from async code (the route) by a batcher on the event loop
    (store_callback, _LoopBatcher), from sync code by one writer thread per store
    (record_callback / submit_callback, _CallbackWriter). Both store a group with the
    same code (_record_group).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _make_engine(url)
        self._writer = _CallbackWriter(self._commit_callbacks)
        self._loop_engine: Engine | None = None  # made on the first async callback
        self._loop_engine_made = False
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatcher] = (
            weakref.WeakKeyDictionary()
        )
        self._batchers_lock = threading.Lock()
        with self._write() as conn:
            metadata.create_all(conn)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Release the connections (a later call reconnects)."""
        self._engine.dispose()
        if self._loop_engine is not None:
            self._loop_engine.dispose()

    # -- transactions --

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert unless the primary key exists; True when a row was added.

        Values travel as parameters, not in the statement: the statement is the same for
        every row, so SQLAlchemy reuses its compiled form (a hot path for callbacks).
        """
        name = conn.dialect.name
        if name in ("sqlite", "postgresql"):
            module = sqlite if name == "sqlite" else postgresql
            stmt = module.insert(table).on_conflict_do_nothing()
            return conn.execute(stmt, values).rowcount == 1
        keys = {f"pk_{c.name}": values[c.name] for c in table.primary_key.columns}
        found = conn.execute(
            sa.select(sa.literal(1))
            .select_from(table)
            .where(*(c == sa.bindparam(f"pk_{c.name}") for c in table.primary_key.columns)),
            keys,
        ).first()
        if found:
            return False
        conn.execute(table.insert(), values)
        return True

    # -- writes --

    def record_submission(
        self,
        *,
        task_id: str,
        visitor_id: str,
        request: Mapping[str, Any],
        submitted_at: float | None = None,
    ) -> None:
        """Remember a task this visitor submitted (again: no change)."""
        at = _now() if submitted_at is None else submitted_at
        clean = redact_request(request)
        row = {
            "task_id": task_id,
            "visitor_id": visitor_id,
            "submitted_at": at,
            "request": clean,
            "model": _text(clean.get("model"), 40),
            "title": _text(clean.get("title"), 500),
            "stage": "submitted",
            "code": None,
            "msg": None,
            "error_code": None,
            "error_message": None,
            "tracks": [],
            "track_ranks": {},
            "stages_seen": {"submitted": at},
            "version": 1,
            "updated_at": at,
            "last_callback_at": None,
            "last_polled_at": None,
        }
        with self._write() as conn:
            if self._insert_ignore(conn, tasks, row):
                self._adopt_orphans(conn, task_id)

    def _adopt_orphans(self, conn: Connection, task_id: str) -> None:
        """Replay callbacks that arrived before their task was recorded."""
        rows = conn.execute(
            sa.select(orphan_callbacks)
            .where(orphan_callbacks.c.task_id == task_id)
            .order_by(orphan_callbacks.c.id)
        ).all()
        for row in rows:
            try:
                payload = CallbackPayload.model_validate(row.payload)
            except ValidationError:
                continue
            self._store_callback(conn, payload, verified=row.verified, at=row.received_at)
        if rows:
            conn.execute(orphan_callbacks.delete().where(orphan_callbacks.c.task_id == task_id))

    def record_callback(
        self, payload: CallbackPayload, *, verified: bool, received_at: float | None = None
    ) -> Outcome:
        """Store one callback: "stored", "duplicate" (seen before) or "orphan" (unknown task).

        Returns once the callback is committed. ValueError if callback_problem() finds
        it unstorable (the route checks first).
        """
        return self.submit_callback(payload, verified=verified, received_at=received_at).result()

    def submit_callback(
        self, payload: CallbackPayload, *, verified: bool, received_at: float | None = None
    ) -> Future[Outcome]:
        """Hand a callback to the writer; the future resolves to record_callback's answer
        after the group it went in has committed (or to the exception that stopped it).

        ValueError at once if callback_problem() finds it unstorable.
        """
        problem = callback_problem(payload)
        if problem:
            raise ValueError(problem)
        at = _now() if received_at is None else received_at
        done: Future[Outcome] = Future()
        self._writer.submit(_CallbackWrite(payload, verified, at, done))
        return done

    async def store_callback(
        self, payload: CallbackPayload, *, verified: bool, received_at: float | None = None
    ) -> Outcome:
        """record_callback for async code: the answer once the callback is committed.

        On a SQLite file the callback is grouped with the others of this event loop and
        committed on the loop (_LoopBatcher); elsewhere it goes to the writer thread.
        Cancelling the caller does not cancel the write. ValueError at once if
        callback_problem() finds it unstorable.
        """
        problem = callback_problem(payload)
        if problem:
            raise ValueError(problem)
        at = _now() if received_at is None else received_at
        batcher = self._batcher(asyncio.get_running_loop())
        if batcher is None:
            done = self.submit_callback(payload, verified=verified, received_at=at)
            return await asyncio.shield(asyncio.wrap_future(done))
        # No shield needed here: the batcher holds the callback, not the future, so a
        # cancelled caller only cancels its wait; the callback is written all the same.
        return await batcher.submit(_CallbackWrite(payload, verified, at, None))

    def _batcher(self, loop: asyncio.AbstractEventLoop) -> _LoopBatcher | None:
        batcher = self._batchers.get(loop)
        if batcher is not None:
            return batcher
        with self._batchers_lock:
            if not self._loop_engine_made:
                self._loop_engine = _loop_engine(self.url)
                self._loop_engine_made = True
            if self._loop_engine is None:
                return None  # not a SQLite file: the writer thread does it
            batcher = self._batchers.setdefault(
                loop, _LoopBatcher(self, loop, self._loop_engine)
            )
        return batcher

    def _commit_callbacks(self, group: list[_CallbackWrite]) -> None:
        """Store a group in one transaction; resolve the futures after the commit.

        Should the group fail (a bad event, a lock timeout), each callback is retried
        in a transaction of its own, so one failure reaches only its own waiter.
        """
        try:
            with self._write() as conn:
                outcomes = self._record_group(_SqlaGroupDB(conn), group)
        except Exception as exc:  # noqa: BLE001 - handed to the waiters
            if len(group) == 1:
                group[0].waiter.set_exception(exc)
                return
            log.warning("a group of %d callbacks failed (%s); one by one", len(group), exc)
            for item in group:
                self._commit_callbacks([item])
            return
        for item, outcome in zip(group, outcomes, strict=True):
            item.waiter.set_result(outcome)

    def _record_group(
        self, db: _SqlaGroupDB | _SqliteGroupDB, group: list[_CallbackWrite]
    ) -> list[Outcome]:
        """Store callbacks in order, as record_callback would one by one, in a handful
        of statements whatever the group's size: read the tasks and the callbacks
        already kept once, merge in memory, then write the new callback rows and the
        changed task rows in two batches. (Each statement costs far more than a merge.)
        `db` is the writer thread's SQLAlchemy connection or the loop's sqlite3 one.
        """
        ids = sorted({item.payload.data.task_id for item in group})
        found, seen = db.load(ids)
        copies: dict[str, list[dict[str, Any]]] = {}
        for row in found:
            copies.setdefault(row["task_id"], []).append(row)
        outcomes: list[Outcome] = []
        new_callbacks: list[dict[str, Any]] = []
        changed: dict[tuple[str, str], dict[str, Any]] = {}
        for item in group:
            payload, at = item.payload, item.at
            rows = copies.get(payload.data.task_id)
            if not rows:
                db.store_orphan(_orphan_row(payload, verified=item.verified, at=at))
                outcomes.append("orphan")
                continue
            key = (payload.data.task_id, _stage_key(payload))
            if key in seen:
                outcomes.append("duplicate")
                continue
            seen.add(key)
            cleaned = [_clean_track(t) for t in payload.data.tracks]
            new_callbacks.append(
                _callback_row(payload, verified=item.verified, at=at, cleaned=cleaned)
            )
            event = _callback_event(payload, at, cleaned)
            for row in rows:
                changes = _merge(row, event)
                if changes:
                    row.update(changes, version=row["version"] + 1, updated_at=at)
                row["last_callback_at"] = at
                changed[(row["task_id"], row["visitor_id"])] = row
            outcomes.append("stored")
        if new_callbacks:
            db.insert_callbacks(new_callbacks)
        if changed:
            db.update_tasks(list(changed.values()))
        return outcomes

    def _store_callback(
        self, conn: Connection, payload: CallbackPayload, *, verified: bool, at: float
    ) -> Outcome:
        data = payload.data
        row = _callback_row(payload, verified=verified, at=at)
        added = self._insert_ignore(conn, callbacks, row)
        if not added:
            return "duplicate"
        self._apply(conn, data.task_id, _callback_event(payload, at), {"last_callback_at": at})
        return "stored"

    def _apply(
        self, conn: Connection, task_id: str, event: _Event, always: Mapping[str, Any]
    ) -> bool:
        """Merge `event` into every copy of the task; True if any shown state changed."""
        select = sa.select(tasks).where(tasks.c.task_id == sa.bindparam("id"))
        rows = conn.execute(select, {"id": task_id}).mappings().all()
        update = tasks.update().where(
            tasks.c.task_id == sa.bindparam("b_task_id"),
            tasks.c.visitor_id == sa.bindparam("b_visitor_id"),
        )
        changed_any = False
        for row in rows:
            changes = _merge(row, event)
            values = dict(always)
            if changes:
                changed_any = True
                values.update(changes, version=row["version"] + 1, updated_at=event.at)
            if values:
                keys = {"b_task_id": task_id, "b_visitor_id": row["visitor_id"]}
                conn.execute(update, {**values, **keys})
        return changed_any

    def record_poll(self, info: TaskInfo, *, polled_at: float | None = None) -> bool:
        """Merge a record-info answer like a callback; True when the task's state changed."""
        at = _now() if polled_at is None else polled_at
        with self._write() as conn:
            return self._apply(conn, info.task_id, _poll_event(info, at), {"last_polled_at": at})

    def mark_polled(self, task_id: str, *, polled_at: float | None = None) -> None:
        """Note a poll that brought nothing to merge (e.g. it failed)."""
        at = _now() if polled_at is None else polled_at
        with self._write() as conn:
            conn.execute(tasks.update().where(tasks.c.task_id == task_id).values(last_polled_at=at))

    # -- reads --

    def tasks_to_poll(
        self,
        visitor_id: str,
        *,
        now: float | None = None,
        quiet_after_s: float = 120,
        every_s: float = 30,
    ) -> list[str]:
        """Unfinished tasks with no callback for quiet_after_s and no poll for every_s."""
        now = _now() if now is None else now
        quiet_since = sa.func.coalesce(tasks.c.last_callback_at, tasks.c.submitted_at)
        stmt = (
            sa.select(tasks.c.task_id)
            .where(
                tasks.c.visitor_id == visitor_id,
                tasks.c.stage.not_in(sorted(FINAL_STAGES)),
                quiet_since <= now - quiet_after_s,
                sa.or_(tasks.c.last_polled_at.is_(None), tasks.c.last_polled_at <= now - every_s),
            )
            .order_by(tasks.c.submitted_at.desc())
        )
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())

    def get_task(self, task_id: str, visitor_id: str | None = None) -> TaskView | None:
        """One task (this visitor's copy when given, else the first one recorded)."""
        stmt = sa.select(tasks).where(tasks.c.task_id == task_id)
        if visitor_id is not None:
            stmt = stmt.where(tasks.c.visitor_id == visitor_id)
        stmt = stmt.order_by(tasks.c.submitted_at, tasks.c.visitor_id).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).mappings().first()
        return _view(row) if row is not None else None

    def list_tasks(self, visitor_id: str, *, limit: int = 20, offset: int = 0) -> list[TaskView]:
        """This visitor's tasks, newest first."""
        stmt = (
            sa.select(tasks)
            .where(tasks.c.visitor_id == visitor_id)
            .order_by(tasks.c.submitted_at.desc(), tasks.c.task_id.desc())
            .limit(max(0, limit))
            .offset(max(0, offset))
        )
        with self._read() as conn:
            return [_view(row) for row in conn.execute(stmt).mappings()]

    def count_tasks(self, visitor_id: str) -> int:
        stmt = sa.select(sa.func.count()).select_from(tasks).where(tasks.c.visitor_id == visitor_id)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def change_marker(self, visitor_id: str) -> tuple[int, int]:
        """(task count, sum of versions): changes whenever anything shown changes."""
        stmt = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(tasks.c.version), 0)).where(
            tasks.c.visitor_id == visitor_id
        )
        with self._read() as conn:
            count, total = conn.execute(stmt).one()
        return int(count), int(total)

    def finished_tracks(self, visitor_id: str, limit: int = 50) -> list[tuple[TaskView, Track]]:
        """Tracks of this visitor's completed tasks, newest task first."""
        stmt = (
            sa.select(tasks)
            .where(tasks.c.visitor_id == visitor_id, tasks.c.stage == "complete")
            .order_by(tasks.c.submitted_at.desc(), tasks.c.task_id.desc())
            .limit(max(0, limit))
        )
        with self._read() as conn:
            views = [_view(row) for row in conn.execute(stmt).mappings()]
        pairs = [(view, track) for view in views for track in view.tracks]
        return pairs[: max(0, limit)]

    def orphans(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest callbacks for unknown task ids (for diagnosis; never shown by default)."""
        stmt = sa.select(orphan_callbacks).order_by(orphan_callbacks.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [
                {
                    "task_id": row.task_id,
                    "stage": row.stage,
                    "received_at": _dt(row.received_at),
                    "verified": row.verified,
                }
                for row in conn.execute(stmt)
            ]

    def server_secret(self, name: str) -> str:
        """A persistent random secret of the server (created once, race-safe)."""
        stmt = sa.select(app_secrets.c.value).where(app_secrets.c.name == name)
        with self._read() as conn:
            value = conn.execute(stmt).scalar()
        if value is not None:
            return str(value)
        with self._write() as conn:
            self._insert_ignore(
                conn, app_secrets, {"name": name, "value": secrets.token_urlsafe(32)}
            )
            return str(conn.execute(stmt).scalar_one())

    # -- export / import --

    def _all_tasks(self, visitor_id: str) -> list[TaskView]:
        stmt = (
            sa.select(tasks)
            .where(tasks.c.visitor_id == visitor_id)
            .order_by(tasks.c.submitted_at.desc(), tasks.c.task_id.desc())
        )
        with self._read() as conn:
            return [_view(row) for row in conn.execute(stmt).mappings()]

    def export_records(self, visitor_id: str) -> list[dict[str, Any]]:
        """This visitor's history as JSON-able records, newest first (import_records reads it)."""
        return [_record(view) for view in self._all_tasks(visitor_id)]

    def export_csv(self, visitor_id: str) -> str:
        """One row per track (a task without tracks gets one row with empty track columns)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for view in self._all_tasks(visitor_id):
            for track in view.tracks or [None]:
                writer.writerow([_csv_cell(v) for v in _csv_row(view, track)])
        return out.getvalue()

    def import_records(self, visitor_id: str, records: Any) -> ImportResult:
        """Add exported records to this visitor's history; existing tasks stay untouched."""
        if not isinstance(records, list):
            return ImportResult(0, 0, ["The file must hold a list of task records."])
        if len(records) > MAX_IMPORT_RECORDS:
            return ImportResult(0, 0, [f"Too many records (at most {MAX_IMPORT_RECORDS})."])
        rows: list[dict[str, Any]] = []
        errors: list[str] = []
        for number, raw in enumerate(records, start=1):
            row, problem = _import_row(visitor_id, raw)
            if problem:
                errors.append(f"Record {number}: {problem}")
            elif row is not None:
                rows.append(row)
        added = 0
        if rows:
            with self._write() as conn:
                for row in rows:
                    if self._insert_ignore(conn, tasks, row):
                        added += 1
                        self._adopt_orphans(conn, row["task_id"])
        return ImportResult(added=added, skipped=len(rows) - added, errors=errors)


    # --- reconciliation -------------------------------------------------------------------
    # Added for studio/reconciler.py (docs/reliability.md, points 2 and 8). Everything
    # below uses the `task_checks` table defined at the end of this module; nothing above
    # depends on it. Kie signs task_id.timestamp, not the body, so a callback's tracks are
    # only trusted once record-info agrees; record-info wins where the two differ.

    def tasks_to_poll_all(
        self,
        *,
        now: float | None = None,
        quiet_after_s: float = 120,
        every_s: float = 30,
        max_age_s: float = 14 * 86400,
        limit: int = 50,
    ) -> list[str]:
        """tasks_to_poll across visitors: distinct unfinished task ids, least recently
        polled first, submitted within max_age_s (Kie keeps tasks about 14 days)."""
        now = _now() if now is None else now
        quiet_since = sa.func.coalesce(tasks.c.last_callback_at, tasks.c.submitted_at)
        stmt = (
            sa.select(tasks.c.task_id)
            .where(
                tasks.c.stage.not_in(sorted(FINAL_STAGES)),
                quiet_since <= now - quiet_after_s,
                tasks.c.submitted_at >= now - max_age_s,
                sa.or_(tasks.c.last_polled_at.is_(None), tasks.c.last_polled_at <= now - every_s),
            )
            .group_by(tasks.c.task_id)
            .order_by(sa.func.min(sa.func.coalesce(tasks.c.last_polled_at, 0.0)), tasks.c.task_id)
            .limit(max(0, limit))
        )
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())

    def tasks_to_confirm(
        self, *, now: float | None = None, retry_every_s: float = 30, limit: int = 50
    ) -> list[str]:
        """Completed tasks whose current state record-info has not confirmed yet (never
        checked, changed since the check, or a pending check due again)."""
        now = _now() if now is None else now
        joined = tasks.outerjoin(
            task_checks,
            sa.and_(
                task_checks.c.task_id == tasks.c.task_id,
                task_checks.c.visitor_id == tasks.c.visitor_id,
            ),
        )
        stmt = (
            sa.select(tasks.c.task_id)
            .select_from(joined)
            .where(
                tasks.c.stage == "complete",
                sa.or_(
                    task_checks.c.task_id.is_(None),
                    task_checks.c.checked_version != tasks.c.version,
                    sa.and_(
                        task_checks.c.verdict == "pending",
                        task_checks.c.last_attempt_at <= now - retry_every_s,
                    ),
                ),
            )
            .group_by(tasks.c.task_id)
            .order_by(
                sa.func.min(sa.func.coalesce(task_checks.c.last_attempt_at, 0.0)), tasks.c.task_id
            )
            .limit(max(0, limit))
        )
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())

    def reconcile(
        self, info: TaskInfo, *, at: float | None = None, max_attempts: int = 10
    ) -> Confirmation:
        """Merge a record-info answer with record-info as the authority.

        Like record_poll, plus: once record-info says SUCCESS, the task's tracks become
        record-info's tracks (a field record-info leaves blank keeps the callback's value,
        except media URLs); should record-info report a failure for a task a callback
        called complete, the task becomes an error. Completed tasks get a verdict in
        task_checks: confirmed, corrected (the two disagreed; `differences` says where),
        pending (record-info not final yet) or unverifiable (pending max_attempts times).
        """
        at = _now() if at is None else at
        verdicts: list[str] = []
        differences: list[str] = []
        with self._write() as conn:
            rows = (
                conn.execute(sa.select(tasks).where(tasks.c.task_id == info.task_id))
                .mappings()
                .all()
            )
            for row in rows:
                verdict, diffs, values = _reconciled(row, info, at)
                for diff in diffs:
                    if diff not in differences:
                        differences.append(diff)
                if values:
                    values.update(version=row["version"] + 1, updated_at=at)
                values["last_polled_at"] = at
                conn.execute(
                    tasks.update()
                    .where(
                        tasks.c.task_id == row["task_id"],
                        tasks.c.visitor_id == row["visitor_id"],
                    )
                    .values(**values)
                )
                if verdict is None:
                    continue
                version = values.get("version", row["version"])
                verdict = self._note_check(
                    conn, row, version, verdict, at, "; ".join(diffs)[:2000], max_attempts
                )
                verdicts.append(verdict)
        order = ("corrected", "confirmed", "pending", "unverifiable")
        final = min(verdicts, key=order.index) if verdicts else "n/a"
        return Confirmation(verdict=final, differences=differences)

    def note_check_failed(
        self, task_id: str, reason: str, *, at: float | None = None, max_attempts: int = 10
    ) -> str:
        """Count a confirmation attempt that got no usable answer (e.g. record-info
        failed); returns the verdict now: pending, or unverifiable after max_attempts."""
        at = _now() if at is None else at
        verdict = "n/a"
        with self._write() as conn:
            rows = (
                conn.execute(
                    sa.select(tasks).where(tasks.c.task_id == task_id, tasks.c.stage == "complete")
                )
                .mappings()
                .all()
            )
            for row in rows:
                verdict = self._note_check(
                    conn, row, row["version"], "pending", at, reason[:2000], max_attempts
                )
        return verdict

    def _note_check(
        self,
        conn: Connection,
        row: Mapping[str, Any],
        version: int,
        verdict: str,
        at: float,
        note: str,
        max_attempts: int,
    ) -> str:
        key = {"task_id": row["task_id"], "visitor_id": row["visitor_id"]}
        where = (
            task_checks.c.task_id == key["task_id"],
            task_checks.c.visitor_id == key["visitor_id"],
        )
        previous = conn.execute(sa.select(task_checks).where(*where)).mappings().first()
        attempts = 1
        if previous is not None and previous["checked_version"] == version:
            attempts = previous["attempts"] + 1
        if verdict == "pending" and attempts >= max_attempts:
            verdict = "unverifiable"
        values = {
            "checked_version": version,
            "verdict": verdict,
            "attempts": attempts,
            "last_attempt_at": at,
            "note": note or None,
        }
        if previous is None:
            self._insert_ignore(conn, task_checks, {**key, **values})
        conn.execute(task_checks.update().where(*where).values(**values))
        return verdict

    def confirmation(self, task_id: str, visitor_id: str | None = None) -> str:
        """Whether record-info backs this task's current state.

        "confirmed" or "corrected" (record-info won a disagreement): trusted.
        "unconfirmed" (a completed task not checked yet), "pending" (record-info not
        final yet), "unverifiable" (no usable answer after several tries): the tracks
        came from a callback only. "n/a": the task has not completed.
        """
        stmt = (
            sa.select(tasks.c.stage, tasks.c.version, task_checks.c.checked_version,
                      task_checks.c.verdict)
            .select_from(
                tasks.outerjoin(
                    task_checks,
                    sa.and_(
                        task_checks.c.task_id == tasks.c.task_id,
                        task_checks.c.visitor_id == tasks.c.visitor_id,
                    ),
                )
            )
            .where(tasks.c.task_id == task_id)
        )
        if visitor_id is not None:
            stmt = stmt.where(tasks.c.visitor_id == visitor_id)
        stmt = stmt.order_by(tasks.c.submitted_at, tasks.c.visitor_id).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return "n/a"
        if row.verdict is not None and row.checked_version == row.version:
            return str(row.verdict)
        return "unconfirmed" if row.stage == "complete" else "n/a"


# --- rows to views, records and CSV -------------------------------------------------------


def _view(row: Mapping[str, Any]) -> TaskView:
    return TaskView(
        task_id=row["task_id"],
        visitor_id=row["visitor_id"],
        submitted_at=_dt(row["submitted_at"]),
        request=dict(row["request"] or {}),
        model=row["model"],
        title=row["title"],
        stage=row["stage"],
        code=row["code"],
        msg=row["msg"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        tracks=[Track.model_validate(t) for t in row["tracks"] or []],
        stages_seen={
            stage: _dt(at)
            for stage, at in sorted((row["stages_seen"] or {}).items(), key=lambda kv: kv[1])
        },
        updated_at=_dt(row["updated_at"]),
        last_polled_at=_dt(row["last_polled_at"]) if row["last_polled_at"] else None,
    )


def _record(view: TaskView) -> dict[str, Any]:
    return {
        "task_id": view.task_id,
        "submitted_at": view.submitted_at.isoformat(),
        "request": view.request,
        "model": view.model,
        "title": view.title,
        "stage": view.stage,
        "code": view.code,
        "msg": view.msg,
        "error_code": view.error_code,
        "error_message": view.error_message,
        "tracks": [t.model_dump(mode="json", exclude_none=True) for t in view.tracks],
        "stages_seen": {stage: at.isoformat() for stage, at in view.stages_seen.items()},
        "updated_at": view.updated_at.isoformat(),
    }


CSV_COLUMNS = (
    "task_id",
    "submitted_at",
    "stage",
    "code",
    "msg",
    "error_code",
    "error_message",
    "model",
    "title",
    "track_id",
    "track_title",
    "duration_s",
    "tags",
    "model_name",
    "audio_url",
    "stream_audio_url",
    "image_url",
)


def _csv_row(view: TaskView, track: Track | None) -> list[Any]:
    head = [
        view.task_id,
        view.submitted_at.isoformat(),
        view.stage,
        view.code,
        view.msg,
        view.error_code,
        view.error_message,
        view.model,
        view.title,
    ]
    if track is None:
        return head + [None] * (len(CSV_COLUMNS) - len(head))
    return head + [
        track.id,
        track.title,
        track.duration,
        track.tags,
        track.model_name,
        track.audio_url,
        track.stream_audio_url,
        track.image_url,
    ]


def _csv_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (=, +, -, @ at the start)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _ImportedRecord(BaseModel):
    """One exported task record, as import_records accepts it."""

    model_config = ConfigDict(extra="ignore")

    task_id: str = Field(
        min_length=1, max_length=200, validation_alias=AliasChoices("task_id", "taskId")
    )
    submitted_at: datetime
    request: dict[str, Any] = Field(default_factory=dict)
    stage: Literal["submitted", "text", "first", "complete", "error"] = "submitted"
    code: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    msg: str | None = Field(default=None, max_length=2000)
    error_code: int | str | None = None
    error_message: str | None = Field(default=None, max_length=2000)
    tracks: list[Track] = Field(default_factory=list, max_length=50)
    stages_seen: dict[str, datetime] = Field(default_factory=dict)


def _plain_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def _import_row(visitor_id: str, raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(raw, dict):
        return None, "not a task record (expected an object)."
    try:
        record = _ImportedRecord.model_validate(raw)
    except ValidationError as exc:
        return None, _plain_error(exc)
    if not record.task_id.strip() or any(ord(ch) < 32 for ch in record.task_id):
        return None, "task_id: must be plain text."
    submitted = _epoch(record.submitted_at)
    if not math.isfinite(submitted):
        return None, "submitted_at: not a valid time."
    request = redact_request(record.request)
    try:
        json.dumps(request, allow_nan=False)
    except (TypeError, ValueError):
        return None, "request: not plain JSON."
    state = {
        "stage": "submitted",
        "code": None,
        "msg": None,
        "error_code": None,
        "error_message": None,
        "tracks": [],
        "track_ranks": {},
        "stages_seen": {},
    }
    event = _Event(
        stage=record.stage,
        at=submitted,
        code=record.code,
        msg=_text(record.msg, 2000),
        error_code=_text(record.error_code, 100),
        error_message=_text(record.error_message, 2000),
        tracks=record.tracks,
    )
    state.update(_merge(state, event))
    seen = {s: _epoch(at) for s, at in record.stages_seen.items() if s in STAGES}
    state["stages_seen"] = {"submitted": submitted, **state["stages_seen"], **seen}
    return {
        "task_id": record.task_id,
        "visitor_id": visitor_id,
        "submitted_at": submitted,
        "request": request,
        "model": _text(request.get("model"), 40),
        "title": _text(request.get("title"), 500),
        **state,
        "version": 1,
        "updated_at": _now(),
        "last_callback_at": None,
        "last_polled_at": None,
    }, None


@functools.cache
def open_store(url: str) -> TaskStore:
    """The process-wide store for `url` (pages and the callback route share its engine)."""
    return TaskStore(url)


# --- reconciliation ------------------------------------------------------------------------
# The table and helpers behind TaskStore.reconcile (see the methods at the end of the class).

TRUSTED_VERDICTS = frozenset({"confirmed", "corrected"})
CONFIRMED_RANK = max(PRECEDENCE.values()) + 1  # above any callback: they only fill blanks

task_checks = sa.Table(
    "task_checks",
    metadata,
    sa.Column("task_id", sa.String(MAX_TASK_ID), primary_key=True),
    sa.Column("visitor_id", sa.String(200), primary_key=True),
    sa.Column("checked_version", sa.Integer, nullable=False),  # tasks.version it applies to
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_attempt_at", sa.Double, nullable=False),
    sa.Column("note", sa.Text),  # where record-info and the callbacks disagreed
)


@dataclass(frozen=True)
class Confirmation:
    """What TaskStore.reconcile concluded."""

    verdict: str  # confirmed | corrected | pending | unverifiable | n/a
    differences: list[str] = field(default_factory=list)


def _short(value: Any, limit: int = 120) -> str:
    """A value for the log: URLs without their query string, everything bounded."""
    text = str(value)
    if isinstance(value, str) and "?" in value and value.lower().startswith("http"):
        text = value.split("?", 1)[0] + "?…"
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _authoritative_tracks(
    current: Sequence[Mapping[str, Any]], incoming: Sequence[Track], compare: bool
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """record-info's tracks (blank non-media fields filled from `current`), their ranks,
    and, when `compare`, where `current` disagreed."""
    known = {t["id"]: t for t in current}
    result: list[dict[str, Any]] = []
    ranks: dict[str, Any] = {}
    diffs: list[str] = []
    for index, track in enumerate(incoming):
        data = _clean_track(track)
        old = known.get(track.id)
        if old is None and compare:
            diffs.append(f"track {_short(track.id, 60)}: only in record-info")
        for name in TRACK_FIELDS:
            new, before = data.get(name), (old or {}).get(name)
            if _blank(new):
                data[name] = None if name in MEDIA_URL_FIELDS or _blank(before) else before
            elif compare and not _blank(before) and before != new:
                diffs.append(
                    f"track {_short(track.id, 60)} {name}: callback {_short(before)!r}, "
                    f"record-info {_short(new)!r}"
                )
        result.append(data)
        ranks[track.id] = {
            "pos": [CONFIRMED_RANK, index],
            "fields": {n: CONFIRMED_RANK for n in TRACK_FIELDS if not _blank(data.get(n))},
        }
    if compare:
        wanted = {t.id for t in incoming}
        diffs += [
            f"track {_short(tid, 60)}: not in record-info (dropped; title "
            f"{_short(t.get('title'))!r}, audio_url {_short(t.get('audio_url'))!r})"
            for tid, t in known.items()
            if tid not in wanted
        ]
    return result, ranks, diffs


def _reconciled(
    row: Mapping[str, Any], info: TaskInfo, at: float
) -> tuple[str | None, list[str], dict[str, Any]]:
    """(verdict or None, differences, changed columns) for one copy of a task."""
    was_complete = row["stage"] == "complete"
    state = {name: row[name] for name in _STATE}
    state.update(_merge(state, _poll_event(info, at)))
    stage = info.stage
    verdict: str | None = None
    diffs: list[str] = []
    if stage == "complete":
        state["tracks"], state["track_ranks"], diffs = _authoritative_tracks(
            row["tracks"], info.tracks, compare=was_complete
        )
        verdict = "corrected" if diffs else "confirmed"
    elif stage == "error" and was_complete:
        diffs = [f"callback said complete, record-info says {_short(info.status, 40)}"]
        state.update(
            stage="error",
            code=None,
            msg=None,
            error_code=_text(info.error_code, 100),
            error_message=_text(info.error_message, 2000),
            tracks=[],
            track_ranks={},
        )
        if "error" not in state["stages_seen"]:
            state["stages_seen"] = {**state["stages_seen"], "error": at}
        verdict = "corrected"
    elif was_complete:
        verdict = "pending"  # Kie has not finished the task a callback called complete
    changes = {name: value for name, value in state.items() if value != row[name]}
    return verdict, diffs, changes
