"""A person's whole visit, in a real browser: form, submit, live results, history."""

from __future__ import annotations

import re

from appserver import AppServer
from playwright.sync_api import Page, expect

from tests.browser.pw import choose, commit, extend_button, screenshot, wait_idle

CANARY_KEY = "sk-canary-5f0e1d2c3b4a"


def test_extend_watch_and_extend_again(page: Page, app_server: AppServer) -> None:
    page.goto(app_server.url)
    wait_idle(page)
    expect(page.get_by_text("Sandbox: simulated results, no credits used.")).to_be_visible()
    expect(extend_button(page)).to_be_disabled()

    # Start from a demo track: its ID and model fill in, and its length bounds Continue at.
    choose(page, "Extend from a track in history", "Demo: Sunrise Piano, V4_5, 96 s")
    expect(page.get_by_label("Audio ID", exact=True)).to_have_value("demo-sunrise-piano")
    commit(page, re.compile("^Continue at"), "120")
    too_far = "Must be less than the source track's length (96 seconds)."
    expect(page.get_by_text(too_far)).to_be_visible()
    expect(extend_button(page)).to_be_disabled()

    # Fix it and fill the rest.
    commit(page, re.compile("^Continue at"), "60")
    expect(page.get_by_text("Must be less than the source track's length")).to_have_count(0)
    commit(page, "Prompt", "A gentle bridge with soft strings")
    commit(page, "Style", "Classical piano")
    commit(page, "Title", "Sunrise, Extended")
    expect(extend_button(page)).to_be_enabled()
    screenshot(page, "extend")
    extend_button(page).click()
    expect(page.get_by_text("Task started")).to_be_visible()

    # The task goes to complete on its own, with players whose audio loads.
    page.get_by_role("link", name="Open the Tasks page").click()
    expect(page.get_by_text("1 task, newest first.")).to_be_visible()
    expect(page.get_by_text("Complete", exact=False).first).to_be_visible(timeout=30_000)
    expect(page.locator("audio")).to_have_count(2, timeout=30_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')]"
        ".every(a => a.readyState >= 1 && a.duration > 1)",
        timeout=20_000,
    )
    expect(page.get_by_role("img").first).to_be_visible()
    # The server checks what the callbacks said against record-info, then says so.
    expect(page.get_by_text("Checked with Kie.")).to_be_visible(timeout=30_000)
    screenshot(page, "tasks")

    # Extend one of the new tracks: the form opens with it as the source.
    page.get_by_role("button", name="Extend this track").first.click()
    wait_idle(page)
    expect(page.get_by_role("heading", name="Extend a track")).to_be_visible()
    audio_id = page.get_by_label("Audio ID", exact=True).input_value()
    assert audio_id and audio_id != "demo-sunrise-piano"
    commit(page, "Title", "Sunrise, Extended Again")
    expect(extend_button(page)).to_be_enabled()
    extend_button(page).click()
    expect(page.get_by_text("Task started")).to_be_visible()

    page.get_by_role("link", name="Open the Tasks page").click()
    expect(page.get_by_text("2 tasks, newest first.")).to_be_visible()

    # A reload keeps the history: the browser is recognised by its cookie.
    page.reload()
    expect(page.get_by_text("2 tasks, newest first.")).to_be_visible()

    # So does restarting the app.
    app_server.restart()
    page.goto(app_server.url + "/tasks")
    expect(page.get_by_text("2 tasks, newest first.")).to_be_visible()
    expect(page.get_by_text("Sunrise, Extended Again").first).to_be_visible()


def test_another_browser_is_another_visitor(browser, app_server: AppServer) -> None:
    context = browser.new_context()
    other = context.new_page()
    other.goto(app_server.url + "/tasks")
    expect(other.get_by_text("No tasks yet.")).to_be_visible()
    context.close()


def test_invalid_value_shows_its_message_next_to_the_field(
    page: Page, app_server: AppServer
) -> None:
    page.goto(app_server.url)
    wait_idle(page)
    choose(page, "Model", "V4")
    commit(page, "Title", "x" * 81)
    expect(page.get_by_text("Too long for V4: 81 characters, at most 80.")).to_be_visible()
    commit(page, "Callback URL", "javascript:alert(1)")
    expect(page.get_by_text("must be a web address starting with http")).to_be_visible()
    expect(extend_button(page)).to_be_disabled()


def test_settings_never_shows_a_set_key(page: Page, app_server: AppServer) -> None:
    page.goto(app_server.url + "/settings")
    wait_idle(page)
    page.get_by_role("textbox", name="New API key").fill(CANARY_KEY)
    page.get_by_role("button", name="Save").click()
    wait_idle(page)
    expect(page.get_by_text("An API key is set for this session.")).to_be_visible()
    key_box = page.get_by_role("textbox", name="New API key")
    expect(key_box).to_have_count(1)  # the page before the rerun has gone
    expect(key_box).to_have_value("")
    assert CANARY_KEY not in page.content()
    screenshot(page, "settings")
    page.get_by_role("link", name="Extend").first.click()
    wait_idle(page)
    assert CANARY_KEY not in page.content()
    assert CANARY_KEY not in app_server.log_path.read_text()
