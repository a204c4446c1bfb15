"""Point 11 — secrets never leak, in a real browser against the running app.

The host's key is a random canary (KIE_API_KEY); "Kie" is the sandbox served alone on
loopback (it takes any key, calls the app back and plays sound). A browser goes
through every page and error path: credits, a task to the end, refresh, exports,
refused extends (401, 429, 500 markers), a failing task, Test connection, an attempt to
point the host key at another server, a visitor's own (second canary) key sent to a
server that echoes it back in its error message, a malformed key. Then every place a
secret could end up is searched: each page's HTML, every websocket frame, the app's
log, both exports, the database files, and every file `git ls-files` lists.

The host canary appears nowhere. The visitor's canary appears only in websocket
frames the *browser sent* (the person typed it into the key box: the server has to
receive it); never in what the server sent back, the HTML, the log, the exports or
the store. The other server never saw the host canary. secrets.toml is git-ignored.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from appserver import AppServer, running_app
from fakeserver import FakeServer, Reply
from playwright.sync_api import Browser, Page, expect
from servers import serve

from kie.sandbox import create_app
from tests.browser.pw import wait_idle
from tests.reliability.helpers_ui import (
    CREDIT,
    WireTap,
    extend_button,
    fill_inherited_form,
    new_context,
    open_expanders,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
HOST_CANARY = "canary-host-" + secrets.token_hex(12)
VISITOR_CANARY = "canary-visitor-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def kie_url() -> Iterator[str]:
    with serve(create_app(stage_delay_s=0.3)) as url:
        yield url


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[FakeServer]:
    """Another API server a visitor points the app at; it echoes keys in its errors."""
    with FakeServer() as server:
        server.script(CREDIT, Reply.envelope(401, f"Invalid key {VISITOR_CANARY}"))
        yield server


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, kie_url: str) -> Iterator[AppServer]:
    with running_app(
        tmp_path_factory.mktemp("secrets-app"),
        KIE_API_KEY=HOST_CANARY,
        KIE_BASE_URL=kie_url,
        KIE_TIMEOUT_S="5",
        KIE_RECONCILE_TICK_S="0.5",
        KIE_RECONCILE_QUIET_S="1",
    ) as server:
        yield server


class Visit:
    """A page plus everything collected from it."""

    def __init__(self, page: Page, app: AppServer) -> None:
        self.page, self.app = page, app
        self.html: list[str] = []
        self.exports: list[bytes] = []
        self.tap = WireTap()
        self.tap.attach(page)

    def snap(self) -> None:
        wait_idle(self.page)
        self.html.append(self.page.content())

    def go(self, path: str) -> None:
        self.page.goto(self.app.url + path)
        self.snap()

    def extend(self, audio_id: str, expected: str) -> None:
        self.go("/")
        fill_inherited_form(self.page, audio_id, f"Secrets tour {audio_id}")
        extend_button(self.page).click()
        expect(self.page.get_by_text(expected).first).to_be_visible(timeout=30_000)
        self.snap()

    def download(self, name: str) -> None:
        with self.page.expect_download() as info:
            self.page.get_by_role("button", name=name).click()
        self.exports.append(Path(info.value.path()).read_bytes())

    def settings(self, *, key: str = "", base_url: str | None = None) -> None:
        self.go("/settings")
        self.page.get_by_role("textbox", name="New API key").fill(key)
        if base_url is not None:
            self.page.get_by_role("textbox", name="API base URL").fill(base_url)
        self.page.get_by_role("button", name="Save").click()
        self.snap()

    def test_connection(self, expected: str) -> None:
        self.page.get_by_role("button", name="Test connection").click()
        expect(self.page.get_by_text(expected).first).to_be_visible(timeout=30_000)
        self.snap()


def context_of(data: bytes, secret: str) -> str:
    at = data.find(secret.encode())
    return data[max(0, at - 300): at + 60].decode("utf-8", "replace")


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is not available")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_canary_anywhere_after_every_page_and_error_path(
    browser: Browser, app: AppServer, elsewhere: FakeServer
) -> None:
    context = new_context(browser)
    visit = Visit(context.new_page(), app)

    # Every page, a task to the end, refresh, exports.
    visit.go("/")
    expect(visit.page.get_by_text("Credits left:")).to_be_visible()
    visit.extend("demo-sunrise-piano", "Task started")
    visit.extend("demo-rainy-lofi", "Kie rejected")  # model mismatch: 422 from "Kie"
    for marker, words in (("sandbox-fail-401", "did not accept the API key"),
                          ("sandbox-fail-429", "Too many requests"),
                          ("sandbox-fail-500", "server error"),
                          ("sandbox-callback-531", "Task started")):
        visit.extend(marker, words)
    visit.go("/tasks")
    expect(visit.page.get_by_text("Complete").first).to_be_visible(timeout=30_000)
    expect(visit.page.get_by_text("The task failed.").first).to_be_visible(timeout=30_000)
    visit.page.get_by_role("button", name="Refresh from Kie").first.click()
    visit.snap()
    visit.download("Export JSON")
    visit.download("Export CSV")
    open_expanders(visit.page)
    visit.snap()

    # Settings: the host key shown as set, never as text; test it.
    visit.go("/settings")
    expect(visit.page.get_by_text("An API key is set by the host.")).to_be_visible()
    visit.test_connection("Connected.")
    # Pointing the host's key at another server is refused.
    visit.settings(base_url=elsewhere.url)
    expect(visit.page.get_by_text("needs your own API key")).to_be_visible()
    # A malformed key: refused without echoing it.
    visit.settings(key=f"{VISITOR_CANARY} with spaces")
    expect(visit.page.get_by_text("contains spaces or unusual characters")).to_be_visible()
    # The visitor's own key, to a server that echoes keys in its error message.
    visit.settings(key=VISITOR_CANARY, base_url=elsewhere.url)
    expect(visit.page.get_by_text("An API key is set for this session.")).to_be_visible()
    visit.test_connection("did not accept the API key")
    for name in ("Extend", "Tasks", "Settings"):  # same session: in-app links, no reload
        visit.page.get_by_role("link", name=name).first.click()
        visit.snap()
    visit.page.get_by_role("button", name="Forget this session's key").click()
    visit.snap()
    expect(visit.page.get_by_text("An API key is set by the host.")).to_be_visible()
    context.close()

    # The other server saw the visitor's key only, never the host's.
    seen = [r.headers.get("Authorization", "") for r in elsewhere.received]
    assert seen and all(h == f"Bearer {VISITOR_CANARY}" for h in seen), seen

    places: dict[str, bytes] = {
        "page html": "\n".join(visit.html).encode(),
        "websocket frames received": b"\n".join(visit.tap.received),
        "websocket frames sent": b"\n".join(visit.tap.sent),
        "app log": app.log_path.read_bytes(),
        "exports": b"\n".join(visit.exports),
    }
    assert visit.tap.received and len(visit.exports) == 2
    for db in sorted(app.data_dir.glob("extend-studio.db*")):
        places[f"store {db.name}"] = db.read_bytes()
    for path in tracked_files():
        if path.is_file():
            places[f"git {path.relative_to(ROOT)}"] = path.read_bytes()

    host_hits = [name for name, data in places.items() if HOST_CANARY.encode() in data]
    assert host_hits == [], [context_of(places[name], HOST_CANARY) for name in host_hits]
    visitor_hits = [name for name, data in places.items() if VISITOR_CANARY.encode() in data]
    # The browser had to send what the person typed; nothing else may hold it.
    assert visitor_hits == ["websocket frames sent"]
    assert b"Invalid key ***" in places["page html"]  # echoed back, then masked


def test_secrets_toml_is_git_ignored_and_untracked() -> None:
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert ".streamlit/secrets.toml" in ignore
    assert not any(p.name == "secrets.toml" for p in tracked_files())
    checked = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=ROOT,
                             timeout=30, check=False)
    assert checked.returncode == 0
    example = (ROOT / ".streamlit" / "secrets.toml.example").read_text()
    assert not re.search(r"^\s*KIE_API_KEY\s*=", example, re.M)  # only commented samples
