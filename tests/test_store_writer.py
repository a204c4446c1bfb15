"""The store's callback writer: a group committed together gives exactly what the same
callbacks give one by one, and each waiter learns its own outcome."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from test_store import COMPLETE_TRACKS, FIRST_TRACKS, REQUEST, callback

import studio.store as store_module
from studio.store import TaskStore


def events() -> list[Any]:
    rng = random.Random(7)
    out = []
    for n in range(40):
        task = f"task-{n % 12}"  # several events per task, some for unknown tasks
        kind = rng.choice(["text", "first", "complete", "error", "lyrics"])
        tracks = {"first": FIRST_TRACKS, "complete": COMPLETE_TRACKS}.get(kind)
        code = 531 if kind == "error" else 200
        out.append(callback("first" if kind == "error" else kind, task, tracks, code=code))
    return out + out[:10]  # and some duplicates


def snapshot(store: TaskStore) -> list[tuple[Any, ...]]:
    views = [store.get_task(f"task-{n}", visitor) for n in range(12) for visitor in ("a", "b")]
    return [
        (v.task_id, v.visitor_id, v.stage, v.code, v.msg, [t.model_dump() for t in v.tracks],
         sorted(v.stages_seen))
        for v in views if v is not None
    ]


def fresh(tmp_path: Path, name: str) -> TaskStore:
    store = TaskStore(f"sqlite:///{tmp_path / name}")
    for n in range(10):  # task-10 and task-11 stay unknown: orphans
        store.record_submission(task_id=f"task-{n}", visitor_id="a", request=REQUEST,
                                submitted_at=1000.0 + n)
        if n % 3 == 0:  # a second visitor's copy
            store.record_submission(task_id=f"task-{n}", visitor_id="b", request=REQUEST,
                                    submitted_at=1000.0 + n)
    return store


def test_a_group_gives_what_one_by_one_gives(tmp_path: Path) -> None:
    serial, grouped = fresh(tmp_path, "serial.db"), fresh(tmp_path, "grouped.db")
    try:
        at = 2000.0
        expected = [
            serial.record_callback(cb, verified=True, received_at=at + i)
            for i, cb in enumerate(events())
        ]
        futures = [
            grouped.submit_callback(cb, verified=True, received_at=at + i)
            for i, cb in enumerate(events())
        ]
        assert [f.result(timeout=10) for f in futures] == expected
        assert {"stored", "duplicate", "orphan"} <= set(expected)
        assert snapshot(grouped) == snapshot(serial)
        assert grouped.change_marker("a") == serial.change_marker("a")
    finally:
        serial.close()
        grouped.close()


def test_one_bad_callback_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = fresh(tmp_path, "bad.db")
    real = store_module._callback_event

    def flaky(payload: Any, at: float) -> Any:
        if payload.data.task_id == "task-2":
            raise RuntimeError("boom")
        return real(payload, at)

    monkeypatch.setattr(store_module, "_callback_event", flaky)
    try:
        futures = [
            store.submit_callback(callback("text", f"task-{n}"), verified=True) for n in range(5)
        ]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=10))
            except RuntimeError:
                outcomes.append("failed")
        assert outcomes == ["stored", "stored", "failed", "stored", "stored"]
        assert store.get_task("task-2", "a").stage == "submitted"
        assert store.get_task("task-3", "a").stage == "text"
    finally:
        store.close()
