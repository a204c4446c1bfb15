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
