"""The benchmarks must not rot: each runs once in --quick mode and prints its SUMMARY.

Benchmarks are not tests (figures are in bench/README.md); this only checks they run.
The browser ones need Debian's chromium and are skipped without it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ("startup", "callback_to_screen", "memory")


@pytest.mark.parametrize(
    "name", ["ingest", "client", "history", "startup", "callback_to_screen", "memory"]
)
def test_bench_runs_quick(name: str) -> None:
    if name in BROWSER and shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium")
    done = subprocess.run(
        [sys.executable, f"bench/{name}.py", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"SUMMARY {name}:" in done.stdout, done.stdout[-3000:]
