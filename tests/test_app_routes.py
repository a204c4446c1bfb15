"""The routes `streamlit run app.py` serves besides the pages, over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from appserver import AppServer, running_app
from callbacks import CALLBACK, HMAC_KEY, JSON, body, new_task, store_of, token_of
from servers import CallbackRecorder, serve

from kie.webhook import signed_headers


def post(
    server: AppServer, payload: bytes | dict, headers: dict[str, str] | None = None, query: str = ""
) -> requests.Response:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(
        f"{server.url}{CALLBACK}{query}",
        data=data,
        headers={**JSON, **(headers or {})},
        timeout=10,
    )


def test_signed_callback_is_stored(hmac_app: AppServer) -> None:
    store = store_of(hmac_app)
    task_id = new_task(store)
    response = post(hmac_app, body(task_id), signed_headers(HMAC_KEY, task_id))
    assert response.status_code == 200, response.text
    task = store.get_task(task_id)
    assert task is not None and task.stage == "complete"
    assert [t.title for t in task.tracks] == ["Track 1", "Track 2"]


@pytest.mark.parametrize(
    "how",
    ["unsigned", "wrong-signature", "stale-timestamp", "other-task"],
)
def test_unauthenticated_callbacks_get_401_and_change_nothing(
    hmac_app: AppServer, how: str
) -> None:
    store = store_of(hmac_app)
    task_id = new_task(store)
    headers = {
        "unsigned": {},
        "wrong-signature": signed_headers("another-key", task_id),
        "stale-timestamp": signed_headers(HMAC_KEY, task_id, timestamp=int(time.time()) - 301),
        "other-task": signed_headers(HMAC_KEY, "some-other-task"),
    }[how]
    response = post(hmac_app, body(task_id), headers)
    assert response.status_code == 401
    assert "error" in response.json()
    task = store.get_task(task_id)
    assert task is not None and task.stage == "submitted" and not task.tracks


def test_malformed_json_gets_400(hmac_app: AppServer) -> None:
    response = post(hmac_app, b'{"code": 200, "data": ', signed_headers(HMAC_KEY, "x"))
    assert response.status_code == 400


def test_callback_for_an_unknown_task_is_kept_apart(hmac_app: AppServer) -> None:
    task_id = "never-submitted"
    response = post(hmac_app, body(task_id), signed_headers(HMAC_KEY, task_id))
    assert response.status_code == 200
    assert response.json()["result"] == "orphan"
    assert store_of(hmac_app).get_task(task_id) is None


def test_token_mode_requires_the_token(token_app: AppServer) -> None:
    store = store_of(token_app)
    task_id = new_task(store)
    assert post(token_app, body(task_id)).status_code == 401
    assert post(token_app, body(task_id), query="?token=wrong").status_code == 401
    ok = post(token_app, body(task_id), query=f"?token={token_of(token_app)}")
    assert ok.status_code == 200
    assert store.get_task(task_id).stage == "complete"


def test_the_sandbox_is_mounted_with_kies_paths(token_app: AppServer) -> None:
    answer = requests.get(
        f"{token_app.url}/kie-sandbox/api/v1/chat/credit",
        headers={"Authorization": "Bearer anything"},
        timeout=10,
    ).json()
    assert answer["code"] == 200 and isinstance(answer["data"], int)
    unauthorised = requests.get(f"{token_app.url}/kie-sandbox/api/v1/chat/credit", timeout=10)
    assert unauthorised.json()["code"] == 401


def test_a_sandbox_task_calls_the_app_back_end_to_end(token_app: AppServer, tmp_path: Path) -> None:
    store = store_of(token_app)
    token = token_of(token_app)
    request = {
        "defaultParamFlag": False,
        "audioId": "demo-rainy-lofi",
        "model": "V3_5",
        "callBackUrl": f"{token_app.url}/kie/callback?token={token}",
    }
    answer = requests.post(
        f"{token_app.url}/kie-sandbox/api/v1/generate/extend",
        json=request,
        headers={"Authorization": "Bearer anything"},
        timeout=10,
    ).json()
    task_id = answer["data"]["taskId"]
    store.record_submission(task_id=task_id, visitor_id="visitor-abcdefghijklmnop", request=request)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        task = store.get_task(task_id)
        if task and task.stage == "complete":
            break
        time.sleep(0.2)
    assert task is not None and task.stage == "complete"
    assert len(task.tracks) == 2
    assert "***" in task.request["callBackUrl"] and token not in json.dumps(task.request)


def test_a_hosted_copy_serves_sandbox_media_at_its_public_address(tmp_path: Path) -> None:
    public = "https://studio.example.com"
    with running_app(tmp_path, KIE_PUBLIC_URL=public) as app:
        auth = {"Authorization": "Bearer anything"}
        request = {
            "defaultParamFlag": False,
            "audioId": "demo-rainy-lofi",
            "model": "V3_5",
            "callBackUrl": f"{public}/kie/callback",
        }
        answer = requests.post(
            f"{app.url}/kie-sandbox/api/v1/generate/extend", json=request, headers=auth, timeout=10
        ).json()
        task_id = answer["data"]["taskId"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = requests.get(
                f"{app.url}/kie-sandbox/api/v1/generate/record-info",
                params={"taskId": task_id},
                headers=auth,
                timeout=10,
            ).json()
            tracks = (info["data"].get("response") or {}).get("sunoData") or []
            if tracks and tracks[0].get("audioUrl"):
                break
            time.sleep(0.2)
        assert tracks and tracks[0]["audioUrl"].startswith(f"{public}/kie-sandbox/media/")
        assert tracks[0]["imageUrl"].startswith(f"{public}/kie-sandbox/media/")


def test_the_built_in_sandbox_calls_back_only_this_apps_receiver(token_app: AppServer) -> None:
    # A hosted demo's sandbox must not be usable to make the server POST anywhere.
    recorder = CallbackRecorder()
    with serve(recorder.app) as elsewhere:
        request = {
            "defaultParamFlag": False,
            "audioId": "demo-rainy-lofi",
            "model": "V3_5",
            "callBackUrl": f"{elsewhere}/callback",
        }
        auth = {"Authorization": "Bearer anything"}
        answer = requests.post(
            f"{token_app.url}/kie-sandbox/api/v1/generate/extend",
            json=request,
            headers=auth,
            timeout=10,
        ).json()
        task_id = answer["data"]["taskId"]
        deadline = time.monotonic() + 20
        status = ""
        while time.monotonic() < deadline and status != "SUCCESS":
            info = requests.get(
                f"{token_app.url}/kie-sandbox/api/v1/generate/record-info",
                params={"taskId": task_id},
                headers=auth,
                timeout=10,
            ).json()
            status = info["data"]["status"]
            time.sleep(0.2)
        time.sleep(0.5)
        assert status == "SUCCESS"  # the task itself still runs its course
        assert recorder.for_task(task_id) == []
