"""Point 8 — reconcile: a task with no callback after 2 minutes is polled every 30 s
(within 3 requests/s per task) until it ends; a fake Kie that never calls back still
ends with the right final state.

The schedule itself (120 s, 30 s, the request pacer) is proved on a fake clock in
process; then the running app, keyed to a fake Kie whose callbacks go nowhere, is
watched with the same schedule scaled down (KIE_RECONCILE_QUIET_S/EVERY_S).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from appserver import AppServer, running_app

from kie.errors import NotFoundError
from kie.models import TaskInfo
from studio.reconciler import MAX_RPS, POLL_EVERY_S, QUIET_AFTER_S, Reconciler
from studio.store import TaskStore
from tests.reliability.conftest import record_figure, store_of, wait_until
from tests.reliability.fakekie import API_KEY, DEAD_CALLBACK, FakeKie, fake_kie

# --- the schedule, on a fake clock ---------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedKie:
    """A stand-in KieClient: answers record-info from a script, logs each call."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.calls: list[str] = []

    def get_task(self, task_id: str) -> TaskInfo:
        self.calls.append(task_id)
        status = self.status.get(task_id)
        if status is None:
            raise NotFoundError("no such task", code=404)
        tracks = [{"id": f"{task_id}-a", "audioUrl": "https://cdn.example/a.mp3"}]
        return TaskInfo.model_validate({
            "taskId": task_id,
            "status": status,
            "response": {"sunoData": tracks if status == "SUCCESS" else []},
        })

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TaskStore]:
    created = TaskStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield created
    created.close()


def test_defaults_are_kies_advice() -> None:
    assert QUIET_AFTER_S == 120 and POLL_EVERY_S == 30 and MAX_RPS == 3
    with pytest.raises(ValueError):
        Reconciler(None, lambda: None, max_rps=3.5)  # type: ignore[arg-type]


def test_quiet_task_polled_after_two_minutes_then_every_30_s_until_it_ends(
    store: TaskStore,
) -> None:
    t0 = 1_700_000_000.0
    clock, kie = Clock(t0), ScriptedKie()
    store.record_submission(task_id="quiet", visitor_id="a", request={}, submitted_at=t0)
    store.record_submission(task_id="quiet", visitor_id="b", request={}, submitted_at=t0)
    kie.status["quiet"] = "TEXT_SUCCESS"
    rec = Reconciler(store, lambda: kie, clock=clock)  # production timings

    def at(offset: float) -> int:
        clock.now = t0 + offset
        before = len(kie.calls)
        rec.run_once()
        return len(kie.calls) - before

    assert at(60) == 0 and at(119.9) == 0
    assert at(120) == 1  # one request for the task, though two visitors hold it
    assert at(121) == 0 and at(149.9) == 0
    assert at(150) == 1
    kie.status["quiet"] = "SUCCESS"
    assert at(180) == 1
    assert store.get_task("quiet", "a").stage == "complete"
    assert store.get_task("quiet", "b").stage == "complete"
    assert store.confirmation("quiet") == "confirmed"
    assert at(210) == 0 and at(10_000) == 0  # ended: never asked again


def test_a_callback_resets_the_quiet_time(store: TaskStore) -> None:
    from kie.models import CallbackPayload

    t0 = 1_700_000_000.0
    clock, kie = Clock(t0), ScriptedKie()
    store.record_submission(task_id="talky", visitor_id="a", request={}, submitted_at=t0)
    kie.status["talky"] = "TEXT_SUCCESS"
    payload = CallbackPayload.model_validate(
        {"code": 200, "msg": "ok", "data": {"callbackType": "text", "task_id": "talky", "data": []}}
    )
    store.record_callback(payload, verified=True, received_at=t0 + 100)
    rec = Reconciler(store, lambda: kie, clock=clock)
    clock.now = t0 + 200
    rec.run_once()
    assert kie.calls == []  # 100 s since the last callback
    clock.now = t0 + 220
    rec.run_once()
    assert kie.calls == ["talky"]


def test_requests_are_paced_within_three_per_second(store: TaskStore) -> None:
    t0 = time.time() - 1000
    kie = ScriptedKie()
    for n in range(7):
        store.record_submission(task_id=f"p{n}", visitor_id="a", request={}, submitted_at=t0)
        kie.status[f"p{n}"] = "PENDING"
    rec = Reconciler(store, lambda: kie)
    started = time.monotonic()
    done = rec.run_once()
    took = time.monotonic() - started
    assert done.requests == 7
    assert took >= 6 / MAX_RPS - 0.05  # 7 requests need 6 gaps of 1/3 s
    record_figure("reconciler_pacer_7_requests_s", round(took, 2))


def test_failures_back_off_and_a_never_found_task_ends_unverifiable(store: TaskStore) -> None:
    from kie.models import CallbackPayload

    t0 = 1_700_000_000.0
    clock, kie = Clock(t0), ScriptedKie()  # neither task is known to this Kie account
    store.record_submission(task_id="ghost", visitor_id="a", request={}, submitted_at=t0)
    store.record_submission(task_id="claimed", visitor_id="a", request={}, submitted_at=t0)
    payload = CallbackPayload.model_validate({"code": 200, "msg": "ok", "data": {
        "callbackType": "complete", "task_id": "claimed", "data": [{"id": "x"}]}})
    store.record_callback(payload, verified=True, received_at=t0 + 1)
    rec = Reconciler(store, lambda: kie, clock=clock, max_confirm_attempts=3)
    for offset in range(0, 1000, 10):
        clock.now = t0 + 120 + offset
        rec.run_once()
    # doubling backoff after each failure (60, 120, 240, 480 s, at most 600 s)
    assert kie.calls.count("ghost") == 5  # at +0, +60, +180, +420, +900
    assert kie.calls.count("claimed") == 3  # then it gives up
    assert store.confirmation("claimed") == "unverifiable"
    assert store.get_task("claimed").stage == "complete"  # kept, shown as unverified


def test_stop_is_prompt(store: TaskStore) -> None:
    rec = Reconciler(store, lambda: ScriptedKie(), tick_s=0.05)
    rec.start()
    assert rec.running
    started = time.monotonic()
    rec.stop()
    assert not rec.running and time.monotonic() - started < 2


# --- the running app against a fake Kie that never calls back -------------------------------

QUIET_S = 1.5
EVERY_S = 1.0
STAGE_DELAY_S = 1.2  # the fake Kie finishes a task 3.6 s after it starts


@pytest.fixture(scope="module")
def kie() -> Iterator[FakeKie]:
    with fake_kie(stage_delay_s=STAGE_DELAY_S) as fake:
        yield fake


@pytest.fixture(scope="module")
def app(kie: FakeKie, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with running_app(
        tmp_path_factory.mktemp("reconcile-app"),
        KIE_API_KEY=API_KEY,
        KIE_BASE_URL=kie.url,
        KIE_RECONCILE_QUIET_S=str(QUIET_S),
        KIE_RECONCILE_EVERY_S=str(EVERY_S),
        KIE_RECONCILE_TICK_S="0.1",
    ) as server:
        yield server


def test_a_kie_that_never_calls_back_still_ends_right(kie: FakeKie, app: AppServer) -> None:
    store = store_of(app)
    try:
        ok = kie.extend(DEAD_CALLBACK)
        failed = kie.extend(DEAD_CALLBACK, audioId="demo-midnight-drive sandbox-callback-501")
        submitted = time.time()
        for task_id in (ok, failed):
            store.record_submission(task_id=task_id, visitor_id="v", request={"model": "V4"},
                                    submitted_at=submitted)

        def final() -> bool:
            return all(store.get_task(t).is_final for t in (ok, failed))

        wait_until(final, timeout=30)
        done = store.get_task(ok)
        truth = kie.record_info(ok)["response"]["sunoData"]
        assert done.stage == "complete"
        assert [(t.id, t.audio_url, t.title) for t in done.tracks] == [
            (t["id"], t["audioUrl"], t["title"]) for t in truth
        ]
        assert store.confirmation(ok) == "confirmed"
        lost = store.get_task(failed)
        assert lost.stage == "error" and lost.error_code == "501" and lost.error_message
        ended = time.time()
    finally:
        store.close()

    time.sleep(2 * EVERY_S)  # and then nobody asks again
    for task_id in (ok, failed):
        calls = kie.log.calls(task_id)
        assert calls, "never polled"
        assert calls[0] >= submitted + QUIET_S - 0.05, "polled before the quiet time"
        gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
        assert all(gap >= EVERY_S - 0.15 for gap in gaps), gaps
        assert max(sum(1 for c in calls if a <= c < a + 1) for a in calls) <= 3
        assert all(c <= ended + 0.5 for c in calls), "polled after it ended"
    every = kie.log.calls()
    record_figure("reconcile_first_poll_after_quiet_s",
                  round(min(kie.log.calls(ok)[0], kie.log.calls(failed)[0]) - submitted, 2))
    record_figure("reconcile_max_requests_in_any_1s", max(
        sum(1 for c in every if a <= c < a + 1) for a in every))


def test_the_app_stops_cleanly_with_the_reconciler_running(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The lifespan starts the reconciler and stops it at shutdown: SIGTERM ends the
    app promptly and without a traceback."""
    with running_app(tmp_path_factory.mktemp("stop-app"), KIE_RECONCILE_TICK_S="0.05") as app:
        time.sleep(0.5)
        started = time.monotonic()
        app.stop()
        took = time.monotonic() - started
        # streamlit ends itself with the signal it got (-15) once shutdown finished
        assert app.process is not None and app.process.returncode in (0, -15)
    assert took < 5
    assert "Traceback" not in app.log_path.read_text()
    record_figure("shutdown_with_reconciler_s", round(took, 2))
