"""A scriptable HTTP server on loopback, for testing clients over the real wire.

    server = FakeServer()
    server.script("/api/v1/chat/credit", Reply(status=503), Reply.envelope(data=7))
    ... KieClient(base_url=server.url) ...
    assert server.count("/api/v1/chat/credit") == 2
    server.close()

Each path answers with its scripted replies in order; the last one repeats. A path
never scripted answers 404. Every request received is recorded (method, path, query,
headers, body, client port).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait after reading the request, before answering."""
    drop: Literal["close", "reset"] | None = None
    """After reading the request: close the connection without an answer, or reset it."""

    @classmethod
    def json(cls, obj: Any, status: int = 200, **kwargs: Any) -> Reply:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return cls(status=status, body=json.dumps(obj).encode(), headers=headers, **kwargs)

    @classmethod
    def envelope(
        cls,
        code: int = 200,
        msg: str = "success",
        data: Any = None,
        status: int = 200,
        **kwargs: Any,
    ) -> Reply:
        return cls.json({"code": code, "msg": msg, "data": data}, status=status, **kwargs)


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client_port: int

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1, port chosen by the OS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._counts: defaultdict[str, int] = defaultdict(int)
        self.received: list[Received] = []
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer requests to `path` with `replies` in order; the last one repeats."""
        with self._lock:
            self._scripts[path] = list(replies)

    def count(self, path: str | None = None) -> int:
        """Requests received for `path` (all paths when None)."""
        with self._lock:
            return sum(self._counts.values()) if path is None else self._counts[path]

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_reply(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            self._counts[request.path] += 1
            replies = self._scripts.get(request.path)
            if not replies:
                return Reply.envelope(404, "no such path", status=404)
            return replies.pop(0) if len(replies) > 1 else replies[0]


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real API
        disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            reply = server._next_reply(
                Received(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers=dict(self.headers.items()),
                    body=body,
                    client_port=self.client_address[1],
                )
            )
            if reply.delay and server._stopping.wait(reply.delay):
                reply = Reply(drop="close")
            if reply.drop:
                self.close_connection = True
                if reply.drop == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                return
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:
                self.close_connection = True  # the client gave up (e.g. its timeout)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output quiet

    return Handler
