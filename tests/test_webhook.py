"""Signed callbacks (kie.webhook): base64(HMAC-SHA256(key, task_id + "." + timestamp))."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kie.errors import WebhookError
from kie.models import CallbackPayload
from kie.webhook import (
    DEFAULT_TOLERANCE_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidPayload,
    InvalidSignature,
    parse,
    sign,
    signed_headers,
    verify,
)

KEY = "whsec_test_key"
TASK_ID = "2fac****9f72"
TS = 1_735_689_600  # 2025-01-01T00:00:00Z


def reference_signature(key: str, task_id: str, timestamp: int | str) -> str:
    """The README's formula, computed here without kie.webhook."""
    message = (task_id + "." + str(timestamp)).encode("utf-8")
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def headers_at(ts: int = TS, *, key: str = KEY, task_id: str = TASK_ID) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: reference_signature(key, task_id, ts)}


# --- sign ---------------------------------------------------------------------------


def test_header_names_and_default_tolerance() -> None:
    assert SIGNATURE_HEADER == "X-Webhook-Signature"
    assert TIMESTAMP_HEADER == "X-Webhook-Timestamp"
    assert DEFAULT_TOLERANCE_S == 300


def test_known_answer_vector() -> None:
    expected = base64.b64encode(
        hmac.new(b"whsec_test_key", b"2fac****9f72.1735689600", hashlib.sha256).digest()
    ).decode()
    assert sign(KEY, TASK_ID, TS) == expected
    assert sign(KEY, TASK_ID, str(TS)) == expected
    assert expected == reference_signature(KEY, TASK_ID, TS)
    assert len(base64.b64decode(expected)) == 32


def test_pinned_known_answer() -> None:
    # Computed once with Python's hmac/hashlib/base64 for this key and message.
    assert sign(KEY, TASK_ID, TS) == "Dx9wRgCXN5FWAlF8QPTqXGRWIMkmLQW/UqpL30VLZh0="


@pytest.mark.parametrize(
    ("key", "task_id", "ts"),
    [("k", "t", 0), ("ключ", "задача", 1), ("", "x", 99), ("k", "a.b.c", 1700000000)],
)
def test_sign_matches_reference(key: str, task_id: str, ts: int) -> None:
    assert sign(key, task_id, ts) == reference_signature(key, task_id, ts)


# --- signed_headers / verify ------------------------------------------------------------


def test_signed_headers_verify() -> None:
    headers = signed_headers(KEY, TASK_ID, TS)
    assert headers == headers_at(TS)
    verify(KEY, TASK_ID, headers, now=TS)


def test_signed_headers_default_to_now() -> None:
    before = int(time.time())
    headers = signed_headers(KEY, TASK_ID)
    assert before <= int(headers[TIMESTAMP_HEADER]) <= int(time.time())
    verify(KEY, TASK_ID, headers)  # real clock


def test_reference_headers_verify() -> None:
    verify(KEY, TASK_ID, headers_at(TS), now=TS + 5)


def test_wrong_task_id_fails() -> None:
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID + "x", headers_at(TS), now=TS)
    with pytest.raises(InvalidSignature):
        verify(KEY, "other-task", headers_at(TS), now=TS)


def test_wrong_key_fails() -> None:
    with pytest.raises(InvalidSignature):
        verify("another-key", TASK_ID, headers_at(TS), now=TS)
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers_at(TS, key=KEY + "!"), now=TS)


def test_changed_timestamp_fails() -> None:
    headers = headers_at(TS)
    headers[TIMESTAMP_HEADER] = str(TS + 1)  # still fresh, but not what was signed
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers, now=TS)


def test_flipped_signature_byte_fails() -> None:
    headers = headers_at(TS)
    raw = bytearray(base64.b64decode(headers[SIGNATURE_HEADER]))
    raw[0] ^= 0x01
    headers[SIGNATURE_HEADER] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers, now=TS)


def test_hex_signature_is_not_accepted() -> None:
    headers = headers_at(TS)
    headers[SIGNATURE_HEADER] = hmac.new(
        KEY.encode(), f"{TASK_ID}.{TS}".encode(), hashlib.sha256
    ).hexdigest()
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers, now=TS)


def test_stale_timestamp_fails_with_real_clock() -> None:
    stale = signed_headers(KEY, TASK_ID, int(time.time()) - (DEFAULT_TOLERANCE_S + 1))
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, stale)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (0, True),
        (299, True),
        (300, True),
        (301, False),
        (-300, True),
        (-301, False),
        (3600, False),
        (-3600, False),
    ],
)
def test_tolerance_edges_past_and_future(offset: int, ok: bool) -> None:
    # offset > 0: the callback was signed in the past; < 0: its clock is ahead of ours.
    headers = headers_at(TS)
    if ok:
        verify(KEY, TASK_ID, headers, now=TS + offset)
    else:
        with pytest.raises(InvalidSignature):
            verify(KEY, TASK_ID, headers, now=TS + offset)


def test_custom_tolerance() -> None:
    verify(KEY, TASK_ID, headers_at(TS), now=TS + 10, tolerance_s=10)
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers_at(TS), now=TS + 11, tolerance_s=10)


def test_fractional_now_at_edge() -> None:
    verify(KEY, TASK_ID, headers_at(TS), now=TS + 300.0)
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers_at(TS), now=TS + 300.5)


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_missing_header_fails(missing: str) -> None:
    headers = headers_at(TS)
    del headers[missing]
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers, now=TS)


@pytest.mark.parametrize("empty", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_empty_header_fails(empty: str) -> None:
    headers = headers_at(TS)
    headers[empty] = ""
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers, now=TS)


def test_no_headers_fails() -> None:
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, {}, now=TS)


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "1735689600.0",
        "1.7e9",
        "-1735689600",
        " 1735689600",
        "1735689600 ",
        "0x67748580",
        "１７３５６８９６００",
        "17356896OO",
        "9" * 30,
    ],
)
def test_non_numeric_timestamp_fails(timestamp: str) -> None:
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: reference_signature(KEY, TASK_ID, timestamp),
    }
    with pytest.raises(InvalidSignature):
        verify(KEY, TASK_ID, headers, now=TS)


@pytest.mark.parametrize(
    "transform",
    [str.lower, str.upper, lambda name: name.swapcase(), lambda name: name],
    ids=["lower", "upper", "swapcase", "as-documented"],
)
def test_header_names_case_insensitive(transform: Any) -> None:
    headers = {transform(name): value for name, value in headers_at(TS).items()}
    verify(KEY, TASK_ID, headers, now=TS)


def test_invalid_signature_is_a_webhook_error() -> None:
    assert issubclass(InvalidSignature, WebhookError)
    assert issubclass(InvalidPayload, WebhookError)
    with pytest.raises(WebhookError):
        verify(KEY, TASK_ID, {}, now=TS)


# --- property: any single-character change fails ----------------------------------------------

PARTS = ("signature", "task_id", "timestamp")


@settings(max_examples=200, deadline=None)
@given(
    part=st.sampled_from(PARTS),
    position=st.integers(min_value=0, max_value=200),
    replacement=st.characters(),
    key=st.text(min_size=1, max_size=20),
    task_id=st.text(min_size=1, max_size=30),
)
def test_property_single_character_change_fails(
    part: str, position: int, replacement: str, key: str, task_id: str
) -> None:
    headers = signed_headers(key, task_id, TS)
    verify(key, task_id, headers, now=TS)  # the unchanged request passes

    if part == "signature":
        original = headers[SIGNATURE_HEADER]
    elif part == "task_id":
        original = task_id
    else:
        original = headers[TIMESTAMP_HEADER]
    index = position % len(original)
    if replacement == original[index]:
        replacement = "A" if original[index] != "A" else "B"
    changed = original[:index] + replacement + original[index + 1 :]
    assert changed != original

    received_task = task_id
    if part == "signature":
        headers = {**headers, SIGNATURE_HEADER: changed}
    elif part == "task_id":
        received_task = changed
    else:
        headers = {**headers, TIMESTAMP_HEADER: changed}
    with pytest.raises(InvalidSignature):
        verify(key, received_task, headers, now=TS)


# --- parse ------------------------------------------------------------------------------------

DOCUMENTED_BODY: dict[str, Any] = {
    "code": 200,
    "msg": "All generated successfully.",
    "data": {
        "callbackType": "complete",
        "task_id": "2fac****9f72",
        "data": [
            {
                "id": "8551****662c",
                "audio_url": "https://example.cn/****.mp3",
                "source_audio_url": "https://example.cn/****.mp3",
                "stream_audio_url": "https://example.cn/****",
                "source_stream_audio_url": "https://example.cn/****",
                "image_url": "https://example.cn/****.jpeg",
                "source_image_url": "https://example.cn/****.jpeg",
                "prompt": "[Verse] Night city lights",
                "model_name": "chirp-v3-5",
                "title": "Iron Man",
                "tags": "electrifying, rock",
                "createTime": "2025-01-01 00:00:00",
                "duration": 198.44,
            }
        ],
    },
}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(DOCUMENTED_BODY).encode(),
        json.dumps(DOCUMENTED_BODY),
        DOCUMENTED_BODY,
        json.dumps(DOCUMENTED_BODY, ensure_ascii=False).encode("utf-8"),
    ],
    ids=["bytes", "str", "mapping", "utf8-bytes"],
)
def test_parse_documented_body(body: Any) -> None:
    payload = parse(body)
    assert isinstance(payload, CallbackPayload)
    assert payload.code == 200
    assert payload.data.callback_type == "complete"
    assert payload.data.task_id == "2fac****9f72"
    assert payload.data.tracks[0].audio_url == "https://example.cn/****.mp3"


def test_parse_then_verify_with_body_task_id() -> None:
    payload = parse(json.dumps(DOCUMENTED_BODY))
    headers = signed_headers(KEY, payload.data.task_id, TS)
    verify(KEY, payload.data.task_id, headers, now=TS)


def test_parse_error_callback() -> None:
    body = {
        "code": 501,
        "msg": "Audio generation failed",
        "data": {"callbackType": "error", "task_id": "t", "data": None},
    }
    payload = parse(json.dumps(body))
    assert payload.data.callback_type == "error"
    assert payload.data.tracks == []


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"\xff\xfe\x00", "{'code': 200}", '{"code": 200,}'],
)
def test_parse_bad_json(body: Any) -> None:
    with pytest.raises(InvalidPayload):
        parse(body)


@pytest.mark.parametrize(
    "body",
    [
        "null",
        "[]",
        "42",
        '"complete"',
        "{}",
        json.dumps({"code": 200, "msg": "ok"}),
        json.dumps({"code": 200, "data": []}),
        json.dumps({"code": 200, "data": {"callbackType": "complete"}}),
        json.dumps({"code": "two hundred", "data": DOCUMENTED_BODY["data"]}),
        json.dumps({**DOCUMENTED_BODY, "data": {**DOCUMENTED_BODY["data"], "data": {}}}),
        json.dumps({**DOCUMENTED_BODY, "data": {**DOCUMENTED_BODY["data"], "data": [1]}}),
        [DOCUMENTED_BODY],
    ],
)
def test_parse_wrong_shape(body: Any) -> None:
    with pytest.raises(InvalidPayload):
        parse(body)
