"""The pages under Streamlit's AppTest, against a real sandbox on loopback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import serve
from streamlit.testing.v1 import AppTest

from kie.sandbox import create_app
from studio.sources import source_tracks
from studio.store import TaskStore, open_store

ROOT = Path(__file__).resolve().parent.parent
K = "extend."
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve(create_app(stage_delay_s=0.05)) as base_url:
        yield base_url


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox_url: str) -> str:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    for name in (
        "KIE_API_KEY",
        "KIE_BASE_URL",
        "KIE_PUBLIC_URL",
        "KIE_WEBHOOK_HMAC_KEY",
        "KIE_SANDBOX",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIE_DATABASE_URL", url)
    monkeypatch.setenv("KIE_SANDBOX_URL", sandbox_url)
    return url


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "ui.py"), default_timeout=TIMEOUT_S)
    if page:
        at.switch_page(page)
    return at.run()


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def extend_button(at: AppTest):
    return next(b for b in at.button if b.label == "Extend")


def test_every_page_runs_without_exception(db_url: str) -> None:
    assert any("Sandbox: simulated results" in i.value.replace("*", "") for i in app().info)
    for page in ("pages/tasks.py", "pages/settings.py"):
        at = app(page)
        assert not at.exception, at.exception
        assert at.title[0].value in ("Your tasks", "Settings")


def test_fresh_form_keeps_extend_off_and_says_why(db_url: str) -> None:
    at = app()
    assert extend_button(at).disabled
    assert any("Extend is off until these are fixed" in c for c in captions(at))
    # Untouched blank boxes are not flagged yet.
    assert not any("Required with custom parameters" in c for c in captions(at))


def test_too_long_prompt_for_the_model_shows_next_to_the_field(db_url: str) -> None:
    at = app()
    at.selectbox(key=K + "model").set_value("V4")
    at.text_area(key=K + "prompt").set_value("x" * 3001)
    at.run()
    assert any("Too long for V4: 3001 characters, at most 3000." in c for c in captions(at))
    assert any("3001 / 3000 characters for V4" in c for c in captions(at))
    assert extend_button(at).disabled
    at.selectbox(key=K + "model").set_value("V5")
    at.run()
    assert not any("Too long" in c for c in captions(at))


def test_bad_callback_url_and_weight_are_flagged(db_url: str) -> None:
    at = app()
    at.text_input(key=K + "callBackUrl").set_value("ftp://example.com/cb")
    at.run()
    assert any("must be a web address starting with http" in c for c in captions(at))
    assert extend_button(at).disabled


def test_custom_switch_changes_what_is_required(db_url: str) -> None:
    at = app()
    at.text_input(key=K + "audioId").set_value("my-own-track")
    at.run()
    assert extend_button(at).disabled  # custom parameters need prompt, style, title, start
    at.toggle(key=K + "defaultParamFlag").set_value(False)
    at.run()
    assert not extend_button(at).disabled
    assert at.text_input(key=K + "style").disabled


def _store() -> TaskStore:
    return open_store(os.environ["KIE_DATABASE_URL"])


def test_picking_a_demo_track_fills_the_form_and_bounds_continue_at(db_url: str) -> None:
    at = app()
    demo = next(
        s for s in source_tracks(_store(), "nobody", sandbox=True) if s.title == "Rainy Day Lo-fi"
    )
    at.selectbox(key=K + "source_pick").set_value(demo)
    at.run()
    assert at.text_input(key=K + "audioId").value == "demo-rainy-lofi"
    assert at.selectbox(key=K + "model").value == "V3_5"
    at.number_input(key=K + "continueAt").set_value(50.0)
    at.run()
    assert any("less than the source track's length (42 seconds)" in c for c in captions(at))
    assert extend_button(at).disabled


def submit_valid(at: AppTest, audio_id: str = "demo-sunrise-piano", **extra: object) -> AppTest:
    at.text_input(key=K + "audioId").set_value(audio_id)
    at.selectbox(key=K + "model").set_value("V4_5")
    at.text_area(key=K + "prompt").set_value(str(extra.get("prompt", "A gentle bridge")))
    at.text_input(key=K + "style").set_value("Classical")
    at.text_input(key=K + "title").set_value("Peaceful Piano Extended")
    at.number_input(key=K + "continueAt").set_value(60.0)
    at.run()
    assert not extend_button(at).disabled, captions(at)
    extend_button(at).click()
    return at.run()


def test_valid_submit_records_a_task_and_links_to_it(db_url: str) -> None:
    at = submit_valid(app())
    assert not at.exception
    assert any("Task started" in s.value for s in at.success), [e.value for e in at.error]
    tasks = _all_tasks(db_url)
    assert len(tasks) == 1
    assert tasks[0].request["title"] == "Peaceful Piano Extended"
    assert "***" in tasks[0].request["callBackUrl"]  # the token is not kept
    assert any(link.label == "Open the Tasks page" for link in at.get("page_link"))
    # Everything typed is still there.
    assert at.text_input(key=K + "title").value == "Peaceful Piano Extended"


def _all_tasks(db_url: str):
    import sqlalchemy as sa

    store = open_store(db_url)
    with store.engine.connect() as conn:
        visitors = [
            row[0] for row in conn.execute(sa.text("select distinct visitor_id from tasks"))
        ]
    return [task for visitor in visitors for task in store.list_tasks(visitor, limit=100)]


@pytest.mark.parametrize(
    ("marker", "words"),
    [
        ("sandbox-fail-401", "Kie did not accept the API key"),
        ("sandbox-fail-402", "run out of credits"),
        ("sandbox-fail-429", "Too many requests"),
        ("sandbox-fail-455", "under maintenance"),
        ("sandbox-fail-500", "server error"),
        ("sandbox-fail-430", "unexpected problem"),
    ],
)
def test_each_kie_error_is_shown_in_plain_words(db_url: str, marker: str, words: str) -> None:
    at = submit_valid(app(), audio_id=marker)
    errors = [e.value for e in at.error]
    assert any(words in e for e in errors), errors
    assert not _all_tasks(db_url)
    assert at.text_input(key=K + "audioId").value == marker  # the form keeps what was typed
    if marker.endswith("401"):
        assert any("Settings" in link.label for link in at.get("page_link"))


def test_a_submitted_task_reaches_complete_on_the_tasks_page(db_url: str) -> None:
    at = submit_valid(app())
    time.sleep(0.5)  # the sandbox's stages take 4 x 0.05 s
    at.switch_page("pages/tasks.py")
    at.run()
    refresh = next(b for b in at.button if b.label == "Refresh from Kie")
    refresh.click()
    at.run()
    assert not at.exception
    markdown = " ".join(m.value for m in at.markdown)
    assert "Complete" in markdown
    assert len(at.get("audio")) == 2
    assert [b for b in at.button if b.label == "Extend this track"]


def test_settings_never_shows_a_set_key(db_url: str) -> None:
    secret = "sk-canary-0123456789abcdef"
    at = app("pages/settings.py")
    at.text_input[0].set_value(secret)
    next(b for b in at.button if b.label == "Save").click()
    at.run()
    assert any("An API key is set for this session" in s.value for s in at.success)
    assert secret not in repr(at.main)  # every element and widget value on the page
    at = at.switch_page("pages/extend.py").run().switch_page("pages/settings.py").run()
    assert any("An API key is set for this session" in s.value for s in at.success)
    assert secret not in repr(at.main)


def test_a_json_export_imports_back_into_another_browser(db_url: str) -> None:
    at = submit_valid(app())
    exported = json.dumps(_store().export_records(_all_tasks(db_url)[0].visitor_id))

    other = app("pages/tasks.py")  # a new session: another visitor, empty history
    assert any("No tasks yet" in i.value for i in other.info)
    other.file_uploader(key="tasks.import").set_value(
        ("history.json", exported.encode(), "application/json")
    )
    other.run()
    next(b for b in other.button if b.label == "Import").click()
    other.run()
    assert any("Imported 1, skipped 0" in s.value for s in other.success)
    assert any("Peaceful Piano Extended" in m.value for m in other.markdown)

    other.file_uploader(key="tasks.import").set_value(("bad.json", b"{nope", "application/json"))
    other.run()
    next(b for b in other.button if b.label == "Import").click()
    other.run()
    assert any("not a JSON export" in e.value for e in other.error)
    assert at.text_input(key=K + "title").value == "Peaceful Piano Extended"
