"""The visitor cookie: how the app recognises a browser across reloads and restarts.

Middleware gives every browser a long-lived random ID the first time it loads a page;
the page scripts read it back with st.context.cookies. It is an ID, not a secret: it
only decides whose history a page shows.
"""

from __future__ import annotations

import re
import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

VISITOR_COOKIE = "es_visitor"
VISITOR_MAX_AGE_S = 400 * 24 * 3600  # the longest lifetime browsers allow
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_visitor_id() -> str:
    return secrets.token_urlsafe(18)


def valid_visitor_id(value: object) -> bool:
    return isinstance(value, str) and _VISITOR_ID.match(value) is not None


def _cookie_value(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == VISITOR_COOKIE:
                    return val
    return None


def _over_https(scope: Scope) -> bool:
    """Served over HTTPS, directly or behind a proxy that says so."""
    if scope.get("scheme") == "https":
        return True
    return any(
        name == b"x-forwarded-proto" and value.split(b",")[0].strip() == b"https"
        for name, value in scope.get("headers", [])
    )


def _wants_page(scope: Scope) -> bool:
    """A browser navigation (the HTML page), not an asset, API call or websocket."""
    if scope["type"] != "http" or scope.get("method") != "GET":
        return False
    path = scope.get("path", "")
    if path.startswith(("/_stcore/", "/static/", "/media/", "/component/", "/kie")):
        return False
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value
    return False


class VisitorCookieMiddleware:
    """Sets the visitor cookie on page loads that do not carry a valid one yet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _wants_page(scope) or valid_visitor_id(_cookie_value(scope)):
            await self.app(scope, receive, send)
            return
        cookie = (
            f"{VISITOR_COOKIE}={new_visitor_id()}; Max-Age={VISITOR_MAX_AGE_S}; Path=/; "
            "HttpOnly; SameSite=Lax"
        )
        if _over_https(scope):
            cookie += "; Secure"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
