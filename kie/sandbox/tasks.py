"""The sandbox's memory: source tracks, tasks, credits, and how a task lives.

Everything is per SandboxState instance (one per app), guarded by one lock, and
bounded: at most `max_tasks` tasks are kept, the oldest (with its tracks) dropped
first. A task's stage is computed from the time elapsed since it was accepted (one
stage per `stage_delay_s`), so record-info progresses even when no callback can be
delivered; the callbacks are sent by the app at the same instants.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kie.models import CALLBACK_CODES, ExtendRequest

# --- provoked failures ---------------------------------------------------------------

FAIL_MARKER = re.compile(r"sandbox-fail-(\d{3})", re.IGNORECASE)
CALLBACK_MARKER = re.compile(r"sandbox-callback-(\d{3})", re.IGNORECASE)

# What the extend call itself answers for `sandbox-fail-<code>` (any other 3-digit
# code is answered too, with a generic message: handy for "unknown code" handling).
REQUEST_FAILURES: dict[int, str] = {
    401: "You do not have access permissions (sandbox-fail-401).",
    402: "Insufficient credits (sandbox-fail-402).",
    404: "The requested resource was not found (sandbox-fail-404).",
    409: "A WAV record already exists (sandbox-fail-409).",
    422: "Parameters failed validation (sandbox-fail-422).",
    429: "Rate limited: too many requests, retry later (sandbox-fail-429).",
    451: "Failed to fetch the audio file (sandbox-fail-451).",
    455: "The service is under maintenance (sandbox-fail-455).",
    500: "Server error (sandbox-fail-500).",
    505: "This feature is disabled (sandbox-fail-505).",
}
RETRY_AFTER_S = 1
"""Retry-After (seconds) sent with a provoked 429."""

# Record-info status for a task that fails through `sandbox-callback-<code>`.
CALLBACK_FAILURE_STATUS: dict[int, str] = {400: "SENSITIVE_WORD_ERROR"}
DEFAULT_FAILURE_STATUS = "GENERATE_AUDIO_FAILED"
REFUNDED_CODES = frozenset({531})

FAILURE_MARKERS: tuple[tuple[str, str], ...] = (
    (
        "sandbox-fail-<code>",
        "in audioId or prompt: POST extend answers envelope code <code> at once, no task "
        "is created and nothing is charged (401, 402, 404, 409, 422, 429 with a "
        "Retry-After header, 451, 455, 500, 505, or any other 3-digit code). In a "
        "record-info taskId: record-info answers that code.",
    ),
    (
        "sandbox-callback-<code>",
        "in audioId or prompt: the task is accepted and charged, sends its `text` "
        "callback, then an `error` callback with code <code> (400, 408, 413, 500, 501, "
        "531, ...); record-info ends SENSITIVE_WORD_ERROR (400) or GENERATE_AUDIO_FAILED "
        "(others) with errorCode/errorMessage; 531 refunds the credits.",
    ),
)
"""The failure markers, as (marker, effect) rows: what the module docstring documents."""


def request_failure(values: Mapping[str, Any]) -> tuple[int, str] | None:
    """(code, msg) when the request carries `sandbox-fail-<code>` in audioId or prompt."""
    code = _marker(FAIL_MARKER, values)
    if code is None:
        return None
    return code, REQUEST_FAILURES.get(code, f"Sandbox failure {code} (sandbox-fail-{code}).")


def callback_failure(values: Mapping[str, Any]) -> Failure | None:
    """The failure a `sandbox-callback-<code>` marker asks for, if any."""
    code = _marker(CALLBACK_MARKER, values)
    if code is None:
        return None
    message = CALLBACK_CODES.get(code, "Generation failed.")
    return Failure(
        code=code,
        msg=f"{message} (sandbox-callback-{code})",
        status=CALLBACK_FAILURE_STATUS.get(code, DEFAULT_FAILURE_STATUS),
    )


def _marker(pattern: re.Pattern[str], values: Mapping[str, Any]) -> int | None:
    for key in ("audioId", "prompt"):
        value = values.get(key)
        if isinstance(value, str):
            match = pattern.search(value)
            if match:
                return int(match.group(1))
    return None


# --- tracks ----------------------------------------------------------------------------

MODEL_NAMES: dict[str, str] = {
    "V3_5": "chirp-v3-5",
    "V4": "chirp-v4",
    "V4_5": "chirp-v4-5",
    "V4_5PLUS": "chirp-v4-5-plus",
    "V4_5ALL": "chirp-v4-5-all",
    "V5": "chirp-v5",
}


def model_name(model: str) -> str:
    """Kie's model_name for a request model, e.g. V4_5 -> chirp-v4-5."""
    return MODEL_NAMES.get(model, "chirp-" + model.lower().replace("_", "-"))


def _create_time(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S")


# Callback names of the record-info (camelCase) track fields that differ.
_SNAKE = {
    "audioUrl": "audio_url",
    "sourceAudioUrl": "source_audio_url",
    "streamAudioUrl": "stream_audio_url",
    "sourceStreamAudioUrl": "source_stream_audio_url",
    "imageUrl": "image_url",
    "sourceImageUrl": "source_image_url",
    "modelName": "model_name",
}


@dataclass(frozen=True)
class SandboxTrack:
    """A track the sandbox knows: a demo source or one it generated."""

    id: str
    title: str
    model: str
    duration: float
    """Declared length in seconds (the served audio is a short preview of it)."""
    prompt: str
    style: str
    create_time: str
    seed: str
    """Text the audio and cover are derived from."""

    def urls(self, base: str) -> dict[str, str]:
        """The track's media URLs under the sandbox base URL (no trailing slash)."""
        return {
            "audio": f"{base}/media/{self.id}.wav",
            "stream": f"{base}/media/stream/{self.id}.wav",
            "image": f"{base}/media/{self.id}.png",
        }

    def camel(self, base: str, *, final: bool = True) -> dict[str, Any]:
        """The record-info (sunoData) shape."""
        urls = self.urls(base)
        return {
            "id": self.id,
            "audioUrl": urls["audio"] if final else "",
            "sourceAudioUrl": urls["audio"] if final else "",
            "streamAudioUrl": urls["stream"],
            "sourceStreamAudioUrl": urls["stream"],
            "imageUrl": urls["image"],
            "sourceImageUrl": urls["image"],
            "prompt": self.prompt,
            "modelName": model_name(self.model),
            "title": self.title,
            "tags": self.style,
            "createTime": self.create_time,
            "duration": self.duration if final else None,
        }

    def snake(self, base: str, *, final: bool = True) -> dict[str, Any]:
        """The callback shape: the same track, snake_case names (createTime stays)."""
        return {_SNAKE.get(k, k): v for k, v in self.camel(base, final=final).items()}


_DEMO_TIME = "2025-01-01 00:00:00"
DEMO_TRACKS: tuple[SandboxTrack, ...] = (
    SandboxTrack(
        id="demo-sunrise-piano",
        title="Sunrise Piano",
        model="V4_5",
        duration=96.0,
        prompt="A gentle piano piece greeting the sunrise, warm and hopeful.",
        style="gentle piano, calm, bright",
        create_time=_DEMO_TIME,
        seed="demo|Sunrise Piano|gentle piano, calm, bright, sunrise",
    ),
    SandboxTrack(
        id="demo-midnight-drive",
        title="Midnight Drive",
        model="V4",
        duration=118.0,
        prompt="Neon lights on an empty highway after midnight.",
        style="synthwave, dark, upbeat",
        create_time=_DEMO_TIME,
        seed="demo|Midnight Drive|synthwave, dark night, upbeat dance",
    ),
    SandboxTrack(
        id="demo-rainy-lofi",
        title="Rainy Day Lo-fi",
        model="V3_5",
        duration=42.0,
        prompt="Soft rain on the window, a slow lo-fi beat to study to.",
        style="lofi, chill, mellow",
        create_time=_DEMO_TIME,
        seed="demo|Rainy Day Lo-fi|lofi chill rain",
    ),
)
"""The source tracks a fresh sandbox offers (stable ids)."""

ASSUMED_SOURCE_DURATION_S = 240.0
"""Length assumed for an audioId the sandbox does not know."""


# --- tasks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """How a task accepted with a `sandbox-callback-<code>` marker fails."""

    code: int
    msg: str
    status: str


CALLBACK_MESSAGES: dict[str, str] = {
    "text": "Text generation completed successfully.",
    "first": "First track generation completed successfully.",
    "complete": "All generated successfully.",
}
SUCCESS_STATUSES: tuple[str, ...] = ("PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS")


@dataclass
class SandboxTask:
    """One accepted extend task."""

    task_id: str
    param: str
    """The request body as received, as a JSON string (record-info's `param`)."""
    parent_music_id: str
    call_back_url: str
    tracks: tuple[SandboxTrack, SandboxTrack]
    started: float
    """Clock time it was accepted."""
    failure: Failure | None = None
    cost: int = 0
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    """(callbackType, outcome) per callback attempted: "HTTP 200", or the error."""

    def callback_plan(self) -> tuple[tuple[str, int], ...]:
        """(callbackType, stage number) in order: stage n is due at started + n * delay."""
        if self.failure is not None:
            return (("text", 1), ("error", 2))
        return (("text", 1), ("first", 2), ("complete", 3))

    def stage_number(self, now: float, delay: float) -> int:
        """How many stages have passed by `now`."""
        last = self.callback_plan()[-1][1]
        if delay <= 0:
            return last
        return min(last, max(0, math.floor((now - self.started) / delay + 1e-9)))

    def status(self, now: float, delay: float) -> str:
        """record-info's status at `now`."""
        number = self.stage_number(now, delay)
        if self.failure is not None and number >= 2:
            return self.failure.status
        return SUCCESS_STATUSES[number]


def _seed_text(values: Mapping[str, Any], variant: int) -> str:
    return (
        "|".join(str(values.get(key) or "") for key in ("prompt", "style", "title"))
        + f"|variant {variant}"
    )


def _extension_length(seed: str) -> float:
    digest = hashlib.sha256(("length:" + seed).encode()).digest()
    return 30.0 + digest[0] / 255 * 60.0


class InsufficientCredits(Exception):
    """The account cannot pay for one more task."""


class SandboxState:
    """All the sandbox remembers, for one app instance."""

    def __init__(
        self,
        *,
        stage_delay_s: float = 2.0,
        credits: int = 500,
        cost_per_task: int = 12,
        max_tasks: int = 10_000,
        assumed_source_duration_s: float = ASSUMED_SOURCE_DURATION_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage_delay_s = stage_delay_s
        self.cost_per_task = cost_per_task
        self.max_tasks = max_tasks
        self.assumed_source_duration_s = assumed_source_duration_s
        self.clock = clock
        self._lock = threading.Lock()
        self._credits = credits
        self._tasks: OrderedDict[str, SandboxTask] = OrderedDict()
        self._tracks: dict[str, SandboxTrack] = {track.id: track for track in DEMO_TRACKS}

    @property
    def credits(self) -> int:
        with self._lock:
            return self._credits

    @credits.setter
    def credits(self, value: int) -> None:
        with self._lock:
            self._credits = value

    @property
    def demo_tracks(self) -> tuple[SandboxTrack, ...]:
        return DEMO_TRACKS

    def track(self, track_id: str) -> SandboxTrack | None:
        """A track the sandbox knows (demo or generated), or None."""
        with self._lock:
            return self._tracks.get(track_id)

    def task(self, task_id: str) -> SandboxTask | None:
        with self._lock:
            return self._tasks.get(task_id)

    def task_count(self) -> int:
        with self._lock:
            return len(self._tasks)

    def source_context(self, audio_id: Any) -> dict[str, Any]:
        """Validation context for this source: its duration (and model when known)."""
        source = self.track(audio_id) if isinstance(audio_id, str) else None
        if source is None:
            return {"source_duration": self.assumed_source_duration_s}
        return {"source_duration": source.duration, "source_model": source.model}

    def create_task(
        self, request: ExtendRequest, param: str, failure: Failure | None = None
    ) -> SandboxTask:
        """Charge for and remember a new task; raise InsufficientCredits if unaffordable."""
        source = self.track(request.audio_id)
        values = request.to_wire()
        if not request.default_param_flag:
            # Inherit the source's parameters; whatever the request gives still wins.
            inherited = {
                "prompt": source.prompt if source else "An extension of the source track.",
                "style": source.style if source else "sandbox",
                "title": source.title if source else "Sandbox extension",
            }
            values = {**inherited, **{k: v for k, v in values.items() if v}}
        continue_at = request.continue_at
        if continue_at is None:
            continue_at = source.duration if source else self.assumed_source_duration_s
        now_wall = time.time()
        tracks = []
        for variant in (1, 2):
            seed = _seed_text(values, variant)
            tracks.append(
                SandboxTrack(
                    id=str(uuid.uuid4()),
                    title=str(values.get("title") or "Sandbox extension"),
                    model=request.model,
                    duration=round(continue_at + _extension_length(seed), 2),
                    prompt=str(values.get("prompt") or ""),
                    style=str(values.get("style") or ""),
                    create_time=_create_time(now_wall),
                    seed=seed,
                )
            )
        task = SandboxTask(
            task_id=secrets.token_hex(16),
            param=param,
            parent_music_id=request.audio_id,
            call_back_url=request.call_back_url,
            tracks=(tracks[0], tracks[1]),
            started=self.clock(),
            failure=failure,
        )
        with self._lock:
            if self._credits < self.cost_per_task:
                raise InsufficientCredits
            self._credits -= self.cost_per_task
            task.cost = self.cost_per_task
            self._tasks[task.task_id] = task
            for track in task.tracks:
                self._tracks[track.id] = track
            while len(self._tasks) > self.max_tasks:
                _, dropped = self._tasks.popitem(last=False)
                for track in dropped.tracks:
                    self._tracks.pop(track.id, None)
        return task

    def refund(self, task: SandboxTask) -> None:
        """Give a failed task's credits back (once)."""
        with self._lock:
            self._credits += task.cost
            task.cost = 0

    def record(self, task: SandboxTask, kind: str, outcome: str) -> None:
        with self._lock:
            task.deliveries.append((kind, outcome))

    def record_info(self, task: SandboxTask, base: str) -> dict[str, Any]:
        """record-info's data for this task, now."""
        now = self.clock()
        status = task.status(now, self.stage_delay_s)
        if status == "SUCCESS":
            tracks = [track.camel(base) for track in task.tracks]
        elif status == "FIRST_SUCCESS":
            tracks = [track.camel(base, final=False) for track in task.tracks]
        else:
            tracks = []
        failed = task.failure is not None and status == task.failure.status
        return {
            "taskId": task.task_id,
            "parentMusicId": task.parent_music_id,
            "param": task.param,
            "response": {"taskId": task.task_id, "sunoData": tracks},
            "status": status,
            "type": "EXTEND",
            "errorCode": task.failure.code if failed and task.failure else None,
            "errorMessage": task.failure.msg if failed and task.failure else None,
        }

    def callback_body(self, task: SandboxTask, kind: str, base: str) -> dict[str, Any]:
        """The JSON POSTed to callBackUrl for this stage (snake_case, as documented)."""
        if kind == "error":
            assert task.failure is not None
            return {
                "code": task.failure.code,
                "msg": task.failure.msg,
                "data": {"callbackType": "error", "task_id": task.task_id, "data": []},
            }
        if kind == "text":
            tracks: list[dict[str, Any]] = []
        else:
            tracks = [track.snake(base, final=kind == "complete") for track in task.tracks]
        return {
            "code": 200,
            "msg": CALLBACK_MESSAGES[kind],
            "data": {"callbackType": kind, "task_id": task.task_id, "data": tracks},
        }
