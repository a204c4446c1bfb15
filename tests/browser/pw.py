"""Helpers for driving Streamlit pages in Playwright."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # Streamlit scrolls inside its main block, so fit the window to the content first.
    height = page.evaluate(
        "() => document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight"
    )
    width = page.viewport_size["width"] if page.viewport_size else 1280
    page.set_viewport_size({"width": width, "height": max(600, int(height) + 80)})
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_idle(page: Page) -> None:
    """Wait until Streamlit has connected and finished running the script."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=30_000)


def commit(page: Page, label: str | re.Pattern[str], value: str) -> None:
    """Type into a field and leave it, as a person does (Streamlit sends it on blur)."""
    exact = {"exact": True} if isinstance(label, str) else {}
    field = page.get_by_label(label, **exact)
    field.fill(value)
    field.press("Tab")
    wait_idle(page)


def choose(page: Page, select_label: str, option: str) -> None:
    page.get_by_role("combobox", name=select_label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def extend_button(page: Page) -> Any:
    return page.get_by_role("button", name="Extend", exact=True)
