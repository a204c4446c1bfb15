"""Serving generated media: a bounded cache and HTTP Range answers.

Audio and covers are regenerated on demand from a track's seed; the cache only saves
the work for recently played files and is bounded by total bytes.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

DEFAULT_CACHE_BYTES = 32 * 1024 * 1024


class MediaCache:
    """A least-recently-used cache of generated files, bounded by total bytes."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get_or_make(self, key: str, make: Callable[[], bytes]) -> bytes:
        """The cached bytes for `key`, made (outside the lock) when missing."""
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                return cached
        made = make()
        with self._lock:
            if key not in self._items:
                self._items[key] = made
                self._size += len(made)
            while self._size > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)
        return made

    @property
    def size(self) -> int:
        with self._lock:
            return self._size


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, length: int) -> tuple[int, int] | None | str:
    """The (first, last) byte of a single-range header, None to send it all, or
    "unsatisfiable". Multiple ranges are answered with the whole file (allowed)."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match:
        return None
    start_text, end_text = match.groups()
    if not start_text and not end_text:
        return None
    if not start_text:  # suffix: the last N bytes
        suffix = int(end_text)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, length - suffix), length - 1
    start = int(start_text)
    end = int(end_text) if end_text else length - 1
    if start >= length or end < start:
        return "unsatisfiable"
    return start, min(end, length - 1)


def file_response(request: Request, body: bytes, media_type: str) -> Response:
    """The whole body (200) or the requested byte range (206 / 416)."""
    length = len(body)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "public, max-age=86400"}
    header = request.headers.get("range")
    wanted = parse_range(header, length) if header else None
    if wanted == "unsatisfiable":
        headers["Content-Range"] = f"bytes */{length}"
        return Response(b"", status_code=416, headers=headers, media_type=media_type)
    if isinstance(wanted, tuple):
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{length}"
        return Response(
            body[start : end + 1], status_code=206, headers=headers, media_type=media_type
        )
    return Response(body, status_code=200, headers=headers, media_type=media_type)
