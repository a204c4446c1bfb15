"""The real app plus one bare route, for bench/ingest.py.

`streamlit run bench/ingest_app.py` (or `uvicorn bench.ingest_app:app`) serves exactly
what app.py serves, plus POST /bench/bare: a Starlette route that parses the same JSON
and answers 200, behind the same middleware, on the same uvicorn. Setting
BENCH_NODELAY_FIX=0 leaves out the lifespan with the TCP_NODELAY fix (to show what it
fixes); the app itself has no such switch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from studio.server import lifespan, middleware, routes  # noqa: E402

BARE_PATH = "/bench/bare"


async def bare(request: Request) -> JSONResponse:
    data = json.loads(await request.body())
    return JSONResponse({"ok": True, "result": "stored" if data else "orphan"})


app = st.App(
    str(ROOT / "ui.py"),
    routes=[*routes(), Route(BARE_PATH, bare, methods=["POST"])],
    middleware=middleware(),
    lifespan=None if os.environ.get("BENCH_NODELAY_FIX") == "0" else lifespan,
)
