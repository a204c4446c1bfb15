"""Memory: resident memory (RSS) of `streamlit run app.py` right after start, after
10,000 stored tasks and 1,000 callbacks with the Tasks page open, and after a second
1,000 (growth between the two batches should be near zero: caches are bounded).

    python -m bench.memory [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/<name>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tempfile
import time

from bench.common import clean_env, machine, parser, post_load, rss_mb, streamlit_app, table
from bench.history import VISITOR, seed
from bench.ingest import event


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    tasks = 1_000 if args.quick else 10_000
    batch = 200 if args.quick else 1_000
    from studio.runtime import CALLBACK_TOKEN_NAME
    from studio.store import TaskStore

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work / 'memory.db'}"
        env = clean_env(KIE_DATABASE_URL=db_url)
        with streamlit_app("app.py", env, work / "streamlit.log") as (url, process):
            time.sleep(1)
            rows.append(["right after start", rss_mb(process.pid)])
            seed(db_url, tasks)  # tasks bench-000000..., each with two tracks
            store = TaskStore(db_url)
            token = store.server_secret(CALLBACK_TOKEN_NAME)
            store.close()
            cb_url = f"{url}/kie/callback?token={token}"
            # events 0.. go to tasks bench-000000.. (already complete: stored, no change)
            for start, label in ((0, "first"), (batch, "second")):
                result = post_load(cb_url, [event(i) for i in range(start, start + batch)], 8)
                assert result.statuses == {200: batch}, result.statuses
                _render_tasks_page(url, db_url)
                rows.append([f"{tasks:,} tasks + {label} {batch:,} callbacks", rss_mb(process.pid)])
    base = rows[0][1]
    table_rows = [[label, mb, mb - base] for label, mb in rows]
    growth = rows[2][1] - rows[1][1]
    print(f"Resident memory of the app ({machine()}; VISITOR {VISITOR})")
    print(table(["when", "RSS MiB", "vs start MiB"], table_rows))
    print(f"SUMMARY memory: {rows[0][1]:.0f} MiB at start, {rows[1][1]:.0f} MiB after "
          f"{tasks:,} tasks + {batch:,} callbacks ({rows[1][1] / rows[0][1]:.2f}x); "
          f"{growth:+.1f} MiB over the next {batch:,} callbacks")
    return 0


def _render_tasks_page(url: str, db_url: str) -> None:
    """Open the Tasks page once in headless Chromium (the app builds its views)."""
    from bench.browser import chromium

    with chromium() as browser:
        page = browser.new_page()
        page.goto(url + "/tasks")
        page.wait_for_selector("h1", timeout=60_000)
        page.wait_for_timeout(1500)
        page.close()


if __name__ == "__main__":
    sys.exit(main())
