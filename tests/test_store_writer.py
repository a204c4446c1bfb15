"""The store's callback writer: a group committed together gives exactly what the same
callbacks give one by one, and each waiter learns its own outcome."""

from __future__ import annotations

import asyncio
import random
import sqlite3
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

    def flaky(payload: Any, at: float, *rest: Any) -> Any:
        if payload.data.task_id == "task-2":
            raise RuntimeError("boom")
        return real(payload, at, *rest)

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


# --- the event-loop batcher (TaskStore.store_callback, what the route uses) -------------


def test_loop_batches_give_what_one_by_one_gives(tmp_path: Path) -> None:
    serial, batched = fresh(tmp_path, "serial.db"), fresh(tmp_path, "batched.db")
    try:
        at = 2000.0
        expected = [
            serial.record_callback(cb, verified=True, received_at=at + i)
            for i, cb in enumerate(events())
        ]

        async def all_at_once() -> list[str]:
            return list(await asyncio.gather(*(
                batched.store_callback(cb, verified=True, received_at=at + i)
                for i, cb in enumerate(events())
            )))

        assert asyncio.run(all_at_once()) == expected
        assert snapshot(batched) == snapshot(serial)
        assert batched.change_marker("a") == serial.change_marker("a")
    finally:
        serial.close()
        batched.close()


def test_loop_flush_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = fresh(tmp_path, "bounded.db")
    sizes: list[int] = []
    real = TaskStore._record_group

    def spy(self: TaskStore, db: Any, group: list[Any]) -> Any:
        sizes.append(len(group))
        return real(self, db, group)

    monkeypatch.setattr(TaskStore, "_record_group", spy)

    async def many() -> list[str]:
        return list(await asyncio.gather(*(
            store.store_callback(callback("text", f"stranger-{n}"), verified=False)
            for n in range(100)
        )))

    try:
        assert asyncio.run(many()) == ["orphan"] * 100
        assert max(sizes) <= store_module.LOOP_GROUP_MAX and sum(sizes) == 100
        assert len(sizes) < 100  # grouped, not one by one
    finally:
        store.close()


def test_loop_path_one_bad_callback_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = fresh(tmp_path, "loopbad.db")
    real = store_module._callback_event

    def flaky(payload: Any, at: float, *rest: Any) -> Any:
        if payload.data.task_id == "task-2":
            raise RuntimeError("boom")
        return real(payload, at, *rest)

    monkeypatch.setattr(store_module, "_callback_event", flaky)

    async def five() -> list[Any]:
        return list(await asyncio.gather(
            *(store.store_callback(callback("text", f"task-{n}"), verified=True)
              for n in range(5)),
            return_exceptions=True,
        ))

    try:
        outcomes = asyncio.run(five())
        assert outcomes[:2] == ["stored", "stored"] and outcomes[3:] == ["stored", "stored"]
        assert isinstance(outcomes[2], RuntimeError)
        assert store.get_task("task-2", "a").stage == "submitted"
        assert store.get_task("task-3", "a").stage == "text"
    finally:
        store.close()


def test_loop_path_waits_out_another_writer_off_the_loop(tmp_path: Path) -> None:
    """A busy database never blocks the loop: the group goes to the writer thread,
    which waits for the lock; the answer still comes only after the commit."""
    store = fresh(tmp_path, "busy.db")
    blocker = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock

        async def scenario() -> tuple[str, float]:
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, blocker.execute, "COMMIT")
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick = asyncio.create_task(ticker())
            result = await store.store_callback(callback("text", "task-1"), verified=True)
            tick.cancel()
            return result, ticks

        result, ticks = asyncio.run(scenario())
        assert result == "stored"
        assert ticks >= 10  # the loop kept running while the lock was held
        assert store.get_task("task-1", "a").stage == "text"
    finally:
        blocker.close()
        store.close()


def test_in_memory_store_uses_the_writer_thread() -> None:
    store = TaskStore("sqlite://")
    try:
        store.record_submission(task_id="t", visitor_id="a", request=REQUEST)
        assert asyncio.run(store.store_callback(callback("text", "t"), verified=True)) == "stored"
        assert asyncio.run(store.store_callback(callback("text", "t"), verified=True)) == (
            "duplicate"
        )
    finally:
        store.close()


def table_rows(store: TaskStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row as SQLite holds it (JSON as its text), minus orphan ids."""
    path = store.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return {
            "tasks": conn.execute("SELECT * FROM tasks ORDER BY task_id, visitor_id").fetchall(),
            "callbacks": conn.execute("SELECT * FROM callbacks ORDER BY task_id, stage").fetchall(),
            "orphans": conn.execute(
                "SELECT task_id, stage, payload, received_at, verified FROM orphan_callbacks "
                "ORDER BY id"
            ).fetchall(),
        }


def test_loop_path_writes_the_same_rows_as_sqlalchemy(tmp_path: Path) -> None:
    """The loop's flushes use plain sqlite3 (_SqliteGroupDB), the writer thread
    SQLAlchemy (_SqlaGroupDB): byte-for-byte the same rows, JSON text included."""
    serial, batched = fresh(tmp_path, "serial.db"), fresh(tmp_path, "batched.db")
    try:
        at = 2000.0
        for i, cb in enumerate(events()):
            serial.record_callback(cb, verified=i % 2 == 0, received_at=at + i)

        async def all_at_once() -> None:
            await asyncio.gather(*(
                batched.store_callback(cb, verified=i % 2 == 0, received_at=at + i)
                for i, cb in enumerate(events())
            ))

        asyncio.run(all_at_once())
        assert table_rows(batched) == table_rows(serial)
    finally:
        serial.close()
        batched.close()


def test_loop_path_caps_orphans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "ORPHAN_CAP", 5)
    store = fresh(tmp_path, "orphans.db")

    async def strangers() -> list[str]:
        return list(await asyncio.gather(*(
            store.store_callback(callback("text", f"stranger-{n}"), verified=False)
            for n in range(12)
        )))

    try:
        assert asyncio.run(strangers()) == ["orphan"] * 12
        kept = [row[0] for row in table_rows(store)["orphans"]]
        assert kept == [f"stranger-{n}" for n in range(7, 12)]  # the newest five
    finally:
        store.close()


def test_loop_flush_waits_while_its_group_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callbacks arriving over consecutive loop iterations share one transaction."""
    store = fresh(tmp_path, "grows.db")
    sizes: list[int] = []
    real = TaskStore._record_group

    def spy(self: TaskStore, db: Any, group: list[Any]) -> Any:
        sizes.append(len(group))
        return real(self, db, group)

    monkeypatch.setattr(TaskStore, "_record_group", spy)

    async def late(n: int) -> str:
        for _ in range(n):
            await asyncio.sleep(0)  # arrive n loop iterations after the first
        return await store.store_callback(callback("text", f"task-{n}"), verified=True)

    async def staggered() -> list[str]:
        return list(await asyncio.gather(*(late(n) for n in range(4))))

    try:
        assert asyncio.run(staggered()) == ["stored"] * 4
        assert sizes == [4]
    finally:
        store.close()
