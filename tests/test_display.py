"""How stored task data is put into words on the pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from studio import display


def test_stage_chips_mark_done_current_and_coming_stages() -> None:
    chips = display.stage_chips("first", {"submitted", "text", "first"})
    assert ":green-badge[:material/check: Text]" in chips
    assert ":gray-badge[Complete]" in chips
    done = display.stage_chips("complete", {"submitted", "text", "first", "complete"})
    assert done.count(":green-badge") == 4
    failed = display.stage_chips("error", {"submitted", "text"})
    assert ":red-badge[:material/error: Failed]" in failed and "Complete" not in failed


def test_errors_are_explained_with_their_documented_meaning() -> None:
    text = display.explain_error(531, "credits back")
    assert "refunded" in text and "code 531" in text and "credits back" in text
    assert "The task failed." in display.explain_error(None, None)
    assert "code 999" in display.explain_error(999, "odd")  # unknown codes still shown


def test_files_older_than_fourteen_days_are_flagged() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    assert not display.media_expired(now - timedelta(days=13, hours=23), now)
    assert display.media_expired(now - timedelta(days=14, minutes=1), now)
    assert not display.media_expired(None, now)


def test_durations_read_as_minutes_and_seconds() -> None:
    assert display.duration(95.4) == "1:35"
    assert display.duration(None) == "—"


def test_untrusted_text_is_inert_markdown() -> None:
    shown = display.md("**bold** [x](javascript:alert(1)) :red[x] <b>x</b>\u202e\x07")
    for raw in ("**", "[x](", ":red[", "<b>"):
        assert raw not in shown
    assert "\u202e" not in shown and "\x07" not in shown
    assert len(display.md("y" * 1000, max_chars=50)) <= 60
