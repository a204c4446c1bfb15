"""Point 9 — never double-charge, in a real browser against the running app.

The app (`streamlit run app.py`) is given a host key and a base URL pointing at a
FakeServer on loopback that stands in for Kie, so every request the app sends is
counted on the server side. For each fault of the paid call (429 with Retry-After,
500, 503, read timeout, connection reset after the body was sent) the test presses
Extend once and checks: exactly one extend reached the server, the page says what
happened in words, and the form still holds what was typed. A lost answer is recorded
as "outcome unknown" (ledger row, notice on the Extend and Tasks pages) and is never
sent again unless the person confirms. A double click sends one request. Reads retry
(at most the page's 3 tries, within the client's limit of 5) and honour Retry-After.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest
from appserver import AppServer, running_app
from fakeserver import FakeServer, Reply
from playwright.sync_api import Page, expect

from studio.session import PAGE_RETRY
from tests.browser.pw import wait_idle
from tests.reliability.helpers_ui import (
    CREDIT,
    EXTEND,
    PROMPT,
    extend_button,
    fill_inherited_form,
    kie_stand_in,
    open_app,
    wait_count,
)

pytestmark = pytest.mark.browser

HOST_KEY = "host-key-charges-7c1"
READ_TIMEOUT_S = 2  # the app's KIE_TIMEOUT_S: a reply slower than this is a lost answer


@pytest.fixture(scope="module")
def kie() -> Iterator[FakeServer]:
    server = kie_stand_in()
    yield server
    server.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, kie: FakeServer) -> Iterator[AppServer]:
    with running_app(
        tmp_path_factory.mktemp("charges-app"),
        KIE_API_KEY=HOST_KEY,
        KIE_BASE_URL=kie.url,
        KIE_TIMEOUT_S=str(READ_TIMEOUT_S),
        KIE_RECONCILE="0",
    ) as server:
        yield server


def ledger_rows(app: AppServer) -> list[tuple[str, str | None]]:
    with sqlite3.connect(app.data_dir / "extend-studio.db", timeout=10) as conn:
        return conn.execute("SELECT outcome, task_id FROM submissions ORDER BY id").fetchall()


FAULTS = {
    "429-retry-after": (
        Reply.envelope(429, "rate limited", headers={"Retry-After": "7"}),
        "Too many requests for now",
        "refused",
    ),
    "500": (Reply.envelope(500, "internal error"), "Kie had a server error", "refused"),
    "503": (Reply(status=503, body=b"Service Unavailable"), "Kie had a server error", "refused"),
    "read-timeout": (
        Reply.envelope(data={"taskId": "never-seen"}, delay=READ_TIMEOUT_S + 2),
        "its answer was lost",
        "unknown",
    ),
    "reset-after-body": (Reply(drop="reset"), "its answer was lost", "unknown"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_sends_extend_once_shows_why_and_keeps_the_form(
    visitor_page: Page, app: AppServer, kie: FakeServer, fault: str
) -> None:
    reply, message, outcome = FAULTS[fault]
    kie.script(EXTEND, reply)
    page = visitor_page
    open_app(page, app.url)
    audio_id, prompt = f"src-{fault}", f"Keep what I typed for {fault} ✓"
    fill_inherited_form(page, audio_id, prompt)
    before, rows_before = kie.count(EXTEND), len(ledger_rows(app))

    extend_button(page).click()
    expect(page.get_by_text(message).first).to_be_visible(timeout=30_000)
    wait_idle(page)
    time.sleep(0.5)  # time enough for any (wrong) second send to arrive
    assert kie.count(EXTEND) == before + 1, f"{fault}: extend must be sent exactly once"

    # The form keeps what was typed.
    expect(page.get_by_label("Audio ID", exact=True)).to_have_value(audio_id)
    expect(page.get_by_label(PROMPT)).to_have_value(prompt)
    rows = ledger_rows(app)
    assert len(rows) == rows_before + 1 and rows[-1][0] == outcome
    if fault == "429-retry-after":
        expect(page.get_by_text("Kie asks to wait 7 s.")).to_be_visible()

    if outcome == "unknown":
        # Never re-sent: Extend stays off until the person says they checked.
        expect(page.get_by_text("You sent this same request at")).to_be_visible()
        expect(extend_button(page)).to_be_disabled()
        # The history keeps it with advice.
        page.get_by_role("link", name="Tasks").first.click()
        wait_idle(page)
        expect(page.get_by_text("Outcome unknown:").first).to_be_visible()
        expect(page.get_by_text("before sending it again").first).to_be_visible()
        page.get_by_role("link", name="Extend").first.click()
        wait_idle(page)
        expect(page.get_by_label("Audio ID", exact=True)).to_have_value(audio_id)
        expect(extend_button(page)).to_be_disabled()
        assert kie.count(EXTEND) == before + 1


def test_resending_after_a_lost_answer_needs_a_confirmation(
    visitor_page: Page, app: AppServer, kie: FakeServer
) -> None:
    kie.script(EXTEND, Reply(drop="reset"))
    page = visitor_page
    open_app(page, app.url)
    fill_inherited_form(page, "src-confirm", "A lost answer, then a deliberate resend")
    before = kie.count(EXTEND)
    extend_button(page).click()
    expect(page.get_by_text("its answer was lost").first).to_be_visible(timeout=30_000)
    expect(extend_button(page)).to_be_disabled()

    kie.script(EXTEND, Reply.envelope(data={"taskId": "task-after-confirm"}))
    page.get_by_text("I checked: Kie did not start it. Send it again.").click()
    wait_idle(page)
    extend_button(page).click()
    expect(page.get_by_text("Task started").first).to_be_visible()
    assert wait_count(kie, EXTEND, before + 2) == before + 2


def test_double_click_sends_one_extend(visitor_page: Page, app: AppServer, kie: FakeServer) -> None:
    # A slow answer: the second click arrives while the first request is in flight.
    kie.script(EXTEND, Reply.envelope(data={"taskId": "task-double-click"}, delay=1.0))
    page = visitor_page
    open_app(page, app.url)
    fill_inherited_form(page, "src-double-click", "Double-clicked once")
    before = kie.count(EXTEND)
    extend_button(page).dblclick()
    expect(page.get_by_text("Task started").first).to_be_visible(timeout=30_000)
    wait_idle(page)
    time.sleep(1.5)
    assert kie.count(EXTEND) == before + 1

    # A third press within the double-submit window is not sent either.
    extend_button(page).click()
    expect(page.get_by_text("so it was not sent again")).to_be_visible()
    time.sleep(0.5)
    assert kie.count(EXTEND) == before + 1
    page.get_by_role("link", name="Tasks").first.click()
    expect(page.get_by_text("1 task, newest first.")).to_be_visible()


def test_reads_retry_and_give_up_within_the_limit(
    visitor_page: Page, app: AppServer, kie: FakeServer
) -> None:
    assert PAGE_RETRY.max_tries <= 5
    kie.script(CREDIT, Reply(status=503), Reply.envelope(429, "slow down"),
               Reply.envelope(data=42))
    before = kie.count(CREDIT)
    open_app(visitor_page, app.url)
    expect(visitor_page.get_by_text("Credits left: 42")).to_be_visible()
    assert kie.count(CREDIT) - before == 3

    # Always failing, with Retry-After: 1 s: every try spent (no more), each wait honoured.
    kie.script(CREDIT, Reply.envelope(429, "slow down", headers={"Retry-After": "1"}))
    before = kie.count(CREDIT)
    started = time.monotonic()
    visitor_page.reload()
    expect(visitor_page.get_by_text("Credits: unavailable.")).to_be_visible()
    elapsed = time.monotonic() - started
    assert kie.count(CREDIT) - before == PAGE_RETRY.max_tries
    assert elapsed >= (PAGE_RETRY.max_tries - 1) * 1.0
    kie.script(CREDIT, Reply.envelope(data=100))
