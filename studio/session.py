"""What the page scripts share: session-state keys (all named here), the visitor, the
session's settings, the client and the store."""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from kie import KieClient
from kie.client import RetryPolicy
from studio import runtime
from studio.settings import Settings
from studio.store import TaskStore
from studio.submissions import SubmissionLedger
from studio.visitor import VISITOR_COOKIE, new_visitor_id, valid_visitor_id

SANDBOX_URL_ENV = "KIE_SANDBOX_URL"  # where the sandbox lives when not on this server
SANDBOX_KEY = "sandbox-key-not-secret"  # the sandbox takes any non-empty key
CLIENT_TIMEOUT_S = 30
# Seconds a page waits for Kie's answer; tests and slow links may change it.
CLIENT_TIMEOUT_ENV = "KIE_TIMEOUT_S"
# A page waits on these calls, so it gives up sooner than a script would.
PAGE_RETRY = RetryPolicy(max_tries=3, base_delay=0.3)


class Keys:
    """Every st.session_state key the app uses, prefixed by the page that owns it."""

    SETTINGS_OVERRIDES = "settings.overrides"
    VISITOR_FALLBACK = "visitor.fallback"
    EXTEND_PREFIX = "extend."  # + wire field name: the form's widgets
    EXTEND_TOUCHED = "extend.touched"  # fields the person has changed at least once
    EXTEND_SOURCE = "extend.source"  # the chosen source track: id, model, duration, title
    EXTEND_LAST_SENT = "extend.last_sent"  # (fingerprint, time) against double submits
    EXTEND_RESULT = "extend.result"  # what the last submit showed
    EXTEND_CREDITS = "extend.credits"
    EXTEND_CONFIRM_RESEND = "extend.confirm_resend"  # "send it again" after a lost answer
    TASKS_PAGE = "tasks.page"
    TASKS_VIEW = "tasks.view"  # (change marker, rendered views) so reruns reuse them
    TASKS_NOTICE = "tasks.notice"
    GATE_PASSED = "gate.passed"  # this session entered the host's passcode
    GATE_FAILURES = "gate.failures"


def settings() -> Settings:
    """The host's settings with this browser session's edits applied."""
    return runtime.host().for_session(st.session_state.get(Keys.SETTINGS_OVERRIDES, {}))


def visitor_id() -> str:
    """This browser's ID from its cookie (set by the server), else one for this session."""
    cookie = st.context.cookies.get(VISITOR_COOKIE)
    if valid_visitor_id(cookie):
        return str(cookie)
    if Keys.VISITOR_FALLBACK not in st.session_state:
        st.session_state[Keys.VISITOR_FALLBACK] = new_visitor_id()
    return str(st.session_state[Keys.VISITOR_FALLBACK])


def server_port() -> int:
    return int(st.get_option("server.port"))


def store() -> TaskStore:
    return runtime.store_for(settings())


def ledger() -> SubmissionLedger:
    return runtime.ledger_for(settings())


def client_timeout() -> float:
    raw = os.environ.get(CLIENT_TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else CLIENT_TIMEOUT_S
    except ValueError:
        value = CLIENT_TIMEOUT_S
    return value if value > 0 else CLIENT_TIMEOUT_S


@st.cache_resource(max_entries=32, show_spinner=False)
def _client(api_key: str, base_url: str, timeout: float) -> KieClient:
    return KieClient(api_key=api_key, base_url=base_url, timeout=timeout, retry=PAGE_RETRY)


def api_base_url(current: Settings) -> str:
    if current.sandbox:
        return os.environ.get(SANDBOX_URL_ENV) or runtime.sandbox_base_url(server_port())
    return current.base_url


def client() -> KieClient:
    """The client for this session's settings: the sandbox, or Kie with the key."""
    current = settings()
    key = SANDBOX_KEY if current.sandbox else str(current.api_key)
    return _client(key, api_base_url(current), client_timeout())


def callback_url() -> str:
    current = settings()
    return runtime.callback_url(
        current, port=server_port(), token=runtime.callback_token(store())
    )


def callbacks_can_arrive() -> bool:
    """Whether Kie (or the sandbox) can call this app back, or it must poll instead."""
    current = settings()
    return current.sandbox or runtime.reachable_from_internet(callback_url())


def mode_banner() -> None:
    if settings().sandbox:
        st.info("**Sandbox:** simulated results, no credits used.", icon=":material/science:")


def keep_form_values() -> None:
    """Keep the Extend form's values while another page is shown.

    Streamlit drops a widget's value on a run that does not draw the widget; setting the
    key again on every run, whatever the page, keeps it (and lets other pages prefill).
    """
    for key in [k for k in st.session_state if str(k).startswith(Keys.EXTEND_PREFIX)]:
        st.session_state[key] = st.session_state[key]


def set_default(key: str, value: Any) -> None:
    if key not in st.session_state:
        st.session_state[key] = value
