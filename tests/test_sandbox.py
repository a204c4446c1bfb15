"""The sandbox over real HTTP on loopback: paths, envelope, task life, callbacks, media."""

from __future__ import annotations

import io
import json
import struct
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests
from servers import CallbackRecorder, serve
from starlette.applications import Starlette
from starlette.routing import Mount

from kie import webhook
from kie.errors import MaintenanceError, RateLimitError
from kie.models import STAGES, ExtendRequest, TaskInfo
from kie.sandbox import DEMO_TRACKS, FAILURE_MARKERS, create_app
from kie.sandbox.media import MediaCache, parse_range
from kie.sandbox.tasks import REQUEST_FAILURES

DELAY = 0.05
HMAC_KEY = "test-webhook-key"
KEY = {"Authorization": "Bearer sandbox-test-key"}
EXTEND = "/api/v1/generate/extend"
RECORD = "/api/v1/generate/record-info"
CREDIT = "/api/v1/chat/credit"
DEMOS = "/api/v1/sandbox/demo-tracks"
SUCCESS_ORDER = ["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS"]
SNAKE_TRACK_FIELDS = {
    "id",
    "audio_url",
    "source_audio_url",
    "stream_audio_url",
    "source_stream_audio_url",
    "image_url",
    "source_image_url",
    "prompt",
    "model_name",
    "title",
    "tags",
    "createTime",
    "duration",
}


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[CallbackRecorder, str]]:
    rec = CallbackRecorder()
    with serve(rec.app) as url:
        yield rec, url + "/callback"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Starlette, str]]:
    """The sandbox mounted under /kie-sandbox, as Extend Studio mounts it."""
    app = create_app(stage_delay_s=DELAY, hmac_key=HMAC_KEY, credits=10_000)
    outer = Starlette(routes=[Mount("/kie-sandbox", app=app)])
    with serve(outer) as url:
        yield app, url + "/kie-sandbox"


def body_for(callback_url: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "defaultParamFlag": True,
        "audioId": "demo-sunrise-piano",
        "model": "V4_5",
        "callBackUrl": callback_url,
        "prompt": "Let the melody rise into a bright chorus",
        "style": "gentle piano, hopeful",
        "title": "Sunrise Piano Extended",
        "continueAt": 30,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def post_extend(base: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = requests.post(base + EXTEND, json=body, headers=KEY if headers is None else headers)
    assert answer.status_code == 200
    return answer.json()


def start_task(base: str, body: dict[str, Any]) -> str:
    envelope = post_extend(base, body)
    assert envelope["code"] == 200, envelope
    task_id = envelope["data"]["taskId"]
    assert isinstance(task_id, str)
    int(task_id, 16)  # hex
    return task_id


def record_info(base: str, task_id: str) -> dict[str, Any]:
    answer = requests.get(base + RECORD, params={"taskId": task_id}, headers=KEY)
    assert answer.status_code == 200
    return answer.json()


def wait_status(base: str, task_id: str, final: set[str], timeout: float = 5.0) -> list[str]:
    """Every distinct status seen, in order, until one in `final`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = record_info(base, task_id)["data"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in final:
            return seen
        time.sleep(DELAY / 5)
    raise AssertionError(f"task {task_id} stuck; statuses seen: {seen}")


def credits(base: str) -> int:
    envelope = requests.get(base + CREDIT, headers=KEY).json()
    assert envelope["code"] == 200
    return envelope["data"]


# --- the documented life of a task --------------------------------------------------------


def test_callbacks_arrive_in_order_signed_and_record_info_agrees(sandbox, recorder):
    _, base = sandbox
    rec, callback_url = recorder
    body = body_for(callback_url)
    before = credits(base)
    task_id = start_task(base, body)
    assert credits(base) == before - 12

    calls = rec.wait_for(3, task_id)
    payloads = [call.json() for call in calls]
    assert [p["data"]["callbackType"] for p in payloads] == ["text", "first", "complete"]
    for call, payload in zip(calls, payloads, strict=True):
        assert payload["code"] == 200 and payload["msg"]
        assert payload["data"]["task_id"] == task_id
        assert call.headers["content-type"] == "application/json"
        webhook.verify(HMAC_KEY, task_id, call.headers)  # raises when wrong or stale
        webhook.parse(call.body)  # the app's own parser accepts it
    with pytest.raises(webhook.InvalidSignature):
        webhook.verify("another-key", task_id, calls[0].headers)

    text, first, complete = (p["data"]["data"] for p in payloads)
    assert text == []
    assert len(first) == 2
    assert all(t["stream_audio_url"] and t["audio_url"] == "" for t in first)
    assert len(complete) == 2
    for track in complete:
        assert set(track) >= SNAKE_TRACK_FIELDS
        assert all(track[name] not in (None, "") for name in SNAKE_TRACK_FIELDS)
        assert track["model_name"] == "chirp-v4-5"
        assert track["title"] == body["title"]
        assert track["tags"] == body["style"]
        assert track["prompt"] == body["prompt"]
        assert track["duration"] > body["continueAt"]
        assert track["audio_url"].startswith(base + "/media/")
    assert [t["id"] for t in first] == [t["id"] for t in complete]
    assert complete[0]["id"] != complete[1]["id"]

    envelope = record_info(base, task_id)
    assert envelope["code"] == 200
    data = envelope["data"]
    assert data["status"] == "SUCCESS"
    assert data["taskId"] == task_id
    assert data["type"] == "EXTEND"
    assert data["parentMusicId"] == "demo-sunrise-piano"
    assert isinstance(data["param"], str) and json.loads(data["param"]) == body
    assert data["errorCode"] is None and data["errorMessage"] is None
    assert data["response"]["taskId"] == task_id
    suno = data["response"]["sunoData"]
    assert [(t["id"], t["title"]) for t in suno] == [(t["id"], t["title"]) for t in complete]
    assert [t["audioUrl"] for t in suno] == [t["audio_url"] for t in complete]
    assert {"streamAudioUrl", "imageUrl", "modelName", "createTime", "duration"} <= set(suno[0])
    info = TaskInfo.model_validate(data)
    assert info.stage == "complete" and len(info.tracks) == 2


def test_record_info_walks_the_documented_statuses(sandbox, recorder):
    _, base = sandbox
    task_id = start_task(base, body_for(recorder[1]))
    seen = wait_status(base, task_id, {"SUCCESS"})
    assert seen[0] == "PENDING" and seen[-1] == "SUCCESS"
    assert seen == sorted(seen, key=SUCCESS_ORDER.index)  # never goes back
    stages = [TaskInfo.model_validate({"taskId": task_id, "status": s}).stage for s in seen]
    assert stages == sorted(stages, key=STAGES.index)


def test_first_stage_tracks_stream_before_their_final_audio():
    app = create_app(stage_delay_s=0.4)
    with serve(app) as base:
        task_id = start_task(base, body_for("http://127.0.0.1:9/unreachable"))
        wait_status(base, task_id, {"FIRST_SUCCESS"}, timeout=3)
        data = record_info(base, task_id)["data"]
        if data["status"] == "FIRST_SUCCESS":  # not already past it on a slow machine
            tracks = data["response"]["sunoData"]
            assert len(tracks) == 2
            assert all(t["streamAudioUrl"] and t["audioUrl"] == "" for t in tracks)
            audio = requests.get(tracks[0]["streamAudioUrl"])
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"


def test_a_failing_callback_receiver_never_stops_the_task():
    failing = CallbackRecorder(status=500)
    app = create_app(stage_delay_s=DELAY, callback_timeout_s=2)
    with serve(failing.app) as receiver, serve(app) as base:
        broken = start_task(base, body_for(receiver + "/callback"))
        unreachable = start_task(base, body_for("http://127.0.0.1:9/nobody-listens"))
        assert [c.json()["data"]["callbackType"] for c in failing.wait_for(3, broken)] == [
            "text",
            "first",
            "complete",
        ]
        for task_id in (broken, unreachable):
            assert wait_status(base, task_id, {"SUCCESS"})[-1] == "SUCCESS"
        state = app.state.sandbox
        deadline = time.monotonic() + 5
        while len(state.task(unreachable).deliveries) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [kind for kind, _ in state.task(unreachable).deliveries] == [
            "text",
            "first",
            "complete",
        ]
        assert all(outcome.startswith("error") for _, outcome in state.task(unreachable).deliveries)
        assert all(outcome == "HTTP 500" for _, outcome in state.task(broken).deliveries)


def test_a_slow_receiver_does_not_hold_up_the_sandbox():
    slow = CallbackRecorder(delay_s=0.5)
    app = create_app(stage_delay_s=DELAY)
    with serve(slow.app) as receiver, serve(app) as base:
        task_id = start_task(base, body_for(receiver + "/callback"))
        started = time.monotonic()
        assert wait_status(base, task_id, {"SUCCESS"})[-1] == "SUCCESS"
        assert time.monotonic() - started < 0.5  # record-info did not wait for callbacks
        assert len(slow.for_task(task_id)) == 1  # the text callback is still being answered
        kinds = [c.json()["data"]["callbackType"] for c in slow.wait_for(3, task_id, timeout=5)]
        assert kinds == ["text", "first", "complete"]  # still in order, one after another


def test_unsigned_without_hmac_key(recorder):
    rec, callback_url = recorder
    with serve(create_app(stage_delay_s=DELAY)) as base:
        task_id = start_task(base, body_for(callback_url))
        for call in rec.wait_for(3, task_id):
            assert webhook.SIGNATURE_HEADER.lower() not in call.headers


# --- media -------------------------------------------------------------------------------


def finished_tracks(base: str, callback_url: str, **overrides: Any) -> list[dict[str, Any]]:
    task_id = start_task(base, body_for(callback_url, **overrides))
    wait_status(base, task_id, {"SUCCESS"})
    return record_info(base, task_id)["data"]["response"]["sunoData"]


def decode_wav(data: bytes) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """(channels, sample width, frame rate, frames) and the samples in -1..1."""
    with wave.open(io.BytesIO(data)) as reader:
        frames = reader.readframes(reader.getnframes())
        params = reader.getparams()
    samples = np.frombuffer(frames, dtype="<i2") / 32768.0
    return (params.nchannels, params.sampwidth, params.framerate, params.nframes), samples


def test_served_audio_is_real_music_with_range_support(sandbox, recorder):
    _, base = sandbox
    tracks = finished_tracks(base, recorder[1])
    bodies = []
    for track in tracks:
        answer = requests.get(track["audioUrl"])
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "audio/wav"
        assert int(answer.headers["content-length"]) == len(answer.content)
        assert answer.headers["accept-ranges"] == "bytes"
        (channels, width, rate, frames), samples = decode_wav(answer.content)
        assert (channels, width, rate) == (1, 2, 22050)
        assert frames > 0 and len(samples) == frames
        assert 8 <= frames / rate <= 12.5
        rms = float(np.sqrt(np.mean(samples**2)))
        assert rms > 0.03, rms  # not silent
        assert np.max(np.abs(samples)) < 0.99  # not clipped
        power = np.abs(np.fft.rfft(samples)) ** 2 + 1e-12
        flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
        assert flatness < 0.05, flatness  # tonal, not noise (white noise is about 0.56)
        bodies.append(answer.content)
    assert bodies[0] != bodies[1]  # two variants
    assert requests.get(tracks[0]["audioUrl"]).content == bodies[0]  # deterministic

    full = bodies[0]
    url = tracks[0]["audioUrl"]
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=1000-": (1000, len(full) - 1),
        "bytes=-50": (len(full) - 50, len(full) - 1),
        f"bytes=10-{len(full) * 2}": (10, len(full) - 1),
    }
    for header, (start, end) in cases.items():
        part = requests.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(full)}"
        assert part.content == full[start : end + 1]
        assert int(part.headers["content-length"]) == end - start + 1
    beyond = requests.get(url, headers={"Range": f"bytes={len(full)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(full)}"


def test_cover_is_a_png_of_the_declared_size(sandbox, recorder):
    _, base = sandbox
    track = finished_tracks(base, recorder[1])[0]
    answer = requests.get(track["imageUrl"])
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    png = answer.content
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert (width, height, depth, colour) == (256, 256, 8, 2)
    assert png.endswith(b"IEND\xaeB`\x82")


def test_unknown_media_is_404(sandbox):
    _, base = sandbox
    answer = requests.get(base + "/media/no-such-track.wav")
    assert answer.status_code == 404
    assert answer.json()["code"] == 404


def test_demo_tracks_are_listed_with_absolute_playable_urls(sandbox):
    _, base = sandbox
    envelope = requests.get(base + DEMOS).json()
    assert envelope["code"] == 200
    demos = envelope["data"]
    assert [d["id"] for d in demos] == [t.id for t in DEMO_TRACKS]
    assert "demo-sunrise-piano" in {d["id"] for d in demos}
    for demo in demos:
        assert {"id", "title", "model", "duration", "audioUrl", "imageUrl"} <= set(demo)
        assert 30 <= demo["duration"] <= 120
        assert demo["audioUrl"] == f"{base}/media/{demo['id']}.wav"  # prefix included
        assert demo["imageUrl"] == f"{base}/media/{demo['id']}.png"
    audio = requests.get(demos[0]["audioUrl"])
    (_, _, _, frames), samples = decode_wav(audio.content)
    assert frames > 0 and float(np.sqrt(np.mean(samples**2))) > 0.03


def test_public_base_url_is_used_for_links():
    app = create_app(stage_delay_s=0, public_base_url="https://studio.example.com/kie-sandbox/")
    with serve(app) as base:
        demos = requests.get(base + DEMOS).json()["data"]
        assert demos[0]["audioUrl"].startswith("https://studio.example.com/kie-sandbox/media/")
        task_id = start_task(base, body_for("http://127.0.0.1:9/cb"))
        track = record_info(base, task_id)["data"]["response"]["sunoData"][0]
        assert track["imageUrl"].startswith("https://studio.example.com/kie-sandbox/media/")


# --- auth, validation, credits -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}]
)
def test_401_without_a_bearer_key(sandbox, headers):
    _, base = sandbox
    assert post_extend(base, body_for("http://127.0.0.1:9/cb"), headers=headers)["code"] == 401
    for path in (RECORD + "?taskId=abc", CREDIT):
        answer = requests.get(base + path, headers=headers)
        assert answer.status_code == 200 and answer.json()["code"] == 401


def test_422_names_the_problem_fields(sandbox):
    _, base = sandbox
    before = credits(base)
    body = body_for("not a url", title=None, style=None, model="V9", styleWeight=1.5)
    envelope = post_extend(base, body)
    assert envelope["code"] == 422
    assert envelope["data"] is None
    for field in ("title", "style", "model", "callBackUrl", "styleWeight"):
        assert field in envelope["msg"], (field, envelope["msg"])
    assert "Style weight" in envelope["msg"]
    for bad in ("not json", "[1, 2]"):
        answer = requests.post(
            base + EXTEND, data=bad, headers={**KEY, "Content-Type": "application/json"}
        )
        assert answer.json()["code"] == 422
    assert credits(base) == before  # nothing charged


def test_continue_at_must_be_inside_a_known_source(sandbox, recorder):
    _, base = sandbox
    demo = post_extend(base, body_for(recorder[1], continueAt=96))  # the demo lasts 96 s
    assert demo["code"] == 422 and "continueAt" in demo["msg"] and "96" in demo["msg"]

    generated = finished_tracks(base, recorder[1])[0]
    too_far = body_for(recorder[1], audioId=generated["id"], continueAt=generated["duration"] + 1)
    envelope = post_extend(base, too_far)
    assert envelope["code"] == 422 and "continueAt" in envelope["msg"]
    inside = body_for(recorder[1], audioId=generated["id"], continueAt=generated["duration"] - 1)
    assert post_extend(base, inside)["code"] == 200

    unknown = body_for(recorder[1], audioId="someone-elses-track", model="V5")
    assert post_extend(base, {**unknown, "continueAt": 239})["code"] == 200  # assumed 240 s
    assert post_extend(base, {**unknown, "continueAt": 240})["code"] == 422


def test_model_must_match_a_known_source(sandbox, recorder):
    _, base = sandbox
    envelope = post_extend(base, body_for(recorder[1], model="V3_5"))
    assert envelope["code"] == 422 and "model" in envelope["msg"] and "V4_5" in envelope["msg"]


def test_inherited_parameters_need_only_the_audio_id(sandbox, recorder):
    _, base = sandbox
    body = {
        "defaultParamFlag": False,
        "audioId": "demo-rainy-lofi",
        "model": "V3_5",
        "callBackUrl": recorder[1],
    }
    task_id = start_task(base, body)
    wait_status(base, task_id, {"SUCCESS"})
    tracks = record_info(base, task_id)["data"]["response"]["sunoData"]
    assert tracks[0]["title"] == "Rainy Day Lo-fi"
    assert tracks[0]["modelName"] == "chirp-v3-5"
    assert tracks[0]["duration"] > 42


def test_credits_run_out_with_402():
    with serve(create_app(stage_delay_s=DELAY, credits=20)) as base:
        assert credits(base) == 20
        start_task(base, body_for("http://127.0.0.1:9/cb"))
        assert credits(base) == 8
        envelope = post_extend(base, body_for("http://127.0.0.1:9/cb"))
        assert envelope["code"] == 402 and envelope["msg"]
        assert credits(base) == 8


def test_concurrent_extends_get_unique_ids_and_exact_charges():
    app = create_app(stage_delay_s=DELAY, credits=12 * 30)
    with serve(app) as base:
        body = body_for("http://127.0.0.1:9/cb")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post_extend(base, body), range(40)))
        ok = [a["data"]["taskId"] for a in answers if a["code"] == 200]
        assert len(ok) == 30 and len(set(ok)) == 30
        assert sum(a["code"] == 402 for a in answers) == 10
        assert credits(base) == 0


def test_task_memory_is_bounded():
    app = create_app(stage_delay_s=0, max_tasks=3)
    with serve(app) as base:
        ids = [start_task(base, body_for("http://127.0.0.1:9/cb")) for _ in range(5)]
        assert app.state.sandbox.task_count() == 3
        assert record_info(base, ids[0])["code"] == 404
        assert record_info(base, ids[-1])["code"] == 200


def test_unknown_task_is_404(sandbox):
    _, base = sandbox
    assert record_info(base, "0123abcd")["code"] == 404
    answer = requests.get(base + RECORD, headers=KEY)
    assert answer.json()["code"] == 422  # no taskId at all


def test_unknown_path_answers_the_envelope(sandbox):
    _, base = sandbox
    answer = requests.get(base + "/api/v1/nope", headers=KEY)
    assert answer.status_code == 404 and answer.json()["code"] == 404


# --- provoked failures ---------------------------------------------------------------------


def test_failure_markers_are_documented():
    import kie.sandbox

    for marker, _ in FAILURE_MARKERS:
        assert marker in (kie.sandbox.__doc__ or "")


@pytest.mark.parametrize("code", [*sorted(REQUEST_FAILURES), 430])
def test_provoked_request_failures_answer_their_code(sandbox, code):
    _, base = sandbox
    before = credits(base)
    answer = requests.post(
        base + EXTEND,
        json=body_for("http://127.0.0.1:9/cb", audioId=f"sandbox-fail-{code}"),
        headers=KEY,
    )
    envelope = answer.json()
    assert envelope["code"] == code and envelope["msg"]
    if code == 429:
        assert answer.headers["retry-after"] == "1"
    by_prompt = post_extend(base, body_for("x", prompt=f"please SANDBOX-FAIL-{code} now"))
    assert by_prompt["code"] == code
    assert credits(base) == before


@pytest.mark.parametrize(
    ("code", "status"),
    [(400, "SENSITIVE_WORD_ERROR"), (501, "GENERATE_AUDIO_FAILED"), (531, "GENERATE_AUDIO_FAILED")],
)
def test_provoked_callback_failures(sandbox, recorder, code, status):
    _, base = sandbox
    rec, callback_url = recorder
    before = credits(base)
    task_id = start_task(base, body_for(callback_url, prompt=f"a song sandbox-callback-{code}"))
    assert credits(base) == before - 12
    calls = rec.wait_for(2, task_id)
    payloads = [c.json() for c in calls]
    assert [p["data"]["callbackType"] for p in payloads] == ["text", "error"]
    error = payloads[1]
    assert error["code"] == code and error["msg"] and error["data"]["data"] == []
    webhook.verify(HMAC_KEY, task_id, calls[1].headers)
    assert webhook.parse(calls[1].body).code == code
    seen = wait_status(base, task_id, {status})
    assert seen[-1] == status
    data = record_info(base, task_id)["data"]
    assert data["errorCode"] == code and data["errorMessage"]
    assert data["response"]["sunoData"] == []
    assert TaskInfo.model_validate(data).stage == "error"
    time.sleep(DELAY * 2)
    assert rec.for_task(task_id)[2:] == []  # nothing after the error
    assert credits(base) == (before if code == 531 else before - 12)  # 531 refunds


def test_provoked_record_info_failure(sandbox):
    _, base = sandbox
    answer = requests.get(base + RECORD, params={"taskId": "sandbox-fail-429"}, headers=KEY)
    assert answer.json()["code"] == 429 and answer.headers["retry-after"] == "1"
    assert record_info(base, "sandbox-fail-500")["code"] == 500


# --- through the real client ------------------------------------------------------------


def test_kie_client_happy_path_and_errors(sandbox, recorder):
    from kie.client import KieClient, RetryPolicy

    _, base = sandbox
    client = KieClient(api_key="any-key", base_url=base, timeout=5, retry=RetryPolicy(max_tries=1))
    with client:
        start = client.get_credits()
        task_id = client.extend(ExtendRequest.model_validate(body_for(recorder[1])))
        assert client.get_credits() == start - 12
        deadline = time.monotonic() + 5
        info = client.get_task(task_id)
        while info.status != "SUCCESS" and time.monotonic() < deadline:
            time.sleep(DELAY / 2)
            info = client.get_task(task_id)
        assert info.status == "SUCCESS" and info.stage == "complete"
        assert info.param == body_for(recorder[1])
        assert info.parent_music_id == "demo-sunrise-piano"
        assert len(info.tracks) == 2 and all(t.playable_url for t in info.tracks)

        bad = ExtendRequest.model_validate(body_for(recorder[1], audioId="sandbox-fail-455"))
        with pytest.raises(MaintenanceError) as caught:
            client.extend(bad)
        assert caught.value.code == 455
        with pytest.raises(RateLimitError) as limited:
            client.get_task("sandbox-fail-429")
        assert limited.value.retry_after == 1


# --- units ----------------------------------------------------------------------------------


def test_parse_range():
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=50-500", 100) == (50, 99)
    assert parse_range("bytes=100-", 100) == "unsatisfiable"
    assert parse_range("bytes=9-3", 100) == "unsatisfiable"
    assert parse_range("bytes=0-1,5-6", 100) is None  # multiple ranges: the whole file
    assert parse_range("items=0-1", 100) is None


def test_media_cache_is_bounded_by_bytes():
    cache = MediaCache(max_bytes=250)
    made: list[str] = []

    def maker(key: str):
        def make() -> bytes:
            made.append(key)
            return b"x" * 100

        return make

    for key in "abc":
        cache.get_or_make(key, maker(key))
    assert cache.size <= 250
    cache.get_or_make("c", maker("c"))
    assert made == ["a", "b", "c"]  # c was still cached
    cache.get_or_make("a", maker("a"))
    assert made == ["a", "b", "c", "a"]  # a had been dropped


def test_sandboxes_do_not_share_state():
    one, two = create_app(credits=100), create_app(credits=50)
    one.state.sandbox.credits = 1
    assert two.state.sandbox.credits == 50
    assert one.state.sandbox is not two.state.sandbox
