"""Point 12 — a hosted demo that is safe to share, against the running app.

- KIE_VISITOR_KEYS=required: the host's key is never used for a visitor (a stand-in
  Kie counts the keys it sees); without their own key visitors get the sandbox.
- KIE_VISITOR_QUOTA: extends on the host's key per visitor, counted on the server (a
  new session or tab does not reset it, another visitor has their own; concurrent
  reservations cannot overshoot it).
- KIE_PASSCODE: one gate page before anything else, per browser session.
- Each visitor sees only their own tasks, whatever URL they try.
- The custom routes stand alone: POST /kie/callback is not subject to Streamlit's XSRF
  check (a signed callback works with no cookie or token) and is refused without its
  own authentication whatever Origin, cookies or XSRF token come with it; no CORS
  header is granted to a foreign origin on the custom routes or Streamlit's own.
- .streamlit/config.toml keeps XSRF on, error details hidden, small limits; a page
  error shows visitors no details.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from appserver import AppServer, running_app
from fakeserver import FakeServer, Reply
from playwright.sync_api import Browser, expect

from kie.webhook import signed_headers
from studio.store import TaskStore
from studio.submissions import QuotaExceeded, SubmissionLedger
from tests.browser.pw import wait_idle
from tests.reliability.conftest import HMAC_KEY, body, new_task, store_of
from tests.reliability.helpers_ui import (
    EXTEND,
    extend_button,
    fill_inherited_form,
    kie_stand_in,
    new_context,
    visitor_cookie,
    wait_count,
)

ROOT = Path(__file__).resolve().parents[2]
HOST_KEY = "host-key-hosting-4e9"
VISITOR_KEY = "visitor-own-key-b21"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def kie() -> Iterator[FakeServer]:
    server = kie_stand_in()
    server.script(EXTEND, Reply.envelope(data={"taskId": "hosted-task-1"}))
    yield server
    server.close()


def keys_seen(server: FakeServer) -> set[str]:
    return {r.headers.get("Authorization", "") for r in server.received}


# --- visitors bring their own key ----------------------------------------------------------


@pytest.mark.browser
def test_required_visitor_keys_never_use_the_host_key(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, kie: FakeServer
) -> None:
    with running_app(tmp_path_factory.mktemp("byok-app"), KIE_API_KEY=HOST_KEY,
                     KIE_BASE_URL=kie.url, KIE_VISITOR_KEYS="required",
                     KIE_RECONCILE="0") as app:
        context = new_context(browser)
        page = context.new_page()
        page.goto(app.url)
        wait_idle(page)
        expect(page.get_by_text("Sandbox: simulated results, no credits used.")).to_be_visible()
        expect(page.get_by_text("paste your own API key on the Settings page")).to_be_visible()
        fill_inherited_form(page, "demo-sunrise-piano", "On the sandbox, not the host's key")
        extend_button(page).click()
        expect(page.get_by_text("Task started")).to_be_visible()
        assert f"Bearer {HOST_KEY}" not in keys_seen(kie)

        page.get_by_role("link", name="Settings").first.click()
        wait_idle(page)
        expect(page.get_by_text("asks visitors to bring their own Kie key")).to_be_visible()
        page.get_by_role("textbox", name="New API key").fill(VISITOR_KEY)
        page.get_by_role("button", name="Save").click()
        wait_idle(page)
        page.get_by_role("link", name="Extend").first.click()
        wait_idle(page)
        expect(page.get_by_text("Sandbox: simulated results")).to_have_count(0)
        fill_inherited_form(page, "src-byok", "Paid by the visitor's own key")
        before = kie.count(EXTEND)
        extend_button(page).click()
        expect(page.get_by_text("Task started")).to_be_visible()
        assert wait_count(kie, EXTEND, before + 1) == before + 1
        assert kie.requests_to(EXTEND)[-1].headers["Authorization"] == f"Bearer {VISITOR_KEY}"
        assert f"Bearer {HOST_KEY}" not in keys_seen(kie)
        context.close()


# --- a quota on the host's key -----------------------------------------------------------------


@pytest.mark.browser
def test_quota_is_counted_on_the_server_per_visitor(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, kie: FakeServer
) -> None:
    with running_app(tmp_path_factory.mktemp("quota-app"), KIE_API_KEY=HOST_KEY,
                     KIE_BASE_URL=kie.url, KIE_VISITOR_QUOTA="2", KIE_RECONCILE="0") as app:
        context = new_context(browser)
        page = context.new_page()
        page.goto(app.url)
        wait_idle(page)
        expect(page.get_by_text("2 left")).to_be_visible()
        start = kie.count(EXTEND)
        for n in (1, 2):
            fill_inherited_form(page, f"src-quota-{n}", f"Quota send {n}")
            extend_button(page).click()
            expect(page.get_by_text("Task started")).to_be_visible()
        expect(page.get_by_text("0 left")).to_be_visible()
        fill_inherited_form(page, "src-quota-3", "One too many")
        extend_button(page).click()
        expect(page.get_by_text("you have used them all")).to_be_visible()
        assert kie.count(EXTEND) == start + 2

        # A new session (reload) of the same browser: still used up; nothing sent.
        page.reload()
        wait_idle(page)
        expect(page.get_by_text("0 left")).to_be_visible()
        fill_inherited_form(page, "src-quota-4", "After a reload")
        extend_button(page).click()
        expect(page.get_by_text("you have used them all")).to_be_visible()
        assert kie.count(EXTEND) == start + 2

        # Another visitor has a quota of their own.
        other = new_context(browser)
        second = other.new_page()
        second.goto(app.url)
        wait_idle(second)
        expect(second.get_by_text("2 left")).to_be_visible()
        fill_inherited_form(second, "src-quota-other", "Another visitor")
        extend_button(second).click()
        expect(second.get_by_text("Task started")).to_be_visible()
        assert kie.count(EXTEND) == start + 3
        other.close()
        context.close()


def test_concurrent_reservations_cannot_overshoot_the_quota(tmp_path: Path) -> None:
    """Twenty threads (two processes' worth of tabs) race for a quota of 3: 3 win."""
    url = f"sqlite:///{tmp_path / 'quota.db'}"
    ledgers = [SubmissionLedger(TaskStore(url)) for _ in range(2)]
    won: list[int] = []
    start = threading.Barrier(20)

    def attempt(n: int) -> None:
        start.wait(timeout=10)
        with contextlib.suppress(QuotaExceeded):
            won.append(ledgers[n % 2].reserve(visitor_id="v", key_source="host",
                                              fingerprint=str(n), request={}, quota=3))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 3 and ledgers[0].used("v") == 3
    assert ledgers[0].used("someone-else") == 0


# --- the passcode --------------------------------------------------------------------------------


@pytest.mark.browser
def test_passcode_gate_comes_before_every_page(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    passcode = "open-sesame-73"
    with running_app(tmp_path_factory.mktemp("gate-app"), KIE_PASSCODE=passcode,
                     KIE_RECONCILE="0") as app:
        context = new_context(browser)
        page = context.new_page()
        for path in ("/", "/tasks", "/settings"):
            page.goto(app.url + path)
            wait_idle(page)
            expect(page.get_by_label("Passcode")).to_be_visible()
            expect(page.get_by_role("heading", name="Your tasks")).to_have_count(0)
            expect(page.get_by_role("heading", name="Extend a track")).to_have_count(0)
            expect(page.get_by_role("link", name="Tasks")).to_have_count(0)
        page.get_by_label("Passcode").fill("open-sesame-74")
        page.get_by_role("button", name="Enter").click()
        expect(page.get_by_text("That passcode is not right.")).to_be_visible()
        expect(page.get_by_role("heading", name="Extend a track")).to_have_count(0)
        page.get_by_label("Passcode").fill(passcode)
        page.get_by_role("button", name="Enter").click()
        # Then the page that was asked for (the last address was /settings).
        expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
        page.get_by_role("link", name="Tasks").first.click()
        expect(page.get_by_role("heading", name="Your tasks")).to_be_visible()
        assert passcode not in page.content()
        # Remembered per browser session only: a reload is a new session.
        page.reload()
        wait_idle(page)
        expect(page.get_by_label("Passcode")).to_be_visible()
        context.close()
        assert passcode not in app.log_path.read_text()


def test_passcode_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from studio import hosting

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(hosting.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    assert hosting.passcode_matches("abc", "abc")
    assert not hosting.passcode_matches("abd", "abc")
    assert not hosting.passcode_matches("a", "a much longer passcode")
    assert len(calls) == 3 and all(len(a) == len(b) == 32 for a, b in calls)


# --- each visitor sees only their own tasks ------------------------------------------------------


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with running_app(tmp_path_factory.mktemp("shared-app"), KIE_WEBHOOK_HMAC_KEY=HMAC_KEY,
                     KIE_RECONCILE="0") as app:
        yield app


@pytest.mark.browser
def test_each_visitor_sees_only_their_own_tasks(browser: Browser, shared_app: AppServer) -> None:
    mine = new_context(browser)
    page = mine.new_page()
    page.goto(shared_app.url + "/tasks")
    wait_idle(page)
    store = store_of(shared_app)
    try:
        task_id = new_task(store, visitor_cookie(mine), prefix="private")
    finally:
        store.close()
    http = requests.Session()
    response = http.post(shared_app.url + "/kie/callback", data=json.dumps(body(task_id)),
                         headers={"Content-Type": "application/json"}
                         | signed_headers(HMAC_KEY, task_id), timeout=10)
    assert response.status_code == 200, response.text
    page.reload()
    expect(page.get_by_text("1 task, newest first.")).to_be_visible()
    expect(page.get_by_text(task_id).first).to_be_visible()

    theirs = new_context(browser)
    other = theirs.new_page()
    for path in ("/tasks", f"/tasks?task={task_id}", f"/tasks?taskId={task_id}",
                 f"/?audioId={task_id}-t1", f"/tasks#{task_id}"):
        other.goto(shared_app.url + path)
        wait_idle(other)
        expect(other.get_by_text("No tasks yet.").or_(
            other.get_by_role("heading", name="Extend a track"))).to_be_visible()
        assert task_id not in other.content()
    other.goto(shared_app.url + "/tasks")
    wait_idle(other)
    expect(other.get_by_role("button", name="Export JSON")).to_be_disabled()
    expect(other.get_by_role("button", name="Refresh from Kie")).to_have_count(0)
    other.goto(shared_app.url)
    wait_idle(other)
    other.get_by_role("combobox", name="Extend from a track in history").click()
    expect(other.get_by_role("option", name="Track 1", exact=False)).to_have_count(0)
    theirs.close()
    mine.close()


# --- the custom routes stand alone --------------------------------------------------------------


def test_callback_route_is_not_weakened_by_streamlits_middleware(shared_app: AppServer) -> None:
    url = shared_app.url
    store = store_of(shared_app)
    try:
        task_id = new_task(store, prefix="routes")
    finally:
        store.close()
    payload = json.dumps(body(task_id, "text"))
    plain = {"Content-Type": "application/json"}

    # Streamlit's own state-changing route does enforce XSRF...
    page = requests.get(url + "/", headers={"Accept": "text/html"}, timeout=10)
    xsrf = page.cookies.get("_streamlit_xsrf")
    upload = requests.put(url + "/_stcore/upload_file/session/file", files={"f": b"x"},
                          timeout=10)
    assert upload.status_code in (401, 403), upload.status_code

    # ...the callback route does not depend on it: signed, no cookie, no token: accepted.
    ok = requests.post(url + "/kie/callback", data=payload,
                       headers=plain | signed_headers(HMAC_KEY, task_id), timeout=10)
    assert ok.status_code == 200, ok.text

    # Unauthenticated, whatever comes along: refused by the route itself.
    cookies = {"_streamlit_xsrf": xsrf or "", "es_visitor": "v" * 24}
    for origin in (url, EVIL, "null"):
        refused = requests.post(
            url + "/kie/callback", data=payload, cookies=cookies,
            headers=plain | {"Origin": origin, "X-Xsrftoken": xsrf or "", "Referer": url + "/"},
            timeout=10,
        )
        assert refused.status_code == 401, (origin, refused.text)
        assert "access-control-allow-origin" not in {k.lower() for k in refused.headers}

    # A signed callback sent from a foreign page is stored, but that page cannot read the
    # answer, and a preflight grants nothing.
    foreign = requests.post(url + "/kie/callback", data=payload,
                            headers=plain | {"Origin": EVIL} | signed_headers(HMAC_KEY, task_id),
                            timeout=10)
    assert foreign.status_code == 200
    assert "access-control-allow-origin" not in {k.lower() for k in foreign.headers}
    for path in ("/kie/callback", "/kie-sandbox/api/v1/chat/credit", "/_stcore/health",
                 "/_stcore/host-config"):
        preflight = requests.options(url + path, timeout=10, headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-webhook-signature"})
        granted = preflight.headers.get("Access-Control-Allow-Origin")
        assert granted not in ("*", EVIL), (path, granted)
        plain_get = requests.get(url + path, headers={"Origin": EVIL}, timeout=10)
        assert plain_get.headers.get("Access-Control-Allow-Origin") not in ("*", EVIL), path


# --- configuration ------------------------------------------------------------------------------


def test_config_keeps_protections_on_and_limits_small() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = config["server"], config["client"]
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True
    assert client["showErrorDetails"] in ("none", False)
    assert server["maxUploadSize"] <= 5
    assert server["maxMessageSize"] <= 10
    assert config["browser"]["gatherUsageStats"] is False


@pytest.mark.browser
def test_a_page_error_shows_visitors_no_details(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A host misconfiguration (a key with a space) fails the page: the visitor sees
    Streamlit's generic notice, no exception text, path or traceback; the log has it."""
    with running_app(tmp_path_factory.mktemp("error-app"), KIE_API_KEY="host key with space",
                     KIE_BASE_URL="http://127.0.0.1:9", KIE_RECONCILE="0") as app:
        context = new_context(browser)
        page = context.new_page()
        page.goto(app.url)
        wait_idle(page)
        expect(page.get_by_test_id("stException").or_(page.get_by_test_id("stAlert")).first
               ).to_be_visible()
        text = page.evaluate("document.body.innerText")
        for detail in ("Traceback", "ValueError", "kie/client.py", "pages/extend.py",
                       "host key with space"):
            assert detail not in text, detail
        context.close()
        deadline = time.monotonic() + 10
        while "ValueError" not in app.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "ValueError" in app.log_path.read_text()
