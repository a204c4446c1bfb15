"""POST /kie/callback: where Kie (or the sandbox) reports a task's progress.

Checks, in order, each answered with a short JSON {"error": ...} that writes nothing:
method (405), size (413), content type (415), JSON (400), authentication (401: the
signature headers when a webhook HMAC key is set, else the callBackUrl's ?token=),
shape (422). Then the callback goes to the store (TaskStore.store_callback), which
commits the callbacks waiting on this event loop in one transaction (idempotently), and
the answer, 200 {"ok": true, "result": "stored" | "duplicate" | "orphan"}, is sent only
after its group committed. Nothing here calls out to the network.

The context (store, keys, token) is fetched in a worker thread and reused for
CONTEXT_TTL_S, so a changed setting takes effect within that many seconds.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kie.models import CallbackPayload
from kie.webhook import DEFAULT_TOLERANCE_S, InvalidPayload, InvalidSignature, parse, verify
from studio.store import TaskStore, callback_problem

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
CONTEXT_TTL_S = 2.0


@dataclass(frozen=True)
class CallbackContext:
    """What the route needs from the app, fetched per request."""

    store: TaskStore
    hmac_key: str | None = field(repr=False)
    """When set, a valid fresh signature is required."""
    token: str = field(repr=False)
    """When no hmac_key: the ?token= value every callback must carry."""
    tolerance_s: int = DEFAULT_TOLERANCE_S
    """How old a signature's timestamp may be, in seconds."""


class _Rejected(Exception):
    """A request refused with a 4xx status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _body_headers(scope: Scope) -> tuple[str | None, str]:
    """(Content-Length or None, Content-Type or ""): the first of each, as
    request.headers.get would give them, in one pass over the raw headers."""
    length: bytes | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"content-length" and length is None:
            length = value
        elif name == b"content-type" and content_type is None:
            content_type = value
    return (
        None if length is None else length.decode("latin-1"),
        "" if content_type is None else content_type.decode("latin-1"),
    )


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    declared, content_type = _body_headers(scope)
    if declared is not None:
        if not declared.strip().isdigit():
            raise _Rejected(400, "Invalid Content-Length.")
        if int(declared) > MAX_BODY_BYTES:
            raise _Rejected(413, "Body too large.")
    if not _is_json(content_type):
        raise _Rejected(415, "Content type must be application/json.")
    # What Request.stream() does, without its async generator.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Rejected(400, "The client went away before sending the whole body.")
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Rejected(413, "Body too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _load_json(body: bytes) -> Any:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _Rejected(400, "Body is not valid JSON.") from exc
    # [reliability, point 4] A lone \ud800-style escape decodes to a str that cannot be
    # encoded as UTF-8, so storing it failed with a 500. Refuse such bodies up front; the
    # walk only runs when the raw bytes hold a surrogate escape (valid pairs pass).
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(data):
        raise _Rejected(400, "Body is not valid JSON (unpaired UTF-16 surrogate).")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _task_id_of(data: Any) -> str | None:
    inner = data.get("data") if isinstance(data, dict) else None
    task_id = inner.get("task_id") if isinstance(inner, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None


def _query_token(scope: Scope) -> str | None:
    """request.query_params.get("token") (the last one wins), without building the
    whole QueryParams multidict: the only parameter this route reads."""
    query = scope.get("query_string", b"")
    if b"token" not in query:
        return None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return next((value for key, value in reversed(pairs) if key == "token"), None)


def _authenticate(context: CallbackContext, request: Request, data: Any) -> bool:
    """Raise _Rejected(401) unless the caller proved it is Kie; True when signed."""
    if context.hmac_key:
        task_id = _task_id_of(data)
        if task_id is None:
            raise _Rejected(401, "Cannot check the signature without data.task_id.")
        try:
            verify(context.hmac_key, task_id, request.headers, tolerance_s=context.tolerance_s)
        except InvalidSignature as exc:
            raise _Rejected(401, exc.msg or "Invalid signature.") from exc
        return True
    given = _query_token(request.scope)
    if not context.token or not given:
        raise _Rejected(401, "Missing callback token.")
    if not hmac.compare_digest(given.encode(), context.token.encode()):
        raise _Rejected(401, "Wrong callback token.")
    return False


def _parse(data: Any) -> CallbackPayload:
    if isinstance(data, dict):
        try:
            payload = parse(data)
        except InvalidPayload:
            pass
        else:
            problem = callback_problem(payload)
            if problem:
                raise _Rejected(422, f"Not a storable Kie callback: {problem}")
            return payload
    raise _Rejected(
        422, "Not a Kie callback (expected code, msg, data.callbackType, data.task_id, data.data)."
    )


class _CallbackEndpoint:
    """The ASGI endpoint (all methods reach it, so a 405 is JSON too)."""

    def __init__(self, get_context: Callable[[], CallbackContext], context_ttl_s: float) -> None:
        self._get_context = get_context
        self._context_ttl_s = context_ttl_s
        self._context: tuple[float, CallbackContext] | None = None  # (fetched at, context)

    async def _current_context(self) -> CallbackContext:
        now = time.monotonic()
        cached = self._context
        if cached is not None and now - cached[0] < self._context_ttl_s:
            return cached[1]
        context = await anyio.to_thread.run_sync(self._get_context)  # it may read the store
        self._context = (now, context)
        return context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._handle(request)
        except _Rejected as rejected:
            client = request.client.host if request.client else "?"
            log.info("callback rejected: %s %s (from %s)", rejected.status, rejected.reason, client)
            headers = {"Allow": "POST"} if rejected.status == 405 else None
            response = JSONResponse(
                {"error": rejected.reason}, status_code=rejected.status, headers=headers
            )
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        if request.method != "POST":
            raise _Rejected(405, "Only POST is allowed.")
        context = await self._current_context()
        body = await _read_body(request.scope, request.receive)
        data = _load_json(body)
        verified = _authenticate(context, request, data)
        payload = _parse(data)
        # Returns once the group it went in has committed (see TaskStore.store_callback);
        # a client that hangs up does not cancel the write.
        result = await context.store.store_callback(payload, verified=verified)
        log.info(
            "callback %s: task %r, stage %r",
            result,
            payload.data.task_id[:80],
            payload.data.callback_type[:40],
        )
        return Response(_ANSWERS[result], media_type="application/json")


# The three answers, encoded once: what JSONResponse({"ok": True, "result": r}) sends.
_ANSWERS = {
    result: json.dumps({"ok": True, "result": result}, separators=(",", ":")).encode()
    for result in ("stored", "duplicate", "orphan")
}


def callback_route(
    get_context: Callable[[], CallbackContext],
    path: str = "/kie/callback",
    *,
    context_ttl_s: float = CONTEXT_TTL_S,
) -> Route:
    """The Starlette route that receives Kie's callbacks at `path`."""
    return Route(path, _CallbackEndpoint(get_context, context_ttl_s), name="kie_callback")
