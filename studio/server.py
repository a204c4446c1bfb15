"""What `streamlit run app.py` serves besides the pages: the callback receiver, the
sandbox, the visitor cookie, and a start-up fix for Nagle's algorithm."""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import streamlit.config
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from kie.sandbox import create_app as create_sandbox
from kie.webhook import DEFAULT_TOLERANCE_S
from studio.callback_route import CallbackContext, callback_route
from studio.reconciler import Reconciler
from studio.reconciler import from_environment as reconciler_from_environment
from studio.runtime import callback_token, host, store_for
from studio.settings import CALLBACK_PATH, SANDBOX_PREFIX
from studio.visitor import VisitorCookieMiddleware

log = logging.getLogger(__name__)

# Seconds between the sandbox's task stages; tests and demos may shorten it.
SANDBOX_STAGE_DELAY_ENV = "KIE_SANDBOX_STAGE_DELAY_S"
DEFAULT_STAGE_DELAY_S = 2.0
# Seconds a signed callback's timestamp may differ from now (replay window).
TOLERANCE_ENV = "KIE_WEBHOOK_TOLERANCE_S"


def enable_nodelay_on_listeners() -> int:
    """Turn on TCP_NODELAY on this process's listening TCP sockets.

    `streamlit run` binds the socket itself with proto 0, so asyncio's transport skips
    its usual TCP_NODELAY and every keep-alive response waits ~40 ms on Nagle and
    delayed ACKs. Linux copies the option from a listener to the sockets it accepts,
    so setting it once here fixes every request. Returns how many listeners changed.
    """
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return 0
    changed = 0
    for name in os.listdir(fd_dir):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except (ValueError, OSError):
            continue
        with sock:
            try:
                listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
                if listening and tcp and sock.type == socket.SOCK_STREAM:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    changed += 1
            except OSError:
                continue
    return changed


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    # uvicorn runs the lifespan before it starts accepting, on a socket already bound.
    changed = enable_nodelay_on_listeners()
    log.debug("TCP_NODELAY set on %d listening socket(s)", changed)
    # The reconciler (studio/reconciler.py): confirms callbacks against record-info and
    # polls quiet tasks with the host's access, in its own thread; stopped at shutdown.
    reconciler = await anyio.to_thread.run_sync(_start_reconciler)
    try:
        yield
    finally:
        if reconciler is not None:
            await anyio.to_thread.run_sync(reconciler.stop)


def _start_reconciler() -> Reconciler | None:
    try:
        port = int(streamlit.config.get_option("server.port"))
        reconciler = reconciler_from_environment(port)
        if reconciler is not None:
            reconciler.start()
        return reconciler
    except Exception:  # noqa: BLE001 - the app still serves without it
        log.exception("The reconciler did not start")
        return None


def _callback_context() -> CallbackContext:
    settings = host()
    store = store_for(settings)
    return CallbackContext(
        store=store,
        hmac_key=settings.webhook_hmac_key,
        token=callback_token(store),
        tolerance_s=_tolerance_s(),
    )


def _tolerance_s() -> int:
    """KIE_WEBHOOK_TOLERANCE_S: how old (or new) a signed timestamp may be; default 300."""
    raw = os.environ.get(TOLERANCE_ENV, "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_TOLERANCE_S


def routes() -> list[BaseRoute]:
    settings = host()
    delay = float(os.environ.get(SANDBOX_STAGE_DELAY_ENV) or DEFAULT_STAGE_DELAY_S)
    sandbox = create_sandbox(hmac_key=settings.webhook_hmac_key, stage_delay_s=delay)
    return [
        callback_route(_callback_context, path=CALLBACK_PATH),
        Mount(SANDBOX_PREFIX, app=sandbox),
    ]


def middleware() -> list[Middleware]:
    return [Middleware(VisitorCookieMiddleware)]
