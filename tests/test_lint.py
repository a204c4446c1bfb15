"""The house rules as checks: ruff (incl. security and blind-except rules) on the whole
tree, and mypy --strict on the kie package (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kie_package_type_checks_strictly() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
