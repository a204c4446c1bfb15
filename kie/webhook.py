"""Callback bodies and their signatures.

Kie signs `task_id + "." + timestamp` (not the body) with HMAC-SHA256 and sends it
base64-encoded in X-Webhook-Signature, with the Unix time in X-Webhook-Timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kie.errors import WebhookError
from kie.models import CallbackPayload

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
DEFAULT_TOLERANCE_S = 300


class InvalidSignature(WebhookError):
    """The signature or timestamp headers are missing, malformed, wrong or stale."""


class InvalidPayload(WebhookError):
    """The body is not a callback of the documented shape."""


def sign(key: str, task_id: str, timestamp: int | str) -> str:
    """The X-Webhook-Signature value for this task and timestamp."""
    message = f"{task_id}.{timestamp}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(key: str, task_id: str, timestamp: int | None = None) -> dict[str, str]:
    """Both headers a signed callback carries (the sandbox and tests send these)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(key, task_id, ts)}


def verify(
    key: str,
    task_id: str,
    headers: Mapping[str, str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise InvalidSignature unless the headers sign this task freshly with `key`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER.lower())
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    if not signature or not timestamp:
        raise InvalidSignature("Missing signature headers.")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise InvalidSignature("Malformed timestamp.")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise InvalidSignature("Timestamp outside the allowed window.")
    expected = sign(key, task_id, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        raise InvalidSignature("Signature does not match.")


def parse(body: bytes | str | Mapping[str, Any]) -> CallbackPayload:
    """The callback body as a model; InvalidPayload if it is not one."""
    try:
        data = json.loads(body) if isinstance(body, (bytes, str)) else body
        return CallbackPayload.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise InvalidPayload("The body is not a Kie callback.") from exc
