"""Point 1 — authenticate, over real HTTP against the running app.

The Standard Webhooks test cases (standard-webhooks/libraries: missing id / timestamp /
signature, invalid timestamp, invalid signature, valid signature, old and new
timestamps, the known-answer vector), ported to Kie's scheme: the message id is the
body's data.task_id, the signature is base64(HMAC-SHA256(key, task_id + "." + ts)) in
X-Webhook-Signature, the timestamp in X-Webhook-Timestamp. Then tolerance edges ±1 s on
both sides, byte-flip properties (hypothesis) of signature, task id and timestamp, the
token mode, and a check that both comparisons are constant-time. Every refusal must be
401 and leave every table of the database unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from appserver import AppServer, running_app
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kie.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.reliability.conftest import (
    CALLBACK,
    HMAC_KEY,
    JSON,
    body,
    new_task,
    row_counts,
    store_of,
    token_of,
)

# The Standard Webhooks known-answer inputs (their test suite's defaults).
SW_SECRET = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_PAYLOAD = '{"test": 2432232314}'
SW_EXPECTED = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="  # theirs: id.ts.payload
KIE_EXPECTED = "ORZn4NL6QLtKcWmEnXss+Jfmy9viDxs+yGTp5EpNuEw="  # Kie's: task_id.ts
TOLERANCE_S = 300
PROPERTY_EXAMPLES = 150


def reference_sign(key: str | bytes, message: str) -> str:
    """An implementation independent of kie.webhook."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hmac.new(raw, message.encode(), hashlib.sha256).digest()).decode()


def kie_headers(task_id: str, ts: int | str, key: str = HMAC_KEY) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: reference_sign(key, f"{task_id}.{ts}")}


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def task(hmac_app: AppServer) -> str:
    store = store_of(hmac_app)
    try:
        return new_task(store, prefix="auth")
    finally:
        store.close()


def send(
    http: requests.Session, app: AppServer, payload: Any, headers: dict[str, str], query: str = ""
) -> requests.Response:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http.post(app.url + CALLBACK + query, data=data, headers=JSON | headers, timeout=10)


def refused(
    http: requests.Session, app: AppServer, payload: Any, headers: dict[str, str], query: str = ""
) -> requests.Response:
    """Send; assert 401 with nothing written anywhere."""
    before = row_counts(app)
    response = send(http, app, payload, headers, query)
    assert response.status_code == 401, response.text
    assert row_counts(app) == before
    return response


# --- the known-answer vector ------------------------------------------------------------


def test_reference_signer_reproduces_the_standard_webhooks_vector() -> None:
    # Proves the test's own signer is right before trusting it against the app.
    key = base64.b64decode(SW_SECRET)
    assert reference_sign(key, f"{SW_MSG_ID}.{SW_TIMESTAMP}.{SW_PAYLOAD}") == SW_EXPECTED


def test_known_answer_vector_pinned() -> None:
    from kie.webhook import sign

    assert reference_sign(SW_SECRET, f"{SW_MSG_ID}.{SW_TIMESTAMP}") == KIE_EXPECTED
    assert sign(SW_SECRET, SW_MSG_ID, SW_TIMESTAMP) == KIE_EXPECTED


def test_known_answer_vector_over_http_and_configurable_tolerance(
    tmp_path_factory: pytest.TempPathFactory, http: requests.Session
) -> None:
    """The pinned 2021 vector is accepted by an app whose window is widened
    (KIE_WEBHOOK_TOLERANCE_S), and refused as stale by the default 300 s window."""
    wide = str(10**10)
    with running_app(
        tmp_path_factory.mktemp("kat-app"),
        KIE_WEBHOOK_HMAC_KEY=SW_SECRET,
        KIE_WEBHOOK_TOLERANCE_S=wide,
        KIE_RECONCILE="0",
    ) as app:
        store = store_of(app)
        store.record_submission(task_id=SW_MSG_ID, visitor_id="v", request={"model": "V4"})
        store.close()
        headers = {TIMESTAMP_HEADER: str(SW_TIMESTAMP), SIGNATURE_HEADER: KIE_EXPECTED}
        ok = send(http, app, body(SW_MSG_ID, "text"), headers)
        assert ok.status_code == 200, ok.text
        assert ok.json()["result"] == "stored"
        flipped = KIE_EXPECTED[:5] + ("A" if KIE_EXPECTED[5] != "A" else "B") + KIE_EXPECTED[6:]
        refused(http, app, body(SW_MSG_ID, "first"), headers | {SIGNATURE_HEADER: flipped})


# --- Standard Webhooks cases, each over HTTP ------------------------------------------------


def test_valid_signature_is_accepted(
    http: requests.Session, hmac_app: AppServer, task: str
) -> None:
    response = send(http, hmac_app, body(task, "text"), kie_headers(task, int(time.time())))
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True


def test_missing_id_is_refused(http: requests.Session, hmac_app: AppServer, task: str) -> None:
    payload = body(task, "first")
    del payload["data"]["task_id"]
    refused(http, hmac_app, payload, kie_headers(task, int(time.time())))


def test_missing_timestamp_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str
) -> None:
    headers = kie_headers(task, int(time.time()))
    del headers[TIMESTAMP_HEADER]
    refused(http, hmac_app, body(task, "first"), headers)


def test_missing_signature_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str
) -> None:
    headers = kie_headers(task, int(time.time()))
    del headers[SIGNATURE_HEADER]
    refused(http, hmac_app, body(task, "first"), headers)


def test_no_headers_at_all_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str
) -> None:
    refused(http, hmac_app, body(task, "first"), {})


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "abc",
        "1e9",
        "-1",
        "+1700000000",
        "1700000000.5",
        "0x6553f100",
        "17 00000000",
        "١٧٠٠٠٠٠٠٠٠",
        "99999999999999999999",
    ],
)
def test_invalid_timestamp_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str, timestamp: str
) -> None:
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: reference_sign(HMAC_KEY, f"{task}.{timestamp}"),
    }
    # as UTF-8 bytes: requests would refuse to latin-1-encode the Arabic digits
    headers = {k: v.encode("utf-8") for k, v in headers.items()}
    refused(http, hmac_app, body(task, "first"), headers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "v1,ORZn4NL6QLtKcWmEnXss+Jfmy9viDxs+yGTp5EpNuEw=",  # a Standard Webhooks-style value
        "not base64 at all",
        "c2lnbmF0dXJl",
        "wrong-key",
        "hex",
        "other-task",
        "truncated",
        "doubled",
    ],
)
def test_invalid_signature_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str, signature: str
) -> None:
    ts = int(time.time())
    good = reference_sign(HMAC_KEY, f"{task}.{ts}")
    value = {
        "wrong-key": reference_sign("not-the-key", f"{task}.{ts}"),
        "hex": hmac.new(HMAC_KEY.encode(), f"{task}.{ts}".encode(), hashlib.sha256).hexdigest(),
        "other-task": reference_sign(HMAC_KEY, f"other-{task}.{ts}"),
        "truncated": good[:-4],
        "doubled": good + good,
    }.get(signature, signature)
    refused(
        http, hmac_app, body(task, "first"), {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: value}
    )


def test_old_timestamp_is_refused(http: requests.Session, hmac_app: AppServer, task: str) -> None:
    refused(http, hmac_app, body(task, "first"), kie_headers(task, int(time.time()) - 3600))


def test_new_timestamp_is_refused(http: requests.Session, hmac_app: AppServer, task: str) -> None:
    refused(http, hmac_app, body(task, "first"), kie_headers(task, int(time.time()) + 3600))


@pytest.mark.parametrize("side", ["past", "future"])
def test_tolerance_edges_one_second_either_side(
    http: requests.Session, hmac_app: AppServer, side: str
) -> None:
    """300 - 1 s is accepted and 300 + 1 s refused, on both sides of now. The rounding
    keeps each case on its side for any request that takes under a second."""
    store = store_of(hmac_app)
    inside_task, outside_task = new_task(store, prefix="edge"), new_task(store, prefix="edge")
    store.close()
    now = time.time()
    if side == "past":
        inside, outside = math.ceil(now) - (TOLERANCE_S - 1), math.floor(now) - (TOLERANCE_S + 1)
    else:
        inside, outside = math.floor(now) + (TOLERANCE_S - 1), math.ceil(now) + (TOLERANCE_S + 1)
    refused(http, hmac_app, body(outside_task, "text"), kie_headers(outside_task, outside))
    ok = send(http, hmac_app, body(inside_task, "text"), kie_headers(inside_task, inside))
    assert ok.status_code == 200, ok.text


def test_the_signature_does_not_cover_the_body_so_a_replay_is_only_as_good_as_the_window(
    http: requests.Session, hmac_app: AppServer, task: str
) -> None:
    """Documents Kie's scheme: the same (task, timestamp) signature validates another
    body for that task. Point 2 (test_untrusted_body.py) is the defence."""
    ts = int(time.time())
    headers = kie_headers(task, ts)
    assert send(http, hmac_app, body(task, "text"), headers).status_code == 200
    assert send(http, hmac_app, body(task, "first"), headers).status_code == 200


# --- byte-flip properties -------------------------------------------------------------------


def _flip(text: str, index: int, bit: int) -> str:
    raw = bytearray(text.encode("latin-1"))
    raw[index % len(raw)] ^= 1 << bit
    return raw.decode("latin-1")


def _sendable(value: str) -> bool:
    """Whether an HTTP client can put this in a header at all (no CR/LF/NUL, no leading
    whitespace): other values never reach a server, so they are not cases."""
    return bool(value) and not value[0].isspace() and not any(c in value for c in "\r\n\x00")


PROP = settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)


@PROP
@given(index=st.integers(0, 10_000), bit=st.integers(0, 6))
def test_any_flipped_bit_of_the_signature_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str, index: int, bit: int
) -> None:
    ts = int(time.time())
    signature = _flip(reference_sign(HMAC_KEY, f"{task}.{ts}"), index, bit)
    assume(_sendable(signature))
    headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature.encode("latin-1")}
    response = send(http, hmac_app, body(task, "first"), headers)  # type: ignore[arg-type]
    assert response.status_code in (400, 401), response.text  # 400: a header no HTTP parser takes
    assert response.status_code != 200


@PROP
@given(index=st.integers(0, 10_000), bit=st.integers(0, 6))
def test_any_flipped_bit_of_the_task_id_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str, index: int, bit: int
) -> None:
    """Signed for `task`, delivered for a task id one bit away: refused, nothing written."""
    ts = int(time.time())
    forged = _flip(task, index, bit)
    before = row_counts(hmac_app)
    response = send(http, hmac_app, body(forged, "first"), kie_headers(task, ts))
    assert response.status_code == 401, response.text
    assert row_counts(hmac_app) == before


@PROP
@given(index=st.integers(0, 10_000), bit=st.integers(0, 6))
def test_any_flipped_bit_of_the_timestamp_is_refused(
    http: requests.Session, hmac_app: AppServer, task: str, index: int, bit: int
) -> None:
    ts = str(int(time.time()))
    signature = reference_sign(HMAC_KEY, f"{task}.{ts}")
    flipped = _flip(ts, index, bit)
    assume(_sendable(flipped))
    headers = {TIMESTAMP_HEADER: flipped.encode("latin-1"), SIGNATURE_HEADER: signature}
    response = send(http, hmac_app, body(task, "first"), headers)  # type: ignore[arg-type]
    assert response.status_code in (400, 401), response.text


# --- token mode (no HMAC key) ------------------------------------------------------------------


def test_token_mode_requires_the_exact_token(http: requests.Session, token_app: AppServer) -> None:
    token = token_of(token_app)
    assert len(token) >= 32
    store = store_of(token_app)
    task = new_task(store, prefix="tok")
    store.close()
    signed = kie_headers(task, int(time.time()))  # a signature is no substitute in this mode
    for query in (
        "",
        "?token=",
        "?token=wrong",
        f"?token={token[:-1]}",
        f"?token={token}x",
        f"?token={token.upper() if token != token.upper() else token.lower()}",
        f"?Token={token}",
    ):
        refused(http, token_app, body(task, "text"), signed, query)
    ok = send(http, token_app, body(task, "text"), {}, f"?token={token}")
    assert ok.status_code == 200, ok.text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(index=st.integers(0, 1000), bit=st.integers(0, 6))
def test_any_flipped_bit_of_the_token_is_refused(
    http: requests.Session, token_app: AppServer, index: int, bit: int
) -> None:
    token = token_of(token_app)
    forged = _flip(token, index, bit)
    response = http.post(
        token_app.url + CALLBACK,
        params={"token": forged},
        data=json.dumps(body("tok-unknown", "text")),
        headers=JSON,
        timeout=10,
    )
    assert response.status_code == 401, response.text


# --- constant time ------------------------------------------------------------------------------


def test_both_comparisons_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature and the token are compared with hmac.compare_digest (a timing test
    on loopback would be noise; this fails if either compare becomes `==`)."""
    from starlette.requests import Request

    import kie.webhook
    import studio.callback_route
    from kie.webhook import InvalidSignature, verify

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(kie.webhook.hmac, "compare_digest", spy)
    ts = int(time.time())
    verify(HMAC_KEY, "t", kie_headers("t", ts))
    with pytest.raises(InvalidSignature):
        verify(HMAC_KEY, "t", kie_headers("t", ts, key="other"))
    assert len(calls) == 2

    calls.clear()
    context = studio.callback_route.CallbackContext(store=None, hmac_key=None, token="s3cret")  # type: ignore[arg-type]

    request = Request({"type": "http", "query_string": b"token=s3creX", "headers": []})
    with pytest.raises(studio.callback_route._Rejected):
        studio.callback_route._authenticate(context, request, {})
    assert calls and calls[-1] == (b"s3creX", b"s3cret")
