"""History scale: one run of the Tasks page (AppTest) with 10, 100, 1,000 and 10,000
tasks in the store; each size against 10 tasks, alternating, several rounds.

Two timings per size: the first render of the page in a fresh session (switch_page,
then run) and one rerun of that session.

    python -m bench.history [--quick]     # quick: 10 vs 100 and 1,000, one round
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/<name>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import os
import tempfile
import time

from bench.common import ROOT, alternate, machine, median, parser, rounds_of, serve, table, verdict

VISITOR = "bench-visitor"


def seed(db_url: str, count: int) -> None:
    from studio.store import TaskStore

    store = TaskStore(db_url)
    try:
        records = [
            {
                "task_id": f"bench-{n:06d}",
                "submitted_at": f"2026-01-01T00:00:{n % 60:02d}+00:00",
                "request": {"model": "V4_5", "title": f"Bench {n}", "prompt": "A bridge"},
                "stage": "complete",
                "code": 200,
                "msg": "All generated successfully.",
                "tracks": [
                    {
                        "id": f"trk-{n}-{k}",
                        "title": f"Bench {n}",
                        "audio_url": f"https://cdn.example/{n}-{k}.mp3",
                        "image_url": f"https://cdn.example/{n}-{k}.png",
                        "duration": 180.0,
                        "tags": "jazz",
                    }
                    for k in range(2)
                ],
            }
            for n in range(count)
        ]
        store.import_records(VISITOR, records)
    finally:
        store.close()


def render(db_url: str) -> tuple[float, float]:
    """(first render, rerun) of the Tasks page, in ms."""
    from streamlit.testing.v1 import AppTest

    from studio.session import Keys

    os.environ["KIE_DATABASE_URL"] = db_url
    at = AppTest.from_file(str(ROOT / "ui.py"), default_timeout=60)
    at.session_state[Keys.VISITOR_FALLBACK] = VISITOR
    at.switch_page("pages/tasks.py")
    started = time.perf_counter()
    at.run()
    first = (time.perf_counter() - started) * 1000
    assert not at.exception, at.exception
    started = time.perf_counter()
    at.run()
    rerun = (time.perf_counter() - started) * 1000
    assert not at.exception, at.exception
    return first, rerun


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = rounds_of(args)
    sizes = (100, 1_000) if args.quick else (100, 1_000, 10_000)
    from kie.sandbox import create_app

    rows = []
    at_1000 = float("nan")
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp, serve(
        create_app(stage_delay_s=0.1)
    ) as sandbox:
        os.environ.pop("KIE_API_KEY", None)
        os.environ["KIE_SANDBOX_URL"] = sandbox
        urls = {}
        for size in (10, *sizes):
            urls[size] = f"sqlite:///{Path(tmp) / f'tasks-{size}.db'}"
            seed(urls[size], size)
        render(urls[10])  # warm-up: imports, caches
        for size in sizes:
            cand, base = alternate(rounds, lambda _r, s=size: render(urls[s]),
                                   lambda _r: render(urls[10]))
            first_c, first_b = median([c[0] for c in cand]), median([b[0] for b in base])
            rerun_c, rerun_b = median([c[1] for c in cand]), median([b[1] for b in base])
            rows.append([f"{size:,}", first_c, first_b, first_c / first_b,
                         rerun_c, rerun_b, rerun_c / rerun_b])
            if size == 1_000:
                at_1000 = first_c / first_b
    print(f"Tasks page with N tasks vs 10 tasks, AppTest ({machine()}; {rounds} rounds)")
    print(table(["tasks", "first ms", "10 tasks ms", "ratio", "rerun ms", "10 tasks rerun ms",
                 "rerun ratio"], rows))
    print(f"SUMMARY history: Tasks page 1,000 / 10 tasks = {at_1000:.2f}x first render "
          f"(target <= 1.5, {verdict(at_1000 <= 1.5)}); "
          + "; ".join(f"{r[0]}: {r[3]:.2f}x first, {r[6]:.2f}x rerun" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
