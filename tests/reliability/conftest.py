"""Shared pieces of the reliability suite: the real app (`streamlit run app.py`) on
loopback, a second handle on its SQLite file, and signed callback bodies.

Every test here talks to a running app over real HTTP. The test process opens the
same database file the app writes (as a second process would) to seed tasks the way the
Extend page records them and to check what was stored. `--run-slow` (tests/conftest.py)
runs the full-length soaks; without it each soak runs a short version.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from appserver import AppServer, running_app
from playwright.sync_api import Browser, Page

from kie.webhook import signed_headers
from studio.runtime import CALLBACK_TOKEN_NAME
from studio.store import TaskStore
from tests.reliability.helpers_ui import VIEWPORT

HMAC_KEY = "reliability-hmac-key-Zq7"
CALLBACK = "/kie/callback"
JSON = {"Content-Type": "application/json"}
VISITOR = "visitor-reliability"


def slow(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-slow"))


@pytest.fixture(scope="session")
def hmac_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app with a webhook HMAC key: callbacks must be signed (tolerance 300 s)."""
    with running_app(tmp_path_factory.mktemp("hmac-app"), KIE_WEBHOOK_HMAC_KEY=HMAC_KEY) as app:
        yield app


@pytest.fixture(scope="session")
def token_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app without an HMAC key: callbacks must carry the callBackUrl's ?token=."""
    with running_app(tmp_path_factory.mktemp("token-app")) as app:
        yield app


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


def row_counts(app: AppServer) -> dict[str, int]:
    """Rows per table, read with plain sqlite3 (no SQLAlchemy in the way). Leaves out
    task_checks: the app's reconciler writes it in the background at any moment."""
    with sqlite3.connect(db_path(app), timeout=10) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                 if r[0] != "task_checks"]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


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
    return session.post(app.url + CALLBACK, data=json.dumps(payload), headers=headers,
                        timeout=timeout)


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def app_log(app: AppServer) -> str:
    return app.log_path.read_text(errors="replace")


FIGURES_ENV = "RELIABILITY_FIGURES"


def record_figure(name: str, value: Any) -> None:
    """Print a measured figure; also append it as a JSON line to $RELIABILITY_FIGURES
    when set (docs/reliability.md quotes these)."""
    import os

    line = json.dumps({"figure": name, "value": value})
    print(line)
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


@pytest.fixture
def visitor_page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context: a new visitor (own cookie, own session)."""
    context = browser.new_context(viewport=VIEWPORT)
    yield context.new_page()
    context.close()
