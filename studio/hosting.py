"""Hosting a shared demo: the passcode gate and the per-visitor quota, as pages use them.

The settings behind them (KIE_PASSCODE, KIE_VISITOR_QUOTA, KIE_VISITOR_KEYS) are the
host's alone: a visitor cannot override them from the Settings page.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import streamlit as st

from studio import runtime
from studio.session import Keys, settings

GATE_SLOWDOWN_AFTER = 3  # wrong passcodes in one session before each try waits
GATE_MAX_WAIT_S = 5.0


def passcode_matches(given: str, expected: str) -> bool:
    """Constant-time: digests of equal length, compared with hmac.compare_digest."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


def gate_open() -> bool:
    """Whether this browser session may see the pages (no passcode set, or entered)."""
    return not runtime.host().passcode or bool(st.session_state.get(Keys.GATE_PASSED))


def gate_page() -> None:
    """The only page a session sees until it enters the host's passcode."""
    st.title("Extend Studio")
    st.write("This demo is private. Enter the passcode its host gave you.")
    with st.form("gate.form", clear_on_submit=True):
        given = st.text_input("Passcode", type="password")
        entered = st.form_submit_button("Enter", type="primary", icon=":material/lock_open:")
    if not entered:
        return
    expected = runtime.host().passcode or ""
    if passcode_matches(given, expected):
        st.session_state[Keys.GATE_PASSED] = True
        st.session_state.pop(Keys.GATE_FAILURES, None)
        st.rerun()
    failures = int(st.session_state.get(Keys.GATE_FAILURES, 0)) + 1
    st.session_state[Keys.GATE_FAILURES] = failures
    if failures > GATE_SLOWDOWN_AFTER:  # guessing gets slower
        time.sleep(min(GATE_MAX_WAIT_S, failures - GATE_SLOWDOWN_AFTER))
    st.error("That passcode is not right.", icon=":material/lock:")


def quota_left(visitor_id: str) -> int | None:
    """Extends this visitor may still send on the host's key (None: no limit applies)."""
    current = settings()
    if current.visitor_quota is None or current.key_source != "host":
        return None
    return max(0, current.visitor_quota - runtime.ledger_for(current).used(visitor_id))


def require_gate() -> None:
    """Stop a page script for a session that has not entered the passcode (should a page
    ever run without ui.py's gate, e.g. Streamlit's fallback navigation after an error)."""
    if not gate_open():
        st.stop()
