"""Turning stored task data into words and safe text for the pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from kie.models import CALLBACK_CODES

# Kie keeps generated files for about 14 days; after that the links stop working.
MEDIA_LIFETIME = timedelta(days=14)
STAGE_LABELS = {
    "submitted": "Submitted",
    "text": "Text",
    "first": "First track",
    "complete": "Complete",
    "error": "Failed",
}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$=^&])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
# Some markdown features work on the text *after* parsing, so backslash escapes do not
# stop them: GFM's bare-address links (https://…, www.…, a@b.c) and Streamlit's icon and
# emoji shortcodes (:material/…:, :smile:). An invisible word joiner after every colon,
# after "www" and after "@" does.
_AUTOLINK_START = re.compile(r"(?i)(:|www(?=\.)|@)")
_WORD_JOINER = "\u2060"


def md(text: object, max_chars: int = 300) -> str:
    """Untrusted text made inert for st.markdown: no markup, links (bare addresses
    included), directives or direction overrides; shortened past max_chars."""
    value = _CONTROL.sub("", str(text)).replace("\n", " ")
    if len(value) > max_chars:
        value = value[: max_chars - 1] + "…"
    value = _AUTOLINK_START.sub(lambda m: m.group(0) + _WORD_JOINER, value)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", value)


def stage_chips(stage: str, seen: set[str]) -> str:
    """The task's life as a row of markdown badges: done, current, still to come."""
    order = ["submitted", "text", "first", "error" if stage == "error" else "complete"]
    reached = order.index(stage) if stage in order else 0
    chips = []
    for index, name in enumerate(order):
        label = STAGE_LABELS[name]
        if name == "error":
            chips.append(f":red-badge[:material/error: {label}]")
        elif index < reached or name in seen or (index == reached and stage == "complete"):
            chips.append(f":green-badge[:material/check: {label}]")
        elif index == reached:
            chips.append(f":blue-badge[:material/pending: {label}]")
        else:
            chips.append(f":gray-badge[{label}]")
    return " → ".join(chips)


def explain_error(code: int | str | None, msg: str | None) -> str:
    """A failed task's code and message in plain words."""
    try:
        number = int(code) if code is not None else None
    except (TypeError, ValueError):
        number = None
    meaning = CALLBACK_CODES.get(number) if number is not None else None
    parts = ["The task failed."]
    if meaning:
        parts.append(meaning)
    if code is not None:
        parts.append(f"(code {md(code, 20)})")
    if msg:
        parts.append(f"Kie said: “{md(msg, 300)}”.")
    return " ".join(parts)


def media_expired(since: datetime | None, now: datetime | None = None) -> bool:
    if since is None:
        return False
    now = now or datetime.now(UTC)
    return now - since > MEDIA_LIFETIME


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def duration(seconds: float | None) -> str:
    if not seconds:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"
