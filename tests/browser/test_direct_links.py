"""A first visit straight to a page's address, on a freshly started app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from appserver import AppServer, running_app
from playwright.sync_api import Browser, expect

from tests.browser.pw import wait_idle


@pytest.fixture
def fresh_app(tmp_path) -> Iterator[AppServer]:
    with running_app(tmp_path) as server:
        yield server


@pytest.mark.parametrize(("path", "title"), [("/tasks", "Your tasks"), ("/settings", "Settings")])
def test_a_direct_link_is_the_first_visit_after_a_start(
    browser: Browser, fresh_app: AppServer, path: str, title: str
) -> None:
    # Streamlit's older pages/ navigation would run the page alone, skipping ui.py.
    page = browser.new_context().new_page()
    page.goto(fresh_app.url + path)
    wait_idle(page)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    expect(page.get_by_text("Sandbox: simulated results, no credits used.")).to_be_visible()
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_text("Extend", exact=True)).to_be_visible()
    expect(nav.get_by_text("ui", exact=True)).to_have_count(0)
    page.context.close()
