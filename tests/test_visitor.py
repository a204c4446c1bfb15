"""The visitor cookie middleware, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from servers import serve
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Route

from studio.visitor import VISITOR_COOKIE, VisitorCookieMiddleware, valid_visitor_id

PAGE = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    async def page(_request):
        return HTMLResponse("<p>page</p>")

    app = Starlette(
        routes=[Route("/", page), Route("/_stcore/health", page)],
        middleware=[Middleware(VisitorCookieMiddleware)],
    )
    with serve(app) as url:
        yield url


def test_a_new_browser_gets_a_long_lived_http_only_cookie(base_url: str) -> None:
    response = requests.get(base_url + "/", headers=PAGE, timeout=5)
    header = response.headers["set-cookie"]
    assert valid_visitor_id(response.cookies[VISITOR_COOKIE])
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Max-Age=34560000" in header
    assert "Secure" not in header  # plain HTTP would drop a Secure cookie


def test_a_known_browser_keeps_its_cookie(base_url: str) -> None:
    known = "a" * 24
    response = requests.get(
        base_url + "/", headers=PAGE, cookies={VISITOR_COOKIE: known}, timeout=5
    )
    assert "set-cookie" not in response.headers


def test_a_forged_cookie_value_is_replaced(base_url: str) -> None:
    response = requests.get(
        base_url + "/", headers=PAGE, cookies={VISITOR_COOKIE: "<script>"}, timeout=5
    )
    assert valid_visitor_id(response.cookies[VISITOR_COOKIE])


def test_behind_an_https_proxy_the_cookie_is_secure(base_url: str) -> None:
    response = requests.get(
        base_url + "/", headers={**PAGE, "X-Forwarded-Proto": "https"}, timeout=5
    )
    assert "Secure" in response.headers["set-cookie"]


def test_assets_and_api_calls_get_no_cookie(base_url: str) -> None:
    assert "set-cookie" not in requests.get(base_url + "/_stcore/health", timeout=5).headers
    assert "set-cookie" not in requests.get(base_url + "/", timeout=5).headers  # not a page load
