"""A fake Kie for the reconciler tests: the sandbox (kie.sandbox.create_app) served on
loopback in this process, with a log of every record-info request it answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import requests
from starlette.types import ASGIApp, Receive, Scope, Send

from kie.sandbox import create_app
from tests.servers import serve

API_KEY = "fake-kie-key-never-logged-9f3"
DEAD_CALLBACK = "http://127.0.0.1:9/kie/callback"  # discard port: nothing answers


class RecordInfoLog:
    """ASGI wrapper noting (wall time, taskId) of each record-info request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._calls: list[tuple[float, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe = (b"x-test-probe", b"1") in scope.get("headers", [])
        if scope["type"] == "http" and scope["path"].endswith("/record-info") and not probe:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            with self._lock:
                self._calls.append((time.time(), (query.get("taskId") or [""])[0]))
        await self.app(scope, receive, send)

    def calls(self, task_id: str | None = None) -> list[float]:
        with self._lock:
            return [at for at, tid in self._calls if task_id is None or tid == task_id]


@dataclass
class FakeKie:
    url: str
    log: RecordInfoLog
    session: requests.Session = field(default_factory=requests.Session)

    def extend(self, call_back_url: str, **overrides: Any) -> str:
        """Start a task (defaultParamFlag false, a demo source); returns its id."""
        request = {
            "defaultParamFlag": False,
            "audioId": "demo-midnight-drive",
            "model": "V4",
            "callBackUrl": call_back_url,
            **overrides,
        }
        answer = self.session.post(
            self.url + "/api/v1/generate/extend",
            json=request,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        ).json()
        assert answer["code"] == 200, answer
        return str(answer["data"]["taskId"])

    def record_info(self, task_id: str) -> dict[str, Any]:
        answer = self.session.get(
            self.url + "/api/v1/generate/record-info",
            params={"taskId": task_id},
            headers={"Authorization": f"Bearer {API_KEY}", "X-Test-Probe": "1"},  # not logged
            timeout=10,
        ).json()
        assert answer["code"] == 200, answer
        return dict(answer["data"])


@contextmanager
def fake_kie(*, stage_delay_s: float, hmac_key: str | None = None) -> Iterator[FakeKie]:
    log = RecordInfoLog(create_app(stage_delay_s=stage_delay_s, hmac_key=hmac_key))
    with serve(log) as url:
        kie = FakeKie(url=url, log=log)
        try:
            yield kie
        finally:
            kie.session.close()
