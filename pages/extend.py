"""Extend: the form for one Extend Music request, checked live, field by field."""

import hashlib
import json
import time
from datetime import UTC, datetime

import streamlit as st

from kie.errors import AuthenticationError, KieError, OutcomeUnknownError, RateLimitError
from kie.models import (
    FIELD_LABELS,
    MODEL_LIMITS,
    MODEL_NAMES,
    ExtendRequest,
    field_errors,
)
from studio import display, hosting, session, snippets
from studio.session import Keys
from studio.sources import SourceTrack, source_tracks
from studio.submissions import QuotaExceeded

hosting.require_gate()  # defence in depth: ui.py shows the gate first

K = Keys.EXTEND_PREFIX
DOUBLE_SUBMIT_WINDOW_S = 10
CUSTOM_ONLY = ("style", "title", "continueAt", "personaId")
GENDERS = {"": "No preference", "m": "Male", "f": "Female"}

DEFAULTS = {
    "defaultParamFlag": True,
    "audioId": "",
    "model": "V4_5",
    "prompt": "",
    "style": "",
    "title": "",
    "continueAt": None,
    "negativeTags": "",
    "vocalGender": "",
    "styleWeight": None,
    "weirdnessConstraint": None,
    "audioWeight": None,
    "personaId": "",
}

for name, default in DEFAULTS.items():
    session.set_default(K + name, default)
session.set_default(K + "callBackUrl", session.callback_url())

visitor = session.visitor_id()
store = session.store()
ledger = session.ledger()
current = session.settings()
source: SourceTrack | None = st.session_state.get(Keys.EXTEND_SOURCE)


def form_values() -> dict:
    """The request as the form stands, by wire name; custom-only fields left out when
    the source track's parameters are inherited."""
    values = {name: st.session_state[K + name] for name in [*DEFAULTS, "callBackUrl"]}
    if not values["defaultParamFlag"]:
        for name in CUSTOM_ONLY:
            values.pop(name)
    return values


def use_source() -> None:
    chosen = st.session_state[K + "source_pick"]
    st.session_state[Keys.EXTEND_SOURCE] = chosen
    if chosen is not None:
        st.session_state[K + "audioId"] = chosen.audio_id
        if chosen.model in MODEL_NAMES:
            st.session_state[K + "model"] = chosen.model


def note(field: str, problems: dict[str, str]) -> None:
    """The field's problem, right under it (a blank field only once it was touched)."""
    blank = st.session_state.get(K + field) in ("", None)
    if field in problems and (not blank or field in touched):
        st.caption(f":red[:material/error: {problems[field]}]")  # the model's own words


def counter(field: str, model: str) -> None:
    limit = getattr(MODEL_LIMITS[model], field)
    length = len(st.session_state[K + field] or "")
    colour = "red" if length > limit else "gray"
    st.caption(f":{colour}[{length} / {limit} characters for {model}]")


st.title("Extend a track")
st.write(
    "Continue an existing track from a point you choose. Every field is checked as you "
    "go; nothing is sent until you press **Extend**."
)

credits = st.session_state.get(Keys.EXTEND_CREDITS)
if credits is None:
    try:
        credits = session.client().get_credits()
    except KieError as exc:
        credits = exc
    st.session_state[Keys.EXTEND_CREDITS] = credits
if isinstance(credits, KieError):
    st.caption(f":material/toll: Credits: unavailable. {display.md(credits.message, 600)}")
else:
    st.caption(f":material/toll: Credits left: **{credits}**")

quota_left = hosting.quota_left(visitor)
if quota_left is not None:
    st.caption(f":material/confirmation_number: This demo lets each visitor send "
               f"{current.visitor_quota} extends on the host's key: **{quota_left} left**. "
               "With your own key (Settings) there is no limit.")
if current.visitor_keys == "required" and not current.own_key:
    st.caption(":material/key: To use Kie, paste your own API key on the Settings page; "
               "until then this demo runs on the sandbox.")

sources = source_tracks(store, visitor, sandbox=current.sandbox)
st.selectbox(
    "Extend from a track in history",
    [None, *sources],
    index=([None, *sources].index(source) if source in sources else 0),
    format_func=lambda s: "Type an Audio ID below" if s is None else s.label,
    key=K + "source_pick",
    on_change=use_source,
    help="Finished tracks from your history (and the sandbox's demo tracks). Picking one "
    "fills in its Audio ID and model, and bounds Continue at by its length.",
)

st.toggle(
    "Custom parameters (your own prompt, style, title and start point)",
    key=K + "defaultParamFlag",
    help="On: the extension uses what you write here. Off: it inherits the source "
    "track's parameters and only needs the Audio ID.",
)
custom = st.session_state[K + "defaultParamFlag"]
model = st.session_state[K + "model"]
values = form_values()
# The source's length and model bound the request only while its Audio ID is the one typed.
matching = source if source and source.audio_id == values["audioId"] else None
source_facts = {
    "source_duration": matching.duration if matching else None,
    "source_model": matching.model if matching else None,
}
problems = field_errors(values, **source_facts)
# A fresh form does not shout "required" at every box: only at boxes someone has used.
touched: set[str] = st.session_state.setdefault(Keys.EXTEND_TOUCHED, set())
touched.update(name for name in DEFAULTS if st.session_state[K + name] != DEFAULTS[name])

left, right = st.columns(2)
with left:
    st.text_input(FIELD_LABELS["audioId"], key=K + "audioId", placeholder="e231…8cadc7dc")
    note("audioId", problems)
    st.selectbox(
        FIELD_LABELS["model"],
        MODEL_NAMES,
        key=K + "model",
        help="Must be the model the source track was made with.",
    )
    note("model", problems)
with right:
    bound = f" (source: {matching.duration:g} s)" if matching and matching.duration else ""
    st.number_input(
        FIELD_LABELS["continueAt"] + bound,
        key=K + "continueAt",
        min_value=0.0,
        step=1.0,
        format="%.1f",
        disabled=not custom,
        placeholder="e.g. 60" if custom else "Inherited from the source track",
    )
    note("continueAt", problems)
    st.text_input(
        FIELD_LABELS["title"],
        key=K + "title",
        disabled=not custom,
        placeholder="" if custom else "Inherited from the source track",
    )
    if custom:
        counter("title", model)
    note("title", problems)

st.text_area(
    FIELD_LABELS["prompt"] + ("" if custom else " (optional)"),
    key=K + "prompt",
    height=120,
    placeholder="How should the music continue? e.g. a gentle bridge with soft strings",
)
counter("prompt", model)
note("prompt", problems)
st.text_input(
    FIELD_LABELS["style"],
    key=K + "style",
    disabled=not custom,
    placeholder="e.g. Classical, lo-fi piano" if custom else "Inherited from the source track",
)
if custom:
    counter("style", model)
note("style", problems)

with st.expander("More options: negative tags, vocals, weights, persona"):
    st.text_input(FIELD_LABELS["negativeTags"], key=K + "negativeTags",
                  placeholder="e.g. Heavy Metal, Upbeat Drums")
    note("negativeTags", problems)
    st.selectbox(FIELD_LABELS["vocalGender"], list(GENDERS), key=K + "vocalGender",
                 format_func=GENDERS.get,
                 help="Raises the odds of this voice; not a guarantee.")
    note("vocalGender", problems)
    weight_columns = st.columns(3)
    for column, field in zip(
        weight_columns, ("styleWeight", "weirdnessConstraint", "audioWeight"), strict=True
    ):
        with column:
            st.number_input(FIELD_LABELS[field], key=K + field, min_value=0.0, max_value=1.0,
                            step=0.01, format="%.2f", placeholder="0 to 1")
            note(field, problems)
    st.text_input(FIELD_LABELS["personaId"], key=K + "personaId", disabled=not custom,
                  placeholder="Only with custom parameters")
    note("personaId", problems)

st.text_input(
    FIELD_LABELS["callBackUrl"],
    key=K + "callBackUrl",
    help="Where Kie reports progress. It defaults to this app's own receiver.",
)
note("callBackUrl", problems)
if not problems.get("callBackUrl") and not session.callbacks_can_arrive():
    st.warning(
        "Kie cannot reach this callback address from the internet (it is local or "
        "private), so the app will ask Kie for progress itself instead.",
        icon=":material/wifi_off:",
    )

if problems:
    names = ", ".join(FIELD_LABELS.get(f, f) for f in problems)
    st.caption(f":material/block: Extend is off until these are fixed: {names}.")

# A request whose answer was lost is never sent again by the app; the person may, once
# they have checked that Kie did not start it.
wire = None if problems else ExtendRequest.model_validate(values, context=source_facts).to_wire()
fingerprint = (
    hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest() if wire else None
)
unresolved = ledger.unknown(visitor, fingerprint) if fingerprint else []
confirmed = True
if unresolved:
    st.warning(
        f"You sent this same request at {display.when(unresolved[0].sent_at)} and its "
        "answer was lost, so Kie may already be working on it (and may have charged for "
        "it). Look for it in your Kie dashboard (kie.ai, Logs) before sending it again.",
        icon=":material/help:",
    )
    confirmed = st.checkbox("I checked: Kie did not start it. Send it again.",
                            key=Keys.EXTEND_CONFIRM_RESEND)
pressed = st.button("Extend", type="primary", disabled=bool(problems) or not confirmed,
                    icon=":material/send:")


def send(request: ExtendRequest, wire: dict, fingerprint: str) -> tuple:
    """Send the request once, noting it in the ledger first; returns what to show."""
    try:
        row = ledger.reserve(
            visitor_id=visitor,
            key_source=current.key_source,
            fingerprint=fingerprint,
            request=wire,
            quota=current.visitor_quota if current.key_source == "host" else None,
        )
    except QuotaExceeded as exc:
        return ("quota", exc.quota)
    st.session_state[Keys.EXTEND_LAST_SENT] = (fingerprint, time.monotonic())
    sent_at = datetime.now(UTC)
    # No Streamlit call between sending and recording: nothing can interrupt the run there.
    try:
        task_id = session.client().extend(request)
    except OutcomeUnknownError as exc:
        ledger.settle(row, "unknown", detail=exc.message)
        return ("unknown", (exc, sent_at))
    except KieError as exc:
        ledger.settle(row, "refused", detail=exc.message)
        return ("error", exc)
    store.record_submission(task_id=task_id, visitor_id=visitor, request=wire)
    ledger.settle(row, "started", task_id=task_id)
    return ("ok", task_id)


if pressed and wire and fingerprint and confirmed:
    last = st.session_state.get(Keys.EXTEND_LAST_SENT)
    recent = bool(last and last[0] == fingerprint
                  and time.monotonic() - last[1] < DOUBLE_SUBMIT_WINDOW_S)
    if unresolved:  # confirmed: the person checked that the lost ones never started
        for lost in unresolved:
            ledger.dismiss(visitor, lost.id)
        recent = False
    if recent:
        previous = st.session_state.get(Keys.EXTEND_RESULT)
        if not previous or previous[0] != "duplicate":
            st.session_state[Keys.EXTEND_RESULT] = ("duplicate", previous)
    else:
        with st.spinner("Sending to Kie…"):
            outcome = send(ExtendRequest.model_validate(values, context=source_facts),
                           wire, fingerprint)
        st.session_state[Keys.EXTEND_RESULT] = outcome
        st.session_state.pop(Keys.EXTEND_CONFIRM_RESEND, None)
        st.session_state.pop(Keys.EXTEND_CREDITS, None)  # refreshed on the next run
    st.rerun()


def show_result(kind: str, detail) -> None:
    if kind == "ok":
        st.success(f"Task started: {display.md(detail, 200)}. Its progress shows on the "
                   "Tasks page.", icon=":material/check_circle:")
        st.page_link("pages/tasks.py", label="Open the Tasks page", icon=":material/queue_music:")
    elif kind == "duplicate":
        st.info("That exact request was sent a moment ago, so it was not sent again.",
                icon=":material/content_copy:")
        if detail:
            show_result(*detail)
    elif kind == "quota":
        st.warning(f"This demo allows {detail} extends per visitor on the host's key, and "
                   "you have used them all. Paste your own Kie key on the Settings page to "
                   "go on.", icon=":material/block:")
        st.page_link("pages/settings.py", label="Open Settings", icon=":material/settings:")
    elif kind == "unknown":
        exc, sent_at = detail
        st.warning(
            f"{display.md(exc.message, 800)} Sent at {display.when(sent_at)}. The app will "
            "not send it again by itself; the Tasks page keeps this notice.",
            icon=":material/help:",
        )
    else:
        wait = getattr(detail, "retry_after", None)
        later = (f" Kie asks to wait {wait:g} s."
                 if isinstance(detail, RateLimitError) and wait else "")
        st.error(display.md(detail.message, 800) + later, icon=":material/error:")
        if isinstance(detail, AuthenticationError):
            st.page_link("pages/settings.py", label="Check the API key in Settings",
                         icon=":material/settings:")


result = st.session_state.get(Keys.EXTEND_RESULT)
if result:
    show_result(*result)

if wire:
    base = session.api_base_url(current)
    with st.expander("Copy this request as curl or Python (the key is left out)"):
        st.code(snippets.as_curl(base, wire), language="bash")
        st.code(snippets.as_python(base, wire), language="python")
