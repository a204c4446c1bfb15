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
from collections.abc import Iterator
from typing import Any

import pytest
from appserver import AppServer
from callbacks import (  # noqa: F401 - re-exported for the tests here
    CALLBACK,
    HMAC_KEY,
    JSON,
    VISITOR,
    body,
    db_path,
    new_task,
    post_signed,
    store_of,
    token_of,
    track,
    wait_until,
)
from playwright.sync_api import Browser, Page

from tests.reliability.helpers_ui import VIEWPORT


def slow(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-slow"))


def row_counts(app: AppServer) -> dict[str, int]:
    """Rows per table, read with plain sqlite3 (no SQLAlchemy in the way). Leaves out
    task_checks: the app's reconciler writes it in the background at any moment."""
    with sqlite3.connect(db_path(app), timeout=10) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                 if r[0] != "task_checks"]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


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
