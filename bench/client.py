"""Client overhead: KieClient.extend vs a bare requests.Session.post of the same JSON.

Both talk to the same loopback server (uvicorn in a thread) answering Kie's envelope,
alternating, several rounds; the ratio is of the median time per call.

    python -m bench.client [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/<name>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import time

from bench.common import alternate, machine, median, parser, rounds_of, serve, table, verdict

ROOT_PATH = "/api/v1/generate/extend"
REQUEST = {
    "defaultParamFlag": True,
    "audioId": "e231f6d2-0000-4bd6-9b3c-0ad6a5e1a0f1",
    "prompt": "A gentle bridge into the last chorus",
    "style": "Classical",
    "title": "Peaceful Piano Extended",
    "continueAt": 60,
    "model": "V4_5",
    "callBackUrl": "https://studio.example/kie/callback?token=abc",
}


def server_app():  # noqa: ANN201 - a Starlette app
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def extend(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"code": 200, "msg": "success", "data": {"taskId": "bench-task"}})

    return Starlette(routes=[Route(ROOT_PATH, extend, methods=["POST"])])


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = rounds_of(args)
    calls = 50 if args.quick else 500

    import requests

    from kie import ExtendRequest, KieClient

    request = ExtendRequest.model_validate(REQUEST)
    with serve(server_app()) as base:
        client = KieClient(api_key="bench-key", base_url=base, timeout=30)
        session = requests.Session()
        session.headers.update({"Authorization": "Bearer bench-key"})
        url = base + ROOT_PATH

        def candidate(_r: int) -> float:
            started = time.perf_counter()
            for _ in range(calls):
                assert client.extend(request) == "bench-task"
            return (time.perf_counter() - started) / calls * 1000

        def baseline(_r: int) -> float:
            started = time.perf_counter()
            for _ in range(calls):
                response = session.post(url, json=REQUEST, timeout=(5, 30))
                assert response.json()["data"]["taskId"] == "bench-task"
            return (time.perf_counter() - started) / calls * 1000

        candidate(0), baseline(0)  # warm-up: connections, imports
        cand, base_runs = alternate(rounds, candidate, baseline)
        client.close()
        session.close()
    c, b = median(cand), median(base_runs)
    print(f"Client overhead ({machine()}; {rounds} rounds, {calls} calls per run)")
    print(table(["call", "ms per call (median)", "min", "max"], [
        ["KieClient.extend", c, min(cand), max(cand)],
        ["requests.Session.post", b, min(base_runs), max(base_runs)],
    ]))
    ratio = c / b
    print(f"SUMMARY client: KieClient.extend / Session.post = {ratio:.2f}x "
          f"(target <= 1.15, {verdict(ratio <= 1.15)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
