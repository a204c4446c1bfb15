"""Callback ingest: POST /kie/callback on the running app vs a bare Starlette route.

Both routes live in one `streamlit run bench/ingest_app.py` (the real app plus
/bench/bare), so they share the uvicorn, the middleware, the loopback and the load
generator. Every callback is a distinct real event (text, first or complete of a
seeded task), so each one is a real write. Afterwards: callbacks acknowledged with 200
vs rows in the store (lost must be 0).

Second table, the TCP_NODELAY regression check: sequential keep-alive requests to the
bare route under `streamlit run` vs the same app under plain `uvicorn` (ratio near 1),
and, for reference, `streamlit run` with the fix left out (~40 ms per request).

    python -m bench.ingest            # full: 5 rounds, 700 callbacks per run
    python -m bench.ingest --quick    # smoke: 1 round, 60 per run
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/<name>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import json
import subprocess
import tempfile
from contextlib import ExitStack

from bench.common import (
    ROOT,
    alternate,
    clean_env,
    free_port,
    machine,
    median,
    parser,
    post_load,
    rounds_of,
    stop,
    streamlit_app,
    table,
    verdict,
    wait_healthy,
)

LEVELS = (1, 8, 32)
STAGES = ("text", "first", "complete")
VISITOR = "bench-visitor"
APP = ROOT / "bench" / "ingest_app.py"
TRACKS = [
    {
        "id": f"trk-{n}",
        "audio_url": f"https://cdn.example/{n}.mp3",
        "stream_audio_url": f"https://cdn.example/s/{n}",
        "image_url": f"https://cdn.example/{n}.jpg",
        "title": "Night Drive",
        "tags": "jazz, night",
        "duration": 181.2,
        "model_name": "chirp-v4-5",
        "prompt": "[Verse]\nNeon on the rain, the engine hums along",
    }
    for n in ("a", "b")
]


def task_id(n: int) -> str:
    return f"bench-{n:06d}"


def event(i: int) -> bytes:
    """The i-th distinct callback: stage i % 3 of task i // 3."""
    stage = STAGES[i % 3]
    tracks = [] if stage == "text" else TRACKS
    return json.dumps(
        {
            "code": 200,
            "msg": f"{stage} done",
            "data": {"callbackType": stage, "task_id": task_id(i // 3), "data": tracks},
        }
    ).encode()


def seed(db_url: str, tasks: int) -> str:
    """Record `tasks` submitted tasks; return the callback token."""
    from studio.runtime import CALLBACK_TOKEN_NAME
    from studio.store import TaskStore

    store = TaskStore(db_url)
    try:
        for start in range(0, tasks, 10_000):
            records = [
                {
                    "task_id": task_id(n),
                    "submitted_at": "2026-01-01T00:00:00+00:00",
                    "request": {"model": "V4_5", "title": f"Bench {n}"},
                }
                for n in range(start, min(tasks, start + 10_000))
            ]
            store.import_records(VISITOR, records)
        return store.server_secret(CALLBACK_TOKEN_NAME)
    finally:
        store.close()


def count_rows(db_url: str) -> int:
    import sqlalchemy as sa

    from studio.store import TaskStore, callbacks

    store = TaskStore(db_url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(callbacks)).scalar_one())
    finally:
        store.close()


def ingest(base: str, token: str, per_run: int, rounds: int) -> tuple[list[list[str]], dict]:
    callback_url = f"{base}/kie/callback?token={token}"
    bare_url = f"{base}/bench/bare"
    next_event = 0
    acked = 0
    bad = 0
    rows = []
    at32: dict[str, float] = {}
    # warm-up (imports, first connections, the store's engine)
    post_load(bare_url, [event(0)] * 20, 4)
    for level in LEVELS:
        def candidate(_r: int, level: int = level) -> object:
            nonlocal next_event, acked, bad
            bodies = [event(i) for i in range(next_event, next_event + per_run)]
            next_event += per_run
            result = post_load(callback_url, bodies, level, keep_bodies=True)
            for body in result.bodies:
                if json.loads(body).get("result") == "stored":
                    acked += 1
                else:
                    bad += 1
            bad += sum(n for status, n in result.statuses.items() if status != 200)
            return result

        def baseline(_r: int, level: int = level) -> object:
            bodies = [event(i) for i in range(per_run)]
            return post_load(bare_url, bodies, level)

        cand, base_runs = alternate(rounds, candidate, baseline)
        c_rps = median([r.rps for r in cand])
        b_rps = median([r.rps for r in base_runs])
        c_p99 = median([r.p99 for r in cand])
        rows.append(
            [
                level,
                c_rps,
                b_rps,
                c_rps / b_rps,
                median([r.p50 for r in cand]),
                c_p99,
                median([r.p50 for r in base_runs]),
                median([r.p99 for r in base_runs]),
            ]
        )
        if level == 32:
            at32 = {"ratio": c_rps / b_rps, "p99": c_p99}
    return rows, {"sent": next_event, "acked": acked, "bad": bad, **at32}


def sequential(url: str, count: int) -> float:
    """Median ms of `count` sequential keep-alive POSTs."""
    result = post_load(url, [event(0)] * count, 1)
    return median(result.latencies_ms)


def nodelay_check(work: Path, count: int, rounds: int) -> list[list[object]]:
    """Sequential keep-alive: streamlit run (fix on / off) vs plain uvicorn, same app."""
    with ExitStack() as stack:
        urls = {}
        for name, extra in (("on", {}), ("off", {"BENCH_NODELAY_FIX": "0"})):
            env = clean_env(KIE_DATABASE_URL=f"sqlite:///{work / f'{name}.db'}", **extra)
            url, _ = stack.enter_context(streamlit_app(APP, env, work / f"streamlit-{name}.log"))
            urls[name] = url
        port = free_port()
        env = clean_env(KIE_DATABASE_URL=f"sqlite:///{work / 'uvicorn.db'}")
        log = stack.enter_context((work / "uvicorn.log").open("ab"))
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.ingest_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        stack.callback(stop, process)
        urls["uvicorn"] = f"http://127.0.0.1:{port}"
        wait_healthy(urls["uvicorn"] + "/_stcore/health", process)
        bare = {k: v + "/bench/bare" for k, v in urls.items()}
        for url in bare.values():
            sequential(url, 5)
        on, plain = alternate(rounds, lambda _: sequential(bare["on"], count),
                              lambda _: sequential(bare["uvicorn"], count))
        off, _ = alternate(rounds, lambda _: sequential(bare["off"], max(5, count // 10)),
                           lambda _: None)
    m_on, m_plain, m_off = median(on), median(plain), median(off)
    return [
        ["streamlit run (fix on) vs plain uvicorn", m_on, m_plain, m_on / m_plain],
        ["streamlit run (fix OFF) vs plain uvicorn", m_off, m_plain, m_off / m_plain],
    ]


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = rounds_of(args)
    per_run = 60 if args.quick else 700
    seq = 20 if args.quick else 200
    total = per_run * rounds * len(LEVELS)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work / 'ingest.db'}"
        token = seed(db_url, -(-total // 3))
        env = clean_env(KIE_DATABASE_URL=db_url)
        with streamlit_app(APP, env, work / "streamlit.log") as (base, _process):
            rows, totals = ingest(base, token, per_run, rounds)
        stored = count_rows(db_url)
        nodelay = nodelay_check(work, seq, rounds)
    print(f"Callback ingest ({machine()}; {rounds} rounds, {per_run} callbacks per run)")
    print(table(
        ["concurrent", "callback req/s", "bare req/s", "ratio", "cb p50 ms", "cb p99 ms",
         "bare p50 ms", "bare p99 ms"],
        rows,
    ))
    lost = totals["acked"] - stored
    print(f"callbacks: sent {totals['sent']}, acknowledged 'stored' {totals['acked']}, "
          f"other answers {totals['bad']}, rows in store {stored}, lost {lost}")
    print()
    print(f"Sequential keep-alive POSTs to the bare route (median ms, {seq} per run)")
    print(table(["server", "ms", "plain uvicorn ms", "ratio"], nodelay))
    ratio, p99, nodelay_ratio = totals["ratio"], totals["p99"], nodelay[0][3]
    ok = ratio >= 0.6 and p99 <= 50 and lost == 0 and totals["bad"] == 0 and nodelay_ratio < 2
    print(
        f"SUMMARY ingest: callback/bare req/s at 32 = {ratio:.2f}x (target >= 0.6, "
        f"{verdict(ratio >= 0.6)}); p99 at 32 = {p99:.1f} ms (target <= 50, "
        f"{verdict(p99 <= 50)}); lost {lost} of {totals['sent']}; "
        f"keep-alive streamlit run/uvicorn = {nodelay_ratio:.2f}x "
        f"(fix off: {nodelay[1][3]:.0f}x) -> {verdict(ok)}"
    )
    return 0 if totals["bad"] == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
