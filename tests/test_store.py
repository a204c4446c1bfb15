"""The task store on a real SQLite file: merging, idempotency, export/import, threads."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import studio.store as store_module
from kie.models import CallbackPayload, TaskInfo
from studio.store import TaskStore, callbacks, open_store, orphan_callbacks, tasks

VISITOR = "visitor-1"
SECRET_TOKEN = "s3cr3t-token-value"
REQUEST = {
    "defaultParamFlag": True,
    "audioId": "src-1",
    "model": "V4_5",
    "prompt": "Keep going",
    "style": "Jazz",
    "title": "Night Drive",
    "continueAt": 42.5,
    "callBackUrl": f"https://studio.example/kie/callback?token={SECRET_TOKEN}",
}

FIRST_TRACKS = [
    {
        "id": "trk-a",
        "stream_audio_url": "https://cdn.example/s/a",
        "audio_url": "",
        "title": "Night Drive",
        "tags": "jazz",
    },
]
COMPLETE_TRACKS = [
    {
        "id": "trk-a",
        "audio_url": "https://cdn.example/a.mp3",
        "stream_audio_url": "https://cdn.example/s/a-final",
        "image_url": "https://cdn.example/a.jpg",
        "title": "Night Drive",
        "tags": "",
        "duration": 181.2,
        "model_name": "chirp-v4-5",
    },
    {
        "id": "trk-b",
        "audio_url": "https://cdn.example/b.mp3",
        "stream_audio_url": "https://cdn.example/s/b",
        "image_url": "https://cdn.example/b.jpg",
        "title": "Night Drive",
        "duration": 176.0,
        "model_name": "chirp-v4-5",
    },
]


def callback(
    kind: str,
    task_id: str,
    tracks: list[dict[str, Any]] | None = None,
    *,
    code: int = 200,
    msg: str | None = None,
) -> CallbackPayload:
    return CallbackPayload.model_validate(
        {
            "code": code,
            "msg": msg if msg is not None else f"{kind} done",
            "data": {"callbackType": kind, "task_id": task_id, "data": tracks or []},
        }
    )


def lifecycle(task_id: str) -> list[CallbackPayload]:
    return [
        callback("text", task_id),
        callback("first", task_id, FIRST_TRACKS),
        callback("complete", task_id, COMPLETE_TRACKS, msg="All generated successfully."),
    ]


def state(store: TaskStore, task_id: str) -> dict[str, Any]:
    """The shown state of a task, without times."""
    view = store.get_task(task_id)
    assert view is not None
    return {
        "stage": view.stage,
        "code": view.code,
        "msg": view.msg,
        "error_code": view.error_code,
        "error_message": view.error_message,
        "tracks": [t.model_dump() for t in view.tracks],
        "stages": set(view.stages_seen),
    }


def row_counts(store: TaskStore) -> tuple[int, ...]:
    with store.engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (tasks, callbacks, orphan_callbacks)
        )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'data' / 'store.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[TaskStore]:
    created = TaskStore(db_url)
    yield created
    created.close()


def submit(
    store: TaskStore,
    task_id: str,
    *,
    visitor: str = VISITOR,
    at: float | None = None,
    request: dict[str, Any] | None = None,
) -> None:
    store.record_submission(
        task_id=task_id, visitor_id=visitor, request=request or REQUEST, submitted_at=at
    )


# --- the merge ---------------------------------------------------------------------------


def test_in_order_lifecycle_ends_complete_with_two_tracks(store: TaskStore, db_url: str) -> None:
    submit(store, "task-1")
    assert Path(db_url.removeprefix("sqlite:///")).is_file()
    assert store.get_task("task-1").stage == "submitted"
    results = [store.record_callback(cb, verified=True) for cb in lifecycle("task-1")]
    assert results == ["stored", "stored", "stored"]
    view = store.get_task("task-1")
    assert view.stage == "complete"
    assert view.code == 200
    assert view.msg == "All generated successfully."
    assert [t.id for t in view.tracks] == ["trk-a", "trk-b"]
    track_a = view.tracks[0]
    assert track_a.audio_url == "https://cdn.example/a.mp3"
    assert track_a.stream_audio_url == "https://cdn.example/s/a-final"
    assert track_a.tags == "jazz"  # complete sent "", which never blanks a value
    assert set(view.stages_seen) == {"submitted", "text", "first", "complete"}
    assert view.is_final
    assert view.submitted_at.tzinfo is not None


def test_same_callback_twice_changes_nothing(store: TaskStore) -> None:
    submit(store, "task-dup")
    for cb in lifecycle("task-dup")[:2]:
        store.record_callback(cb, verified=True)
    before = (
        row_counts(store),
        state(store, "task-dup"),
        store.change_marker(VISITOR),
        store.get_task("task-dup").updated_at,
    )
    assert store.record_callback(lifecycle("task-dup")[1], verified=True) == "duplicate"
    after = (
        row_counts(store),
        state(store, "task-dup"),
        store.change_marker(VISITOR),
        store.get_task("task-dup").updated_at,
    )
    assert after == before


def test_complete_before_first_keeps_the_complete_values(store: TaskStore) -> None:
    submit(store, "task-ooo")
    text, first, complete = lifecycle("task-ooo")
    for cb in (complete, first, text):
        assert store.record_callback(cb, verified=True) == "stored"
    view = store.get_task("task-ooo")
    assert view.stage == "complete"
    assert view.msg == "All generated successfully."
    assert [t.id for t in view.tracks] == ["trk-a", "trk-b"]
    assert view.tracks[0].stream_audio_url == "https://cdn.example/s/a-final"
    assert view.tracks[0].tags == "jazz"  # only first had it: fills the blank


def test_error_after_complete_and_first_after_complete_never_go_back(store: TaskStore) -> None:
    submit(store, "task-late")
    for cb in lifecycle("task-late"):
        store.record_callback(cb, verified=True)
    expected = state(store, "task-late")
    assert (
        store.record_callback(
            callback("error", "task-late", code=501, msg="Generation failed"), verified=True
        )
        == "stored"
    )
    assert (
        store.record_callback(
            callback("first", "task-late", [{"id": "trk-a", "stream_audio_url": ""}]), verified=True
        )
        == "duplicate"
    )
    view = store.get_task("task-late")
    assert view.stage == "complete" and view.code == 200
    assert [t.model_dump() for t in view.tracks] == expected["tracks"]
    assert "error" in view.stages_seen  # the late error is kept, but moves nothing


def test_first_arriving_after_complete_does_not_degrade_tracks(store: TaskStore) -> None:
    submit(store, "task-f")
    store.record_callback(lifecycle("task-f")[2], verified=True)
    expected = state(store, "task-f")["tracks"]
    store.record_callback(
        callback(
            "first",
            "task-f",
            [
                {"id": "trk-a", "audio_url": "", "stream_audio_url": "https://cdn.example/s/old"},
            ],
        ),
        verified=True,
    )
    view = store.get_task("task-f")
    assert view.stage == "complete"
    assert view.tracks[0].stream_audio_url == "https://cdn.example/s/a-final"
    assert [t.model_dump() for t in view.tracks][1:] == expected[1:]
    assert len(view.tracks) == 2


def test_failed_callback_is_error_with_code_and_message(store: TaskStore) -> None:
    submit(store, "task-err")
    store.record_callback(callback("text", "task-err"), verified=True)
    store.record_callback(callback("first", "task-err", code=531, msg="Refunded"), verified=False)
    view = store.get_task("task-err")
    assert (view.stage, view.code, view.msg) == ("error", 531, "Refunded")
    assert "refunded" in view.code_meaning.lower()
    assert view.is_final


def test_unknown_callback_type_is_kept_but_moves_nothing(store: TaskStore) -> None:
    submit(store, "task-unk")
    marker = store.change_marker(VISITOR)
    assert (
        store.record_callback(callback("lyrics_v2", "task-unk", COMPLETE_TRACKS), verified=True)
        == "stored"
    )
    assert store.get_task("task-unk").stage == "submitted"
    assert store.get_task("task-unk").tracks == []
    assert store.change_marker(VISITOR) == marker
    assert row_counts(store)[1] == 1


def test_only_http_urls_are_kept(store: TaskStore) -> None:
    submit(store, "task-js")
    store.record_callback(
        callback(
            "complete",
            "task-js",
            [
                {
                    "id": "trk-x",
                    "audio_url": "javascript:alert(1)",
                    "stream_audio_url": "https://cdn.example/ok",
                    "image_url": "data:image/png;base64,AAAA",
                    "source_audio_url": "JAVASCRIPT:alert(2)",
                    "source_image_url": "http://cdn.example/img.png",
                }
            ],
        ),
        verified=True,
    )
    track = store.get_task("task-js").tracks[0]
    assert track.audio_url is None
    assert track.image_url is None
    assert track.source_audio_url is None
    assert track.stream_audio_url == "https://cdn.example/ok"
    assert track.source_image_url == "http://cdn.example/img.png"
    with store.engine.connect() as conn:
        stored = json.dumps(conn.execute(sa.select(callbacks.c.tracks)).scalar_one())
    assert "javascript" not in stored.lower()


# --- order independence -------------------------------------------------------------------


def _poll(task_id: str, status: str, tracks: list[dict[str, Any]]) -> TaskInfo:
    camel = [
        {
            "id": t["id"],
            "audioUrl": t.get("audio_url"),
            "streamAudioUrl": t.get("stream_audio_url"),
            "imageUrl": t.get("image_url"),
            "title": t.get("title"),
            "tags": t.get("tags"),
            "duration": t.get("duration"),
            "modelName": t.get("model_name"),
        }
        for t in tracks
    ]
    return TaskInfo.model_validate(
        {"taskId": task_id, "status": status, "response": {"sunoData": camel}}
    )


def _events(path: str, task_id: str) -> list[Any]:
    text, first, complete = lifecycle(task_id)
    if path == "complete":
        return [
            text,
            first,
            _poll(task_id, "FIRST_SUCCESS", FIRST_TRACKS),
            complete,
            _poll(task_id, "SUCCESS", COMPLETE_TRACKS),
        ]
    failed = callback("error", task_id, code=501, msg="Generation failed")
    return [
        text,
        first,
        failed,
        TaskInfo.model_validate(
            {
                "taskId": task_id,
                "status": "GENERATE_AUDIO_FAILED",
                "errorCode": 501,
                "errorMessage": "Generation failed",
            }
        ),
    ]


def _deliver(store: TaskStore, event: Any) -> None:
    if isinstance(event, TaskInfo):
        store.record_poll(event)
    else:
        store.record_callback(event, verified=True)


def _orders(n: int) -> st.SearchStrategy[list[int]]:
    extra = st.lists(st.integers(0, n - 1), max_size=3)
    return extra.flatmap(lambda dups: st.permutations(list(range(n)) + dups))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(["complete", "error"]), data=st.data())
def test_any_order_with_duplicates_ends_like_in_order(
    store: TaskStore, path: str, data: st.DataObject
) -> None:
    reference, shuffled = f"ref-{uuid.uuid4().hex}", f"mix-{uuid.uuid4().hex}"
    submit(store, reference)
    submit(store, shuffled)
    for event in _events(path, reference):
        _deliver(store, event)
    events = _events(path, shuffled)
    for index in data.draw(_orders(len(events)), label="order"):
        _deliver(store, events[index])
    assert state(store, shuffled) == state(store, reference)
    assert state(store, shuffled)["stage"] == path


# --- orphans --------------------------------------------------------------------------------


def test_orphans_are_kept_apart_and_capped(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "ORPHAN_CAP", 5)
    submit(store, "mine")
    for n in range(8):
        assert store.record_callback(callback("text", f"stranger-{n}"), verified=False) == "orphan"
    assert [t.task_id for t in store.list_tasks(VISITOR)] == ["mine"]
    assert store.count_tasks(VISITOR) == 1
    assert store.get_task("stranger-7") is None
    kept = [o["task_id"] for o in store.orphans()]
    assert kept == [f"stranger-{n}" for n in range(7, 2, -1)]  # the 5 newest


def test_callbacks_that_raced_the_submission_are_replayed(store: TaskStore) -> None:
    text, first, _complete = lifecycle("early")
    assert store.record_callback(text, verified=True) == "orphan"
    assert store.record_callback(first, verified=True) == "orphan"
    submit(store, "early")
    view = store.get_task("early")
    assert view.stage == "first"
    assert [t.stream_audio_url for t in view.tracks] == ["https://cdn.example/s/a"]
    assert set(view.stages_seen) == {"submitted", "text", "first"}
    assert store.orphans() == []
    assert store.record_callback(text, verified=True) == "duplicate"


# --- polling ---------------------------------------------------------------------------------


def test_record_poll_merges_like_a_callback(store: TaskStore) -> None:
    submit(store, "task-poll")
    assert store.record_poll(_poll("task-poll", "PENDING", [])) is False
    assert store.get_task("task-poll").last_polled_at is not None
    assert store.record_poll(_poll("task-poll", "SUCCESS", COMPLETE_TRACKS)) is True
    assert store.record_poll(_poll("task-poll", "SUCCESS", COMPLETE_TRACKS)) is False
    view = store.get_task("task-poll")
    assert view.stage == "complete" and len(view.tracks) == 2
    # the complete callback arriving later fills in code and msg, nothing else
    assert store.record_callback(lifecycle("task-poll")[2], verified=True) == "stored"
    assert store.get_task("task-poll").code == 200
    assert store.record_poll(_poll("unknown-task", "SUCCESS", [])) is False


def test_record_poll_keeps_error_code_and_message(store: TaskStore) -> None:
    submit(store, "task-perr")
    info = TaskInfo.model_validate(
        {
            "taskId": "task-perr",
            "status": "SENSITIVE_WORD_ERROR",
            "errorCode": 400,
            "errorMessage": "Sensitive words",
        }
    )
    assert store.record_poll(info) is True
    view = store.get_task("task-perr")
    assert (view.stage, view.error_code, view.error_message) == ("error", "400", "Sensitive words")


def test_tasks_to_poll_respects_quiet_time_and_poll_interval(store: TaskStore) -> None:
    t0 = 1_700_000_000.0
    submit(store, "slow", at=t0)
    submit(store, "done", at=t0)
    store.record_callback(lifecycle("done")[2], verified=True, received_at=t0 + 10)

    def due(now: float) -> list[str]:
        return store.tasks_to_poll(VISITOR, now=now, quiet_after_s=120, every_s=30)

    assert due(t0 + 60) == []
    assert due(t0 + 121) == ["slow"]
    store.mark_polled("slow", polled_at=t0 + 121)
    assert due(t0 + 140) == []
    assert due(t0 + 152) == ["slow"]
    store.record_callback(lifecycle("slow")[0], verified=True, received_at=t0 + 200)
    assert due(t0 + 250) == []  # a callback arrived recently
    assert due(t0 + 321) == ["slow"]
    assert store.tasks_to_poll("someone-else", now=t0 + 1000) == []


# --- listing ---------------------------------------------------------------------------------


def test_pagination_count_and_newest_first(store: TaskStore) -> None:
    t0 = 1_700_000_000.0
    for n in range(25):
        submit(store, f"task-{n:02d}", at=t0 + n)
    submit(store, "other", visitor="visitor-2", at=t0 + 100)
    assert store.count_tasks(VISITOR) == 25
    first_page = [t.task_id for t in store.list_tasks(VISITOR, limit=10)]
    assert first_page == [f"task-{n:02d}" for n in range(24, 14, -1)]
    last_page = [t.task_id for t in store.list_tasks(VISITOR, limit=10, offset=20)]
    assert last_page == [f"task-{n:02d}" for n in range(4, -1, -1)]
    assert store.list_tasks(VISITOR, limit=10, offset=30) == []
    assert [t.task_id for t in store.list_tasks("visitor-2")] == ["other"]


def test_change_marker_moves_on_writes_only(store: TaskStore) -> None:
    empty = store.change_marker(VISITOR)
    submit(store, "task-m")
    submitted = store.change_marker(VISITOR)
    assert submitted != empty
    text = lifecycle("task-m")[0]
    store.record_callback(text, verified=True)
    after_text = store.change_marker(VISITOR)
    assert after_text != submitted
    store.record_callback(text, verified=True)
    store.mark_polled("task-m")
    store.record_poll(_poll("task-m", "TEXT_SUCCESS", []))
    submit(store, "task-m")  # idempotent
    assert store.change_marker(VISITOR) == after_text
    store.record_callback(lifecycle("task-m")[1], verified=True)
    assert store.change_marker(VISITOR) != after_text


def test_finished_tracks_lists_completed_tasks_newest_first(store: TaskStore) -> None:
    t0 = 1_700_000_000.0
    for n, task_id in enumerate(["old", "pending", "new"]):
        submit(store, task_id, at=t0 + n)
    for task_id in ("old", "new"):
        store.record_callback(lifecycle(task_id)[2], verified=True)
    pairs = store.finished_tracks(VISITOR)
    assert [(view.task_id, track.id) for view, track in pairs] == [
        ("new", "trk-a"),
        ("new", "trk-b"),
        ("old", "trk-a"),
        ("old", "trk-b"),
    ]
    assert len(store.finished_tracks(VISITOR, limit=1)) == 1


# --- export / import -----------------------------------------------------------------------


def _fill(store: TaskStore) -> None:
    t0 = 1_700_000_000.0
    submit(store, "exp-1", at=t0)
    submit(store, "exp-2", at=t0 + 1)
    submit(store, "exp-3", at=t0 + 2)
    for cb in lifecycle("exp-1"):
        store.record_callback(cb, verified=True)
    store.record_callback(
        callback("error", "exp-2", code=400, msg="Copyrighted lyrics"), verified=True
    )


def test_export_import_round_trip(store: TaskStore) -> None:
    _fill(store)
    records = json.loads(json.dumps(store.export_records(VISITOR)))
    assert [r["task_id"] for r in records] == ["exp-3", "exp-2", "exp-1"]
    assert records[2]["submitted_at"].startswith("2023-11-14T22:13:20")

    result = store.import_records("visitor-2", records)
    assert (result.added, result.skipped, result.errors) == (3, 0, [])
    for original, copy in zip(
        store.list_tasks(VISITOR), store.list_tasks("visitor-2"), strict=True
    ):
        assert copy.visitor_id == "visitor-2"
        for name in (
            "task_id",
            "submitted_at",
            "request",
            "model",
            "title",
            "stage",
            "code",
            "msg",
            "error_code",
            "error_message",
            "tracks",
            "stages_seen",
        ):
            assert getattr(copy, name) == getattr(original, name), name

    again = store.import_records("visitor-2", records)
    assert (again.added, again.skipped, again.errors) == (0, 3, [])
    assert store.count_tasks("visitor-2") == 3


def test_import_keeps_existing_rows_untouched(store: TaskStore) -> None:
    _fill(store)
    before = state(store, "exp-1")
    forged = store.export_records(VISITOR)[2] | {"stage": "error", "code": 500, "tracks": []}
    result = store.import_records(VISITOR, [forged])
    assert (result.added, result.skipped) == (0, 1)
    assert state(store, "exp-1") == before


def test_import_reports_malformed_records_without_raising(store: TaskStore) -> None:
    good = {
        "task_id": "ok-1",
        "submitted_at": "2024-05-01T10:00:00Z",
        "request": REQUEST,
        "stage": "complete",
        "code": 200,
        "tracks": COMPLETE_TRACKS,
    }
    records = [
        42,
        {},
        {"task_id": "x"},
        {"task_id": "y", "submitted_at": "yesterday-ish"},
        {"task_id": "z", "submitted_at": "2024-05-01T10:00:00Z", "stage": "exploded"},
        {"task_id": "w", "submitted_at": "2024-05-01T10:00:00Z", "tracks": [{"title": "no id"}]},
        {"task_id": "", "submitted_at": "2024-05-01T10:00:00Z"},
        {"task_id": "v", "submitted_at": "2024-05-01T10:00:00Z", "request": "not a dict"},
        good,
    ]
    result = store.import_records(VISITOR, records)
    assert result.added == 1 and result.skipped == 0
    assert len(result.errors) == 8
    assert all(e.startswith("Record ") for e in result.errors)
    assert result.errors[0].startswith("Record 1:")
    view = store.get_task("ok-1")
    assert view.stage == "complete" and len(view.tracks) == 2
    assert SECRET_TOKEN not in json.dumps(view.request)
    assert store.import_records(VISITOR, {"not": "a list"}).errors


def test_export_csv_has_one_row_per_track(store: TaskStore) -> None:
    _fill(store)
    store.record_submission(
        task_id="exp-4",
        visitor_id=VISITOR,
        request=REQUEST | {"title": '=HYPERLINK("http://evil")'},
        submitted_at=1_700_000_010.0,
    )
    rows = list(csv.DictReader(io.StringIO(store.export_csv(VISITOR))))
    assert list(rows[0]) == list(store_module.CSV_COLUMNS)
    assert [(r["task_id"], r["track_id"]) for r in rows] == [
        ("exp-4", ""),
        ("exp-3", ""),
        ("exp-2", ""),
        ("exp-1", "trk-a"),
        ("exp-1", "trk-b"),
    ]
    assert rows[0]["title"].startswith("'=")
    assert rows[3]["audio_url"] == "https://cdn.example/a.mp3"
    assert rows[2]["code"] == "400"


# --- secrets, persistence, threads --------------------------------------------------------


def test_stored_request_never_contains_the_token(store: TaskStore, db_url: str) -> None:
    submit(store, "task-tok")
    request = store.get_task("task-tok").request
    assert request["callBackUrl"] == "https://studio.example/kie/callback?token=***"
    store.close()
    folder = Path(db_url.removeprefix("sqlite:///")).parent
    for path in folder.iterdir():
        assert SECRET_TOKEN.encode() not in path.read_bytes(), path.name


def test_a_second_store_on_the_same_file_sees_the_data(store: TaskStore, db_url: str) -> None:
    submit(store, "task-r")
    for cb in lifecycle("task-r"):
        store.record_callback(cb, verified=True)
    store.close()
    reopened = TaskStore(db_url)
    try:
        assert state(reopened, "task-r") == state(store, "task-r")
        assert reopened.count_tasks(VISITOR) == 1
    finally:
        reopened.close()


def test_server_secret_is_stable_across_instances(store: TaskStore, db_url: str) -> None:
    first = store.server_secret("callback-token")
    assert len(first) >= 40
    assert store.server_secret("callback-token") == first
    assert store.server_secret("other") != first
    second = TaskStore(db_url)
    try:
        assert second.server_secret("callback-token") == first
    finally:
        second.close()


def test_sqlite_runs_in_wal_mode(store: TaskStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_open_store_is_shared_per_url(db_url: str) -> None:
    assert open_store(db_url) is open_store(db_url)
    open_store(db_url).close()


def test_threads_write_while_one_reads_without_lock_errors(store: TaskStore) -> None:
    writers, per_writer = 4, 15
    for w in range(writers):
        for n in range(per_writer):
            submit(store, f"w{w}-{n}")
    errors: list[BaseException] = []
    done = threading.Event()

    def write(w: int) -> None:
        try:
            for n in range(per_writer):
                for cb in lifecycle(f"w{w}-{n}"):
                    store.record_callback(cb, verified=True)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while not done.is_set():
                store.list_tasks(VISITOR, limit=20)
                store.change_marker(VISITOR)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert errors == []
    assert row_counts(store)[1] == writers * per_writer * 3
    assert {t.stage for t in store.list_tasks(VISITOR, limit=100)} == {"complete"}
