"""Point 2 — the body is untrusted even when signed.

Kie signs task_id.timestamp, not the body: whoever sees one signed delivery can send
any body for that task within the window. So only http(s) URLs are ever stored as
media, and (with the host's Kie access) a `complete` is confirmed against record-info
by the server's reconciler before its tracks count as trusted; record-info wins any
disagreement and the disagreement is logged. The app runs with a key pointed at a fake
Kie (the sandbox on loopback) that sends its own, genuine, signed callbacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from appserver import AppServer, running_app

from tests.reliability.conftest import (
    CALLBACK,
    HMAC_KEY,
    JSON,
    app_log,
    post_signed,
    store_of,
    token_of,
    wait_until,
)
from tests.reliability.fakekie import API_KEY, FakeKie, fake_kie

STAGE_DELAY_S = 1.0  # fake Kie: text at 1 s, first at 2 s, complete at 3 s
VISITOR = "visitor-untrusted"


@pytest.fixture(scope="module")
def kie() -> Iterator[FakeKie]:
    with fake_kie(stage_delay_s=STAGE_DELAY_S, hmac_key=HMAC_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def app(kie: FakeKie, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with running_app(
        tmp_path_factory.mktemp("untrusted-app"),
        KIE_API_KEY=API_KEY,
        KIE_BASE_URL=kie.url,
        KIE_WEBHOOK_HMAC_KEY=HMAC_KEY,
        KIE_RECONCILE_EVERY_S="0.5",
        KIE_RECONCILE_TICK_S="0.2",
    ) as server:
        yield server


def start_task(kie: FakeKie, app: AppServer, **overrides: str) -> str:
    """A task at the fake Kie whose callbacks reach the app, recorded like the Extend page."""
    task_id = kie.extend(app.url + CALLBACK, **overrides)
    store = store_of(app)
    try:
        store.record_submission(
            task_id=task_id, visitor_id=VISITOR, request={"model": "V4", "title": "t"}
        )
    finally:
        store.close()
    return task_id


def forged_complete(kie: FakeKie, task_id: str, *, extra_track: bool = False) -> dict:
    """A `complete` for the task's real track ids (an attacker who saw one delivery
    knows them) with forged media URLs and titles."""
    state = kie.log.app.state.sandbox  # type: ignore[attr-defined]
    tracks = [
        {
            "id": real.id,
            "audio_url": f"https://evil.example/malware-{n}.mp3",
            "stream_audio_url": "https://evil.example/stream.mp3",
            "image_url": "https://evil.example/cover.png",
            "title": "FORGED TITLE",
        }
        for n, real in enumerate(state.task(task_id).tracks)
    ]
    if extra_track:
        tracks.append({"id": "forged-extra", "audio_url": "https://evil.example/2.mp3"})
    return {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": tracks},
    }


def verdict(app: AppServer, task_id: str) -> str:
    store = store_of(app)
    try:
        return store.confirmation(task_id)
    finally:
        store.close()


def view(app: AppServer, task_id: str):  # -> TaskView
    store = store_of(app)
    try:
        return store.get_task(task_id)
    finally:
        store.close()


def test_signed_forged_complete_is_untrusted_until_record_info_overrules_it(
    kie: FakeKie, app: AppServer
) -> None:
    task_id = start_task(kie, app)
    with requests.Session() as http:
        answer = post_signed(http, app, forged_complete(kie, task_id, extra_track=True))
    assert answer.status_code == 200 and answer.json()["result"] == "stored"  # signed: accepted
    early = view(app, task_id)
    assert early.stage == "complete"
    assert verdict(app, task_id) in ("unconfirmed", "pending")  # shown, but not trusted

    wait_until(lambda: verdict(app, task_id) in ("confirmed", "corrected"), timeout=20)
    assert verdict(app, task_id) == "corrected"
    final = view(app, task_id)
    truth = kie.record_info(task_id)["response"]["sunoData"]
    assert [t.id for t in final.tracks] == [t["id"] for t in truth]
    for got, want in zip(final.tracks, truth, strict=True):
        assert got.audio_url == want["audioUrl"]
        assert got.title == want["title"]
        assert got.image_url == want["imageUrl"]
    assert "evil.example" not in json.dumps([t.model_dump() for t in final.tracks])
    assert "FORGED" not in json.dumps([t.model_dump() for t in final.tracks])

    log = app_log(app)
    line = next(line for line in log.splitlines() if "disagrees" in line and task_id in line)
    assert "FORGED TITLE" in line and "forged-extra" in line  # what differed is kept
    assert HMAC_KEY not in log and API_KEY not in log  # and no secret is


def test_genuine_callbacks_are_confirmed_unchanged(kie: FakeKie, app: AppServer) -> None:
    task_id = start_task(kie, app)
    wait_until(lambda: verdict(app, task_id) in ("confirmed", "corrected"), timeout=20)
    assert verdict(app, task_id) == "confirmed"
    final = view(app, task_id)
    assert final.stage == "complete" and len(final.tracks) == 2
    truth = kie.record_info(task_id)["response"]["sunoData"]
    assert [(t.id, t.audio_url) for t in final.tracks] == [(t["id"], t["audioUrl"]) for t in truth]


def test_forged_complete_for_a_failed_task_becomes_the_failure(
    kie: FakeKie, app: AppServer
) -> None:
    """Record-info wins even over the stage: Kie says the task failed, so it failed."""
    task_id = start_task(kie, app, audioId="demo-midnight-drive sandbox-callback-501")
    with requests.Session() as http:
        assert post_signed(http, app, forged_complete(kie, task_id)).status_code == 200
    wait_until(lambda: verdict(app, task_id) == "corrected", timeout=20)
    final = view(app, task_id)
    assert final.stage == "error" and final.tracks == []
    assert final.error_code == "501"


def test_only_http_urls_are_stored_as_media(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Even with a valid token, javascript:, data:, file: and relative URLs never reach
    the store; http(s) ones do."""
    with running_app(tmp_path_factory.mktemp("urls-app"), KIE_RECONCILE="0") as app:
        store = store_of(app)
        store.record_submission(task_id="urls-1", visitor_id=VISITOR, request={})
        token = token_of(app)
        bad = {
            "audio_url": "javascript:alert(document.cookie)",
            "stream_audio_url": "data:audio/wav;base64,AAAA",
            "image_url": "file:///etc/passwd",
            "source_audio_url": "//evil.example/x.mp3",
            "source_image_url": " https://evil.example/leading-space.png",
            "source_stream_audio_url": "https://ok.example/stream.mp3",
        }
        payload = {
            "code": 200,
            "msg": "ok",
            "data": {"callbackType": "complete", "task_id": "urls-1",
                     "data": [{"id": "trk", "title": "x", **bad}]},
        }
        answer = requests.post(app.url + CALLBACK, params={"token": token},
                               data=json.dumps(payload), headers=JSON, timeout=10)
        assert answer.status_code == 200, answer.text
        stored = store.get_task("urls-1").tracks[0]
        store.close()
    assert stored.audio_url is None
    assert stored.stream_audio_url is None
    assert stored.image_url is None
    assert stored.source_audio_url is None
    assert stored.source_image_url is None
    assert stored.source_stream_audio_url == "https://ok.example/stream.mp3"
