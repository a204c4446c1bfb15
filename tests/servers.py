"""Real servers on loopback for tests: serve(app) and a callback recorder.

Usage::

    with serve(app) as base_url:  # e.g. "http://127.0.0.1:54321"
        requests.get(base_url + "/path")

    recorder = CallbackRecorder()
    with serve(recorder.app) as url:  # POSTs to url + "/callback" are recorded
        ...
        calls = recorder.wait_for(3)  # the first 3 calls, waiting up to a timeout
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp


@contextmanager
def serve(app: ASGIApp, *, host: str = "127.0.0.1", start_timeout: float = 10.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread on a free port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass(frozen=True)
class ReceivedCall:
    """One request the recorder received."""

    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CallbackRecorder:
    """A tiny app that records every POST to /callback, answering `status` after
    `delay_s` seconds."""

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.status = status
        self.delay_s = delay_s
        self.calls: list[ReceivedCall] = []
        self._changed = threading.Condition()
        self.app = Starlette(routes=[Route("/callback", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        call = ReceivedCall(
            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return JSONResponse({"ok": self.status == 200}, status_code=self.status)

    def for_task(self, task_id: str) -> list[ReceivedCall]:
        """The calls whose body names this task (data.task_id)."""
        with self._changed:
            calls = list(self.calls)
        return [call for call in calls if _task_id(call) == task_id]

    def wait_for(
        self, count: int, task_id: str | None = None, timeout: float = 10.0
    ) -> list[ReceivedCall]:
        """The first `count` calls (for `task_id` if given); AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                calls = [c for c in self.calls if task_id is None or _task_id(c) == task_id]
                if len(calls) >= count:
                    return calls[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} callbacks, got {len(calls)}")
                self._changed.wait(remaining)


def _task_id(call: ReceivedCall) -> str | None:
    try:
        return call.json()["data"]["task_id"]
    except (ValueError, KeyError, TypeError):
        return None
