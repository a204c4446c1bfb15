"""What `streamlit run app.py` serves besides the pages: the callback receiver, the
sandbox, the visitor cookie, and a start-up fix for Nagle's algorithm.

Start-up: nothing here that the server does not need before it answers. The callback
route and the sandbox are built on their first request (_Lazy), which is also when
their modules (SQLAlchemy, pydantic models, numpy for the sandbox's audio) are imported;
the reconciler starts in a thread of its own once the server is up.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import stat
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio.to_thread
import streamlit.config
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from studio.settings import CALLBACK_PATH, SANDBOX_PREFIX
from studio.visitor import VisitorCookieMiddleware

if TYPE_CHECKING:
    from studio.callback_route import CallbackContext
    from studio.reconciler import Reconciler

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


def freeze_startup_objects() -> None:
    """Take everything allocated so far (Streamlit, SQLAlchemy, pydantic: hundreds of
    thousands of long-lived objects) out of the cyclic garbage collector's sight.

    Without this, each full collection walks them all on the event loop: a 50-100 ms
    pause that bench/ingest.py saw as p99 at 32 concurrent callbacks (146 ms before,
    ~25 ms after). gc.freeze() is O(1) and changes no behaviour: those objects live as
    long as the server anyway; garbage made later is collected as before.
    """
    gc.freeze()


def use_navigation_only() -> None:
    """Tell Streamlit this app's pages come from st.navigation (ui.py), never from the
    older automatic `pages/` folder navigation.

    Streamlit decides per process: until some session has run st.navigation, a folder
    named pages/ beside the entry script makes it run a directly addressed page (say
    /settings, the first visit after a restart) on its own, skipping ui.py: no sandbox
    banner, no passcode gate. Our layout keeps pages/ (as asked), so settle it at start.
    """
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    # uvicorn runs the lifespan before it starts accepting, on a socket already bound.
    use_navigation_only()
    changed = enable_nodelay_on_listeners()
    freeze_startup_objects()
    log.debug("TCP_NODELAY set on %d listening socket(s)", changed)
    # The reconciler (studio/reconciler.py): confirms callbacks against record-info and
    # polls quiet tasks with the host's access, in its own thread; stopped at shutdown.
    # Started (store opened, modules imported) beside the server, not before it.
    started: list[Reconciler | None] = []

    def start() -> None:
        started.append(_start_reconciler())
        _warm_up()

    starter = threading.Thread(target=start, name="reconciler-start", daemon=True)
    starter.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(starter.join)
        reconciler = started[0] if started else None
        if reconciler is not None:
            await anyio.to_thread.run_sync(reconciler.stop)


def _warm_up() -> None:
    """Import what the first page needs while the first browser is still connecting
    (the page would import it anyway; this only moves the wait off its critical path)."""
    try:
        import studio.session  # noqa: F401 - kie, the store, the settings
    except Exception:  # noqa: BLE001 - the page reports its own import errors
        log.debug("warm-up import failed", exc_info=True)


def _start_reconciler() -> Reconciler | None:
    try:
        from studio.reconciler import from_environment

        port = int(streamlit.config.get_option("server.port"))
        reconciler = from_environment(port)
        if reconciler is not None:
            reconciler.start()
        return reconciler
    except Exception:  # noqa: BLE001 - the app still serves without it
        log.exception("The reconciler did not start")
        return None


def _callback_context() -> CallbackContext:
    from studio.callback_route import CallbackContext
    from studio.runtime import callback_token, host, store_for

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
    from kie.webhook import DEFAULT_TOLERANCE_S

    raw = os.environ.get(TOLERANCE_ENV, "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_TOLERANCE_S


class _Lazy:
    """An ASGI app built by `build` on its first request (then always that one)."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def _get(self) -> ASGIApp:
        with self._lock:  # built once, even if two first requests race
            if self._app is None:
                self._app = self._build()
                freeze_startup_objects()  # what building it imported lives as long
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or self._get()
        await app(scope, receive, send)


def _callback_endpoint() -> ASGIApp:
    from studio.callback_route import callback_route

    return callback_route(_callback_context, path=CALLBACK_PATH).app


def _sandbox() -> ASGIApp:
    from kie.sandbox import create_app as create_sandbox
    from studio.runtime import host

    settings = host()
    delay = float(os.environ.get(SANDBOX_STAGE_DELAY_ENV) or DEFAULT_STAGE_DELAY_S)
    # The app calls its sandbox on 127.0.0.1, but visitors' browsers load the sandbox's
    # audio and covers: on a hosted copy those URLs must use the public address.
    public = settings.public_url + SANDBOX_PREFIX if settings.public_url else None
    return create_sandbox(
        hmac_key=settings.webhook_hmac_key,
        stage_delay_s=delay,
        public_base_url=public,
        callback_allowed=partial(own_receiver, public_url=settings.public_url),
    )


def own_receiver(url: str, *, public_url: str | None) -> bool:
    """Whether `url` is this app's callback receiver: the only address the built-in
    sandbox calls back, so a hosted demo cannot be made to POST anywhere else."""
    parts = urlsplit(url)
    if parts.path != CALLBACK_PATH:
        return False
    if parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return parts.port == int(streamlit.config.get_option("server.port"))
    public = urlsplit(public_url) if public_url else None
    return public is not None and (parts.scheme, parts.netloc) == (public.scheme, public.netloc)


def routes() -> list[BaseRoute]:
    return [
        Route(CALLBACK_PATH, _Lazy(_callback_endpoint), name="kie_callback"),
        Mount(SANDBOX_PREFIX, app=_Lazy(_sandbox)),
    ]


def middleware() -> list[Middleware]:
    return [Middleware(VisitorCookieMiddleware)]
