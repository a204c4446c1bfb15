"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakeserver import FakeServer


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A scriptable HTTP server on loopback (see tests/fakeserver.py)."""
    with FakeServer() as server:
        yield server


# --- --run-slow (tests/reliability): long soak runs are skipped unless asked for ---------
# Here rather than in tests/reliability/conftest.py: pytest only honours pytest_addoption
# in conftest files it loads at start-up, and this one always is.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="run the full-length reliability soaks (tests marked slow)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long soak: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
