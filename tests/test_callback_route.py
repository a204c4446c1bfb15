"""POST /kie/callback over real HTTP on loopback, storing into a real SQLite file."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from kie.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from studio.callback_route import MAX_BODY_BYTES, CallbackContext, callback_route
from studio.store import TaskStore, callbacks, orphan_callbacks, tasks
from tests.servers import serve

HMAC_KEY = "test-hmac-key"
TOKEN = "test-callback-token"
VISITOR = "visitor-route"
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskStore]:
    path: Path = tmp_path_factory.mktemp("route") / "store.db"
    created = TaskStore(f"sqlite:///{path}")
    yield created
    created.close()


def _serve(context: CallbackContext) -> Iterator[str]:
    app = Starlette(routes=[callback_route(lambda: context)])
    with serve(app) as base_url:
        yield base_url + "/kie/callback"


@pytest.fixture(scope="module")
def signed_url(store: TaskStore) -> Iterator[str]:
    yield from _serve(CallbackContext(store=store, hmac_key=HMAC_KEY, token=TOKEN))


@pytest.fixture(scope="module")
def token_url(store: TaskStore) -> Iterator[str]:
    yield from _serve(CallbackContext(store=store, hmac_key=None, token=TOKEN))


@pytest.fixture
def task_id(store: TaskStore) -> str:
    new_id = f"task-{uuid.uuid4().hex[:12]}"
    store.record_submission(
        task_id=new_id,
        visitor_id=VISITOR,
        request={"model": "V4", "callBackUrl": "https://x.example/cb"},
    )
    return new_id


def body(task_id: str, kind: str = "complete", *, code: int = 200) -> dict[str, Any]:
    return {
        "code": code,
        "msg": "All generated successfully.",
        "data": {
            "callbackType": kind,
            "task_id": task_id,
            "data": [{"id": "trk-1", "audio_url": "https://cdn.example/1.mp3", "extra": 1}],
        },
    }


def counts(store: TaskStore) -> tuple[int, ...]:
    with store.engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (tasks, callbacks, orphan_callbacks)
        )


def post(
    url: str, payload: Any, headers: dict[str, str] | None = None, **kwargs: Any
) -> requests.Response:
    data = json.dumps(payload) if isinstance(payload, (dict, list)) else payload
    return requests.post(
        url, data=data, headers=JSON_HEADERS | (headers or {}), timeout=10, **kwargs
    )


def assert_rejected(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    reason = response.json()["error"]
    assert isinstance(reason, str) and 0 < len(reason) < 200


# --- signed (HMAC) mode ---------------------------------------------------------------------


def test_valid_signature_is_stored(store: TaskStore, signed_url: str, task_id: str) -> None:
    response = post(signed_url, body(task_id), signed_headers(HMAC_KEY, task_id))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "result": "stored"}
    view = store.get_task(task_id)
    assert view.stage == "complete"
    assert view.tracks[0].audio_url == "https://cdn.example/1.mp3"
    with store.engine.connect() as conn:
        verified = conn.execute(
            sa.select(callbacks.c.verified).where(callbacks.c.task_id == task_id)
        ).scalar_one()
    assert verified is True


def test_duplicate_delivery_says_duplicate(signed_url: str, task_id: str) -> None:
    first = post(signed_url, body(task_id, "text"), signed_headers(HMAC_KEY, task_id))
    again = post(signed_url, body(task_id, "text"), signed_headers(HMAC_KEY, task_id))
    assert first.json()["result"] == "stored"
    assert again.json() == {"ok": True, "result": "duplicate"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({TIMESTAMP_HEADER: str(int(time.time()))}, id="no-signature"),
        pytest.param({SIGNATURE_HEADER: "c2lnbmF0dXJl"}, id="no-timestamp"),
        pytest.param("wrong-key", id="wrong-signature"),
        pytest.param("stale", id="stale-timestamp"),
        pytest.param({TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "c2ln"}, id="non-numeric-ts"),
        pytest.param("other-task", id="signed-for-another-task"),
    ],
)
def test_bad_signatures_are_401_and_write_nothing(
    store: TaskStore, signed_url: str, task_id: str, headers: Any
) -> None:
    if headers == "wrong-key":
        headers = signed_headers("not-the-key", task_id)
    elif headers == "stale":
        headers = signed_headers(HMAC_KEY, task_id, int(time.time()) - 301)
    elif headers == "other-task":
        headers = signed_headers(HMAC_KEY, "some-other-task")
    before = counts(store)
    response = post(signed_url, body(task_id), headers)
    assert_rejected(response, 401)
    assert HMAC_KEY not in response.text
    assert counts(store) == before
    assert store.get_task(task_id).stage == "submitted"


def test_signed_mode_ignores_the_token(store: TaskStore, signed_url: str, task_id: str) -> None:
    before = counts(store)
    assert_rejected(post(signed_url + f"?token={TOKEN}", body(task_id)), 401)
    assert counts(store) == before


def test_signed_mode_without_task_id_is_401(store: TaskStore, signed_url: str) -> None:
    before = counts(store)
    assert_rejected(post(signed_url, {"code": 200, "data": {}}), 401)
    assert counts(store) == before


def test_wrong_shape_with_a_valid_signature_is_422(
    store: TaskStore, signed_url: str, task_id: str
) -> None:
    before = counts(store)
    payload = {"code": "not-a-number", "data": {"task_id": task_id}}
    assert_rejected(post(signed_url, payload, signed_headers(HMAC_KEY, task_id)), 422)
    assert counts(store) == before


# --- token mode --------------------------------------------------------------------------------


def test_correct_token_is_stored(store: TaskStore, token_url: str, task_id: str) -> None:
    response = post(
        f"{token_url}?token={TOKEN}",
        body(task_id, "first"),
        {"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "result": "stored"}
    assert store.get_task(task_id).stage == "first"


@pytest.mark.parametrize(
    "query", ["", "?token=", "?token=nope", f"?token={TOKEN}x", f"?other={TOKEN}"]
)
def test_missing_or_wrong_token_is_401(
    store: TaskStore, token_url: str, task_id: str, query: str
) -> None:
    before = counts(store)
    assert_rejected(post(token_url + query, body(task_id)), 401)
    assert counts(store) == before


def test_unknown_task_is_an_orphan_not_shown(store: TaskStore, token_url: str) -> None:
    stranger = f"stranger-{uuid.uuid4().hex[:8]}"
    response = post(f"{token_url}?token={TOKEN}", body(stranger))
    assert response.json() == {"ok": True, "result": "orphan"}
    assert store.get_task(stranger) is None
    assert stranger not in {t.task_id for t in store.list_tasks(VISITOR, limit=1000)}
    assert stranger in {o["task_id"] for o in store.orphans(limit=1000)}


# --- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"", b"\xff\xfe{}", b"[" * 100_000],
    ids=["broken", "empty", "not-utf8", "deeply-nested"],
)
def test_malformed_json_is_400(store: TaskStore, token_url: str, payload: bytes) -> None:
    before = counts(store)
    assert_rejected(post(f"{token_url}?token={TOKEN}", payload), 400)
    assert counts(store) == before


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        '"a json string"',
        {"code": 200, "msg": "x"},
        {"code": 200, "data": {"callbackType": "complete"}},
        {"code": 200, "data": {"callbackType": "complete", "task_id": "t", "data": "tracks?"}},
        {"code": 200, "data": {"callbackType": "complete", "task_id": "t", "data": [{"x": 1}]}},
        {"code": None, "data": {"callbackType": "text", "task_id": "t"}},
    ],
    ids=["list", "string", "no-data", "no-task", "tracks-not-list", "track-no-id", "null-code"],
)
def test_wrong_shape_is_422(store: TaskStore, token_url: str, payload: Any) -> None:
    before = counts(store)
    assert_rejected(post(f"{token_url}?token={TOKEN}", payload), 422)
    assert counts(store) == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", ""]
)
def test_wrong_content_type_is_415(
    store: TaskStore, token_url: str, task_id: str, content_type: str
) -> None:
    before = counts(store)
    response = post(f"{token_url}?token={TOKEN}", body(task_id), {"Content-Type": content_type})
    assert_rejected(response, 415)
    assert counts(store) == before


def test_body_over_256_kib_is_413(store: TaskStore, token_url: str, task_id: str) -> None:
    before = counts(store)
    big = json.dumps(body(task_id) | {"padding": "x" * MAX_BODY_BYTES}).encode()
    assert_rejected(post(f"{token_url}?token={TOKEN}", big), 413)
    assert counts(store) == before


def test_chunked_body_over_256_kib_is_413(store: TaskStore, token_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"padding": "'
        for _ in range(20):
            yield b"x" * 16_384
        yield b'"}'

    before = counts(store)
    assert_rejected(post(f"{token_url}?token={TOKEN}", chunks()), 413)
    assert counts(store) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(token_url: str, method: str) -> None:
    response = requests.request(method, f"{token_url}?token={TOKEN}", timeout=10)
    assert_rejected(response, 405)
    assert response.headers["allow"] == "POST"


def test_head_is_405_too(token_url: str) -> None:
    response = requests.head(token_url, timeout=10)
    assert response.status_code == 405


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_callbackish = st.fixed_dictionaries(
    {"code": st.one_of(st.just(200), st.integers(), _json)},
    optional={
        "msg": _json,
        "data": st.fixed_dictionaries(
            {"task_id": st.one_of(st.text(max_size=6), _json)},
            optional={
                "callbackType": st.one_of(st.sampled_from(["text", "first"]), _json),
                "data": st.one_of(
                    st.lists(
                        st.dictionaries(
                            st.sampled_from(["id", "audio_url", "duration", "createTime"]),
                            _json,
                            max_size=4,
                        ),
                        max_size=2,
                    ),
                    _json,
                ),
            },
        ),
    },
)


@settings(max_examples=60, deadline=None)
@given(payload=st.one_of(_callbackish, _json))
def test_no_input_gets_a_server_error(token_url: str, payload: Any) -> None:
    response = post(f"{token_url}?token={TOKEN}", json.dumps(payload))
    assert response.status_code in (200, 400, 422), response.text
