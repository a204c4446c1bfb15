"""Process-wide resources shared by the pages and the server routes."""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from studio.settings import CALLBACK_PATH, SANDBOX_PREFIX, SETTING_NAMES, Settings, host_settings
from studio.store import TaskStore, open_store
from studio.submissions import SubmissionLedger

log = logging.getLogger(__name__)

CALLBACK_TOKEN_NAME = "callback-token"  # noqa: S105 - the name of the secret, not the secret


def host_secrets() -> Mapping[str, Any]:
    """The setting names found in st.secrets (an absent secrets file is no error)."""
    try:
        import streamlit as st

        return {name: st.secrets[name] for name in SETTING_NAMES if name in st.secrets}
    except Exception:  # noqa: BLE001 - st.secrets raises several types for a missing/bad file
        log.debug("No readable st.secrets; using the environment only")
        return {}


def host() -> Settings:
    """The host's settings (environment, then st.secrets, then defaults)."""
    return host_settings(secrets=host_secrets())


def store_for(settings: Settings) -> TaskStore:
    return open_store(settings.database_url)


def callback_token(store: TaskStore) -> str:
    """The secret the generated callBackUrl carries when no HMAC key is set."""
    return store.server_secret(CALLBACK_TOKEN_NAME)


def local_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def sandbox_base_url(port: int) -> str:
    return local_base_url(port) + SANDBOX_PREFIX


def callback_url(settings: Settings, *, port: int, token: str) -> str:
    """The callBackUrl the form fills in: this app's receiver, with its token when the
    receiver has no HMAC key to check instead."""
    base = settings.public_url or f"http://localhost:{port}"
    url = base.rstrip("/") + CALLBACK_PATH
    if not settings.webhook_hmac_key:
        url += "?" + urlencode({"token": token})
    return url


def reachable_from_internet(url: str) -> bool:
    """False for addresses Kie's servers cannot call: localhost, private networks."""
    host_name = (urlsplit(url).hostname or "").lower()
    if not host_name or host_name == "localhost" or host_name.endswith((".local", ".localhost")):
        return False
    try:
        address = ipaddress.ip_address(host_name)
    except ValueError:
        return "." in host_name  # a public-looking DNS name
    return address.is_global


@functools.cache
def _ledger(store: TaskStore) -> SubmissionLedger:
    return SubmissionLedger(store)


def ledger_for(settings: Settings) -> SubmissionLedger:
    """The submission ledger beside the task store (studio/submissions.py)."""
    return _ledger(store_for(settings))
