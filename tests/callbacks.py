"""Callbacks as Kie sends them, and the running app's store, for tests over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from appserver import AppServer

from kie.webhook import signed_headers
from studio.runtime import CALLBACK_TOKEN_NAME
from studio.store import TaskStore

HMAC_KEY = "reliability-hmac-key-Zq7"
CALLBACK = "/kie/callback"
JSON = {"Content-Type": "application/json"}
VISITOR = "visitor-reliability"


def db_path(app: AppServer) -> Path:
    return app.data_dir / "extend-studio.db"


def store_of(app: AppServer) -> TaskStore:
    """A second TaskStore on the app's database file (another process's view)."""
    return TaskStore(f"sqlite:///{db_path(app)}")


def token_of(app: AppServer) -> str:
    store = store_of(app)
    try:
        return store.server_secret(CALLBACK_TOKEN_NAME)
    finally:
        store.close()


def new_task(store: TaskStore, visitor: str = VISITOR, prefix: str = "rel") -> str:
    """Record a submitted task the way the Extend page does; returns its id."""
    task_id = f"{prefix}-{uuid.uuid4().hex[:16]}"
    store.record_submission(
        task_id=task_id,
        visitor_id=visitor,
        request={"model": "V4", "title": "Reliability", "callBackUrl": "https://x.example/cb"},
    )
    return task_id


def track(task_id: str, n: int, kind: str) -> dict[str, Any]:
    final = kind == "complete"
    base = f"https://cdn.example/{task_id}/{n}"
    return {
        "id": f"{task_id}-t{n}",
        "audio_url": f"{base}.mp3" if final else "",
        "stream_audio_url": f"{base}-stream.mp3",
        "image_url": f"{base}.png",
        "title": f"Track {n}",
        "model_name": "chirp-v4",
        "duration": 61.5 if final else None,
    }


def body(task_id: str, kind: str = "complete", *, code: int = 200) -> dict[str, Any]:
    """A callback body of Kie's documented shape (two tracks for first/complete)."""
    tracks = [track(task_id, n, kind) for n in (1, 2)] if kind in ("first", "complete") else []
    return {
        "code": code,
        "msg": "ok" if code == 200 else "Generation failed.",
        "data": {"callbackType": kind, "task_id": task_id, "data": tracks},
    }


def post_signed(
    session: requests.Session | Any,
    app: AppServer,
    payload: dict[str, Any],
    *,
    key: str = HMAC_KEY,
    timeout: float = 10,
) -> requests.Response:
    headers = JSON | signed_headers(key, payload["data"]["task_id"])
    return session.post(
        app.url + CALLBACK, data=json.dumps(payload), headers=headers, timeout=timeout
    )


def wait_until(predicate: Any, timeout: float, every: float = 0.1) -> Any:
    """predicate()'s first truthy value within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
