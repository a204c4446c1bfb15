"""Point 3 — idempotent and monotonic, over HTTP against the running app.

A hypothesis state machine submits tasks and delivers their callbacks in any order, any
number of times (duplicates, reorderings, failures, stages Kie never documented), and
after every step checks the store against a model: one callbacks row per (task, stage);
the stage is the highest one delivered (text < first < error < complete: complete wins
over error whichever came first); tracks never duplicate; a repeat answers "duplicate"
and changes nothing; an unknown stage is stored and moves nothing.
"""

from __future__ import annotations

import json
import sqlite3

import requests
from appserver import AppServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from studio.store import PRECEDENCE, TaskStore
from tests.reliability.conftest import CALLBACK, JSON, body, db_path, new_task, store_of, token_of

KINDS = ["text", "first", "complete", "error", "failed-first", "lyrics-v2", "COMPLETE"]
VISITOR = "visitor-stateful"


def payload_for(task_id: str, kind: str) -> tuple[dict, str, str | None]:
    """(body, callbacks-table stage key, stage it stands for or None)."""
    if kind == "failed-first":  # a failure code on a non-error type still means error
        failed = body(task_id, "first", code=501)
        failed["data"]["data"] = []  # failures carry no tracks (Kie's docs)
        return failed, "error", "error"
    if kind == "error":
        return body(task_id, "error", code=531), "error", "error"
    if kind in ("text", "first", "complete"):
        return body(task_id, kind), kind, kind
    return body(task_id, kind), kind, None  # undocumented: kept, moves nothing


class CallbackMachine(RuleBasedStateMachine):
    app: AppServer
    store: TaskStore
    token: str
    http: requests.Session

    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.delivered: dict[str, set[str]] = {}  # task -> stage keys seen
        self.stages: dict[str, set[str]] = {}  # task -> stages that move state

    @rule(target=tasks)
    def submit(self) -> str:
        task_id = new_task(self.store, VISITOR, prefix="sm")
        self.delivered[task_id] = set()
        self.stages[task_id] = set()
        return task_id

    @rule(task=tasks, kind=st.sampled_from(KINDS), copies=st.integers(1, 3))
    def deliver(self, task: str, kind: str, copies: int) -> None:
        payload, key, stage = payload_for(task, kind)
        for n in range(copies):
            response = self.http.post(
                self.app.url + CALLBACK, params={"token": self.token},
                data=json.dumps(payload), headers=JSON, timeout=10,
            )
            assert response.status_code == 200, response.text
            expected = "duplicate" if key in self.delivered[task] or n else "stored"
            assert response.json()["result"] == expected
        self.delivered[task].add(key)
        if stage:
            self.stages[task].add(stage)

    @invariant()
    def store_matches_the_model(self) -> None:
        if not self.delivered:
            return
        with sqlite3.connect(db_path(self.app), timeout=10) as conn:
            for task, keys in self.delivered.items():
                rows = conn.execute(
                    "SELECT stage FROM callbacks WHERE task_id = ?", (task,)
                ).fetchall()
                assert sorted(r[0] for r in rows) == sorted(keys)  # one row per (task, stage)
        for task, stages in self.stages.items():
            view = self.store.get_task(task, VISITOR)
            expected = max(stages, key=PRECEDENCE.__getitem__) if stages else "submitted"
            assert view.stage == expected
            ids = [t.id for t in view.tracks]
            assert len(ids) == len(set(ids)), ids  # never a duplicated track
            moved_tracks = stages & {"first", "complete"}
            assert set(ids) == ({f"{task}-t1", f"{task}-t2"} if moved_tracks else set())
            if "complete" in stages:  # the final URLs, whatever order they came in
                assert [t.audio_url for t in view.tracks] == [
                    f"https://cdn.example/{task}/{n}.mp3" for n in (1, 2)
                ]
            assert set(view.stages_seen) == {"submitted", *stages}


def test_any_order_any_repeats_converge(token_app: AppServer) -> None:
    CallbackMachine.app = token_app
    CallbackMachine.store = store_of(token_app)
    CallbackMachine.token = token_of(token_app)
    with requests.Session() as http:
        CallbackMachine.http = http
        try:
            run = CallbackMachine.TestCase
            run.settings = settings(
                max_examples=30,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            run().runTest()
        finally:
            CallbackMachine.store.close()
