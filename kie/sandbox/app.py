"""The sandbox's HTTP face: a Starlette app with Kie's paths and envelope."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio.to_thread
import requests
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kie.models import FIELD_LABELS, ExtendRequest, field_errors
from kie.sandbox.audio import wav_bytes
from kie.sandbox.cover import cover_png
from kie.sandbox.media import DEFAULT_CACHE_BYTES, MediaCache, file_response
from kie.sandbox.tasks import (
    FAIL_MARKER,
    REFUNDED_CODES,
    RETRY_AFTER_S,
    InsufficientCredits,
    SandboxState,
    SandboxTask,
    callback_failure,
    request_failure,
)
from kie.webhook import signed_headers

logger = logging.getLogger("kie.sandbox")

CALLBACK_TIMEOUT_S = 15.0


def envelope(
    code: int,
    msg: str,
    data: Any = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Kie's {code, msg, data} body. Like Kie, failures still answer HTTP 200 by default."""
    body = {"code": code, "msg": msg, "data": data}
    return JSONResponse(body, status_code=status, headers=headers)


def _has_key(request: Request) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(key.strip())


def _unauthorized() -> JSONResponse:
    return envelope(401, "Missing or invalid API key: send the header Authorization: Bearer <key>.")


def _failure_response(code: int, msg: str) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if code == 429 else None
    return envelope(code, msg, headers=headers)


def _problems_message(problems: dict[str, str]) -> str:
    parts = [
        f"{FIELD_LABELS.get(field, field)} [{field}]: {message}"
        for field, message in problems.items()
    ]
    return "Invalid parameters. " + " ".join(parts)


def deliver(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> str:
    """POST one callback (blocking; run it in a worker thread). Never raises."""
    try:
        answer = requests.post(url, data=json.dumps(body), headers=headers, timeout=timeout)
    except (requests.RequestException, ValueError) as exc:
        logger.warning("Callback to %s failed: %s", url, exc)
        return f"error: {exc.__class__.__name__}"
    if answer.status_code >= 300:
        logger.warning("Callback to %s answered HTTP %s", url, answer.status_code)
    return f"HTTP {answer.status_code}"


class Sandbox:
    """Handlers bound to one SandboxState."""

    def __init__(
        self,
        state: SandboxState,
        *,
        public_base_url: str | None,
        hmac_key: str | None,
        callback_timeout_s: float,
        media_cache_bytes: int,
        callback_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.state = state
        self.callback_allowed = callback_allowed
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.hmac_key = hmac_key
        self.callback_timeout_s = callback_timeout_s
        self.media = MediaCache(media_cache_bytes)
        self._background: set[asyncio.Task[None]] = set()

    # -- helpers ------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        """The sandbox's absolute base URL, mount prefix included, no trailing slash."""
        if self.public_base_url:
            return self.public_base_url
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return origin + str(request.scope.get("root_path", "")).rstrip("/")

    async def _run_callbacks(self, task: SandboxTask, base: str) -> None:
        state = self.state
        try:
            for kind, number in task.callback_plan():
                delay = task.started + number * state.stage_delay_s - state.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                if kind == "error" and task.failure and task.failure.code in REFUNDED_CODES:
                    state.refund(task)
                if self.callback_allowed and not self.callback_allowed(task.call_back_url):
                    logger.info("Callback of task %s not sent: URL not allowed", task.task_id)
                    state.record(task, kind, "skipped: callback URL not allowed")
                    continue
                body = state.callback_body(task, kind, base)
                headers = {"Content-Type": "application/json"}
                if self.hmac_key:
                    headers.update(signed_headers(self.hmac_key, task.task_id))
                outcome = await anyio.to_thread.run_sync(
                    partial(deliver, task.call_back_url, body, headers, self.callback_timeout_s)
                )
                state.record(task, kind, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Callbacks of task %s stopped", task.task_id)

    def _spawn(self, task: SandboxTask, base: str) -> None:
        job = asyncio.get_running_loop().create_task(self._run_callbacks(task, base))
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    # -- API ----------------------------------------------------------------------

    async def extend(self, request: Request) -> Response:
        if not _has_key(request):
            return _unauthorized()
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return envelope(422, "Invalid parameters. The request body must be a JSON object.")
        provoked = request_failure(body)
        if provoked:
            return _failure_response(*provoked)
        context = self.state.source_context(body.get("audioId"))
        try:
            extend_request = ExtendRequest.model_validate(body, context=context)
        except ValidationError as exc:
            problems = field_errors(body, **context)
            message = _problems_message(problems) if problems else f"Invalid parameters. {exc}"
            return envelope(422, message)
        failure = callback_failure(body)
        try:
            task = self.state.create_task(extend_request, json.dumps(body), failure)
        except InsufficientCredits:
            return envelope(402, "Insufficient credits: the sandbox account has run out.")
        self._spawn(task, self.base_url(request))
        return envelope(200, "success", {"taskId": task.task_id})

    async def record_info(self, request: Request) -> Response:
        if not _has_key(request):
            return _unauthorized()
        task_id = request.query_params.get("taskId", "").strip()
        if not task_id:
            return envelope(422, "Invalid parameters. taskId is required.")
        match = FAIL_MARKER.search(task_id)
        if match:
            provoked = request_failure({"audioId": match.group(0)})
            assert provoked is not None
            return _failure_response(*provoked)
        task = self.state.task(task_id)
        if task is None:
            return envelope(404, f"Task not found: {task_id}")
        return envelope(200, "success", self.state.record_info(task, self.base_url(request)))

    async def credit(self, request: Request) -> Response:
        if not _has_key(request):
            return _unauthorized()
        return envelope(200, "success", self.state.credits)

    async def demo_tracks(self, request: Request) -> Response:
        base = self.base_url(request)
        tracks = []
        for track in self.state.demo_tracks:
            urls = track.urls(base)
            tracks.append(
                {
                    "id": track.id,
                    "title": track.title,
                    "model": track.model,
                    "duration": track.duration,
                    "audioUrl": urls["audio"],
                    "imageUrl": urls["image"],
                    "style": track.style,
                    "prompt": track.prompt,
                }
            )
        return envelope(200, "success", tracks)

    # -- media ----------------------------------------------------------------------

    async def _media(self, request: Request, kind: str) -> Response:
        track = self.state.track(request.path_params["track_id"])
        if track is None:
            return envelope(404, "No such track in the sandbox.", status=404)
        make = partial(wav_bytes, track.seed) if kind == "wav" else partial(cover_png, track.seed)
        key = f"{kind}:{track.seed}"
        body = await anyio.to_thread.run_sync(partial(self.media.get_or_make, key, make))
        return file_response(request, body, "audio/wav" if kind == "wav" else "image/png")

    async def audio(self, request: Request) -> Response:
        return await self._media(request, "wav")

    async def cover(self, request: Request) -> Response:
        return await self._media(request, "png")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Server error"
    return envelope(status, str(detail), status=status)


def create_app(
    *,
    public_base_url: str | None = None,
    stage_delay_s: float = 2.0,
    hmac_key: str | None = None,
    credits: int = 500,
    cost_per_task: int = 12,
    max_tasks: int = 10_000,
    assumed_source_duration_s: float = 240.0,
    callback_timeout_s: float = CALLBACK_TIMEOUT_S,
    media_cache_bytes: int = DEFAULT_CACHE_BYTES,
    callback_allowed: Callable[[str], bool] | None = None,
) -> Starlette:
    """A fresh sandbox (its own credits, tasks and tracks) as a Starlette app.

    Mount it anywhere (e.g. Mount("/kie-sandbox", app=create_app())): the URLs it
    returns are absolute and include the mount prefix, derived from each request,
    unless `public_base_url` (the sandbox's own public base, prefix included) is given.
    `callback_allowed(url)`, when given, decides which callBackUrls it POSTs to (a
    sandbox open to the internet must not call arbitrary addresses); record-info
    progresses either way. The state is reachable as `app.state.sandbox` (a SandboxState).
    """
    state = SandboxState(
        stage_delay_s=stage_delay_s,
        credits=credits,
        cost_per_task=cost_per_task,
        max_tasks=max_tasks,
        assumed_source_duration_s=assumed_source_duration_s,
    )
    sandbox = Sandbox(
        state,
        public_base_url=public_base_url,
        hmac_key=hmac_key,
        callback_timeout_s=callback_timeout_s,
        media_cache_bytes=media_cache_bytes,
        callback_allowed=callback_allowed,
    )
    routes = [
        Route("/api/v1/generate/extend", sandbox.extend, methods=["POST"]),
        Route("/api/v1/generate/record-info", sandbox.record_info, methods=["GET"]),
        Route("/api/v1/chat/credit", sandbox.credit, methods=["GET"]),
        Route("/api/v1/sandbox/demo-tracks", sandbox.demo_tracks, methods=["GET"]),
        Route("/media/stream/{track_id}.wav", sandbox.audio, methods=["GET"]),
        Route("/media/{track_id}.wav", sandbox.audio, methods=["GET"]),
        Route("/media/{track_id}.png", sandbox.cover, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.sandbox = state
    app.state.sandbox_handlers = sandbox
    return app
