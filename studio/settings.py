"""Settings: environment variables, then st.secrets (same names), then defaults.

The Settings page may override some of them for one browser session; the host's
values stay the defaults for everyone else. Secrets are never part of a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_BASE_URL = "https://api.kie.ai"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SANDBOX_PREFIX = "/kie-sandbox"
CALLBACK_PATH = "/kie/callback"

# Setting name -> attribute of Settings. The names are a public contract (DESIGN.md).
SETTING_NAMES: dict[str, str] = {
    "KIE_API_KEY": "api_key",
    "KIE_BASE_URL": "base_url",
    "KIE_PUBLIC_URL": "public_url",
    "KIE_WEBHOOK_HMAC_KEY": "webhook_hmac_key",
    "KIE_DATABASE_URL": "database_url",
    "KIE_SANDBOX": "sandbox_forced",
    # Hosting a shared demo (README, "Hosting a shared demo safely").
    "KIE_VISITOR_KEYS": "visitor_keys",
    "KIE_VISITOR_QUOTA": "visitor_quota",
    "KIE_PASSCODE": "passcode",
}
# What a visitor may change for their own browser session on the Settings page.
SESSION_EDITABLE = ("api_key", "base_url", "public_url", "sandbox_forced")
VISITOR_KEY_MODES = ("allowed", "required")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def default_database_url() -> str:
    return f"sqlite:///{DEFAULT_DATA_DIR / 'extend-studio.db'}"


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one browser session (or for the server's routes)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    public_url: str | None = None
    webhook_hmac_key: str | None = field(default=None, repr=False)
    database_url: str = field(default_factory=default_database_url)
    sandbox_forced: bool = False
    visitor_keys: str = "allowed"
    """"required": visitors must bring their own key; the host's key is never used for them."""
    visitor_quota: int | None = None
    """Extends each visitor may send on the host's key (None: no limit)."""
    passcode: str | None = field(default=None, repr=False)
    """When set, a visitor enters it once per browser session before seeing any page."""
    own_key: bool = False
    """True when api_key is the browser session's own (pasted on the Settings page)."""

    @property
    def sandbox(self) -> bool:
        """True when calls go to the embedded sandbox instead of Kie."""
        return self.sandbox_forced or not self.api_key

    @property
    def key_source(self) -> str:
        """Whose key pays for an extend: "sandbox" (nobody), "visitor" or "host"."""
        if self.sandbox:
            return "sandbox"
        return "visitor" if self.own_key else "host"

    def for_session(self, overrides: Mapping[str, Any]) -> Settings:
        """The host's settings as one browser session may use them.

        The host's key only ever goes to the host's base URL (a visitor who points the
        app elsewhere must bring their own key too), and with KIE_VISITOR_KEYS=required
        it is not used for visitors at all: without a key of their own they get the
        sandbox.
        """
        own = isinstance(overrides.get("api_key"), str) and bool(overrides["api_key"].strip())
        base = self
        if not own:
            overrides = {k: v for k, v in overrides.items() if k not in ("api_key", "base_url")}
            if self.visitor_keys == "required":
                base = replace(self, api_key=None)
        return replace(base.with_overrides(overrides), own_key=own)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """These settings with a session's edits applied (only editable ones, non-blank)."""
        changes: dict[str, Any] = {}
        for name in SESSION_EDITABLE:
            if name not in overrides:
                continue
            value = overrides[name]
            if isinstance(value, str):
                value = value.strip() or None
            if name == "sandbox_forced":
                changes[name] = bool(value)
            elif value is not None:
                changes[name] = value
        return replace(self, **changes)


def host_settings(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> Settings:
    """The host's settings: environment first, then secrets, then defaults."""
    environ = os.environ if environ is None else environ
    secrets = secrets or {}
    values: dict[str, Any] = {}
    for name, attr in SETTING_NAMES.items():
        raw = environ.get(name)
        if raw is None or not str(raw).strip():
            raw = secrets.get(name)
        if raw is None or not str(raw).strip():
            continue
        values[attr] = _truthy(raw) if attr == "sandbox_forced" else str(raw).strip()
    if "visitor_keys" in values:
        mode = values["visitor_keys"].lower()
        # An unknown mode fails closed: visitors bring their own key.
        values["visitor_keys"] = mode if mode in VISITOR_KEY_MODES else "required"
    if "visitor_quota" in values:
        raw_quota = values["visitor_quota"]
        # A quota that is not a whole number fails closed: no extends on the host's key.
        values["visitor_quota"] = int(raw_quota) if raw_quota.isdigit() else 0
    if "base_url" in values:
        values["base_url"] = values["base_url"].rstrip("/")
    if "public_url" in values:
        values["public_url"] = values["public_url"].rstrip("/")
    return Settings(**values)


def setting_attrs() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Settings))
