"""Start-up: `streamlit run app.py` until /_stcore/health answers and the first page
has rendered in headless Chromium, vs a one-line Streamlit app; alternating rounds.

    python -m bench.startup [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/<name>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import subprocess
import tempfile
import time

from bench.browser import chromium
from bench.common import (
    ROOT,
    alternate,
    clean_env,
    free_port,
    machine,
    median,
    parser,
    rounds_of,
    stop,
    streamlit_cmd,
    table,
    verdict,
    wait_healthy,
)


def start(script: Path, browser, work: Path, n: int) -> tuple[float, float]:  # noqa: ANN001
    """(seconds to health, seconds to the first page's title) from the launch."""
    port = free_port()
    env = clean_env(KIE_DATABASE_URL=f"sqlite:///{work / f'startup-{n}.db'}")
    started = time.perf_counter()
    with (work / "startup.log").open("ab") as log:
        process = subprocess.Popen(streamlit_cmd(script, port), cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url + "/_stcore/health", process)
        healthy = time.perf_counter() - started
        page = browser.new_page()
        try:
            page.goto(url)
            page.wait_for_selector("h1", timeout=60_000)
            rendered = time.perf_counter() - started
        finally:
            page.close()
        return healthy, rendered
    finally:
        stop(process)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = rounds_of(args)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp, chromium() as browser:
        work = Path(tmp)
        hello = ROOT / "bench" / "hello_app.py"
        counter = iter(range(10_000))
        cand, base = alternate(
            rounds,
            lambda _r: start(ROOT / "app.py", browser, work, next(counter)),
            lambda _r: start(hello, browser, work, next(counter)),
        )
    h_c, h_b = median([c[0] for c in cand]), median([b[0] for b in base])
    r_c, r_b = median([c[1] for c in cand]), median([b[1] for b in base])
    print(f"Start-up, seconds from launch ({machine()}; {rounds} rounds)")
    print(table(["until", "app.py s", "one-line app s", "ratio"], [
        ["/_stcore/health answers", h_c, h_b, h_c / h_b],
        ["first page rendered (h1)", r_c, r_b, r_c / r_b],
    ]))
    ratio = r_c / r_b
    print(f"SUMMARY startup: app.py / one-line app = {ratio:.2f}x to first page "
          f"({h_c / h_b:.2f}x to health) (target <= 1.3, {verdict(ratio <= 1.3)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
