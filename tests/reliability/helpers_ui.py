"""Shared pieces of the browser-driven reliability tests (points 9-12): a Chromium,
a Kie stand-in the running app talks to, and small page helpers.

The Chromium itself is the `browser` fixture of tests/conftest.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from fakeserver import FakeServer, Reply
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.browser.pw import commit, extend_button, wait_idle  # noqa: F401 - re-exported

EXTEND = "/api/v1/generate/extend"
CREDIT = "/api/v1/chat/credit"
RECORD_INFO = "/api/v1/generate/record-info"
VIEWPORT = {"width": 1280, "height": 2200}

expect.set_options(timeout=20_000)


def kie_stand_in(credits: int = 100) -> FakeServer:
    """A FakeServer answering like Kie: credits, and 404 for anything not scripted."""
    server = FakeServer()
    server.script(CREDIT, Reply.envelope(data=credits))
    return server


PROMPT = re.compile("^Prompt")


def fill_inherited_form(page: Page, audio_id: str, prompt: str) -> None:
    """The shortest valid form: source parameters inherited, an Audio ID and a prompt."""
    if page.get_by_label("Title", exact=True).is_enabled():  # custom parameters are on
        page.get_by_text("Custom parameters (your own prompt").click()
        wait_idle(page)
        expect(page.get_by_label("Title", exact=True)).to_be_disabled()
    commit(page, "Audio ID", audio_id)
    commit(page, PROMPT, prompt)
    expect(extend_button(page)).to_be_enabled()


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    wait_idle(page)


def wait_count(server: FakeServer, path: str, count: int, timeout: float = 10.0) -> int:
    """Wait (bounded) until `path` got at least `count` requests; returns the count."""
    deadline = time.monotonic() + timeout
    while server.count(path) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.count(path)


@dataclass
class WireTap:
    """Every websocket frame a page sent and received, as bytes."""

    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_socket(ws: Any) -> None:
            ws.on("framesent", lambda payload: self.sent.append(_bytes(payload)))
            ws.on("framereceived", lambda payload: self.received.append(_bytes(payload)))

        page.on("websocket", on_socket)


def _bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, dict):  # older Playwright: {"payload": ...}
        payload = payload.get("payload", b"")
    return payload if isinstance(payload, bytes) else str(payload).encode("utf-8")


def new_context(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport=VIEWPORT)


def visitor_cookie(context: BrowserContext) -> str:
    """The visitor ID the app gave this browser (the HttpOnly es_visitor cookie)."""
    for cookie in context.cookies():
        if cookie["name"] == "es_visitor":
            return str(cookie["value"])
    raise AssertionError("the app set no visitor cookie")


def open_expanders(page: Page) -> None:
    """Open every expander on the page (one the live list re-drew meanwhile is skipped)."""
    summaries = page.locator('[data-testid="stExpander"] details:not([open]) > summary')
    for _ in range(summaries.count()):
        closed = summaries.first
        try:
            closed.click(timeout=3_000)
        except PlaywrightError:
            break
    wait_idle(page)
