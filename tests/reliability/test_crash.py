"""Point 7 — crash safety: load, kill -9 at a random moment, restart; every time the
database passes PRAGMA integrity_check and holds every event the app acknowledged.

50 cycles with --run-slow, 5 by default. The seed is printed so a failing run can be
replayed.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from appserver import AppServer, running_app

from tests.reliability.conftest import (
    HMAC_KEY,
    body,
    db_path,
    new_task,
    post_signed,
    record_figure,
    slow,
    store_of,
)

KINDS = ("text", "first", "complete")
WRITERS = 6
TASKS_PER_CYCLE = 150


@pytest.fixture
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with running_app(tmp_path_factory.mktemp("crash-app"), KIE_WEBHOOK_HMAC_KEY=HMAC_KEY) as server:
        yield server


def load_until_killed(app: AppServer, events: list[tuple[str, str]], kill_after_s: float
                      ) -> tuple[set[tuple[str, str]], int]:
    """Post `events` from WRITERS threads; kill -9 the app after kill_after_s. Returns the
    acknowledged events and how many were in flight or refused."""
    acked: set[tuple[str, str]] = set()
    unacked = [0]
    lock = threading.Lock()
    work = list(events)
    random.shuffle(work)
    cursor = [0]

    def writer() -> None:
        with requests.Session() as http:
            while True:
                with lock:
                    if cursor[0] >= len(work):
                        return
                    item = work[cursor[0]]
                    cursor[0] += 1
                try:
                    response = post_signed(http, app, body(*item), timeout=5)
                except requests.RequestException:
                    with lock:
                        unacked[0] += 1
                    if app.process is None or app.process.poll() is not None:
                        return
                    continue
                with lock:
                    if response.status_code == 200:
                        acked.add(item)
                    else:
                        unacked[0] += 1

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    time.sleep(kill_after_s)
    app.stop(kill=True)  # SIGKILL: no shutdown code runs
    for thread in threads:
        thread.join(timeout=20)
    return acked, unacked[0]


def check_database(app: AppServer, acked: set[tuple[str, str]]) -> None:
    with sqlite3.connect(db_path(app), timeout=10) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = set(conn.execute("SELECT task_id, stage FROM callbacks").fetchall())
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"


def test_kill_9_under_load_loses_nothing_acknowledged(
    request: pytest.FixtureRequest, app: AppServer
) -> None:
    cycles = 50 if slow(request.config) else 5
    seed = random.randrange(10**9)
    rng = random.Random(seed)
    print(f"crash test seed {seed}")
    total_acked = 0
    total_unacked = 0
    started = time.monotonic()
    for cycle in range(cycles):
        store = store_of(app)  # submissions while the app is down or up: both must hold
        tasks = [new_task(store, prefix=f"crash{cycle}") for _ in range(TASKS_PER_CYCLE)]
        store.close()
        events = [(task, kind) for task in tasks for kind in KINDS]
        acked, unacked = load_until_killed(app, events, kill_after_s=rng.uniform(0.1, 1.2))
        check_database(app, acked)
        total_acked += len(acked)
        total_unacked += unacked
        app.start()
        # the restarted app answers, and a re-delivery of an acknowledged event is a
        # duplicate, not a second copy
        if acked:
            again = post_signed(requests, app, body(*sorted(acked)[0]))
            assert again.status_code == 200 and again.json()["result"] == "duplicate"
    assert total_acked > 0
    record_figure("crash_cycles", cycles)
    record_figure("crash_acknowledged_events", total_acked)
    record_figure("crash_unacknowledged_in_flight", total_unacked)
    record_figure("crash_seconds", round(time.monotonic() - started, 1))
