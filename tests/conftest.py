"""Shared fixtures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from appserver import AppServer, running_app
from callbacks import HMAC_KEY
from fakeserver import FakeServer
from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # no network here beyond loopback
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A scriptable HTTP server on loopback (see tests/fakeserver.py)."""
    with FakeServer() as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium through Playwright (it cannot download a browser here).

    Module-scoped: sync Playwright runs an event loop while open, so closing it after
    each module keeps it from leaking into tests that start their own loop."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: run ./scripts/test (it installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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


# --- --run-slow (tests/reliability): long soak runs are skipped unless asked for ---------
# Here rather than in tests/reliability/conftest.py: pytest only honours pytest_addoption
# in conftest files it loads at start-up, and this one always is.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="run the full-length reliability soaks (tests marked slow)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long soak: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
