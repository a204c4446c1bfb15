"""What every benchmark shares: alternating rounds, medians, tables, a load generator,
and the app under `streamlit run` on a free loopback port.

Absolute times mean little on a shared machine, so every figure is a ratio of a
candidate against a baseline measured in the same run, alternating, several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small counts, one round (smoke test)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5)")
    return p


def rounds_of(args: argparse.Namespace, default: int = 5) -> int:
    if args.rounds:
        return args.rounds
    return 1 if args.quick else default


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def alternate(
    rounds: int, candidate: Callable[[int], Any], baseline: Callable[[int], Any]
) -> tuple[list[Any], list[Any]]:
    """Run baseline and candidate alternately `rounds` times (who goes first alternates
    too); returns their results in order."""
    cand: list[Any] = []
    base: list[Any] = []
    for r in range(rounds):
        order = [(candidate, cand), (baseline, base)]
        if r % 2:
            order.reverse()
        for run, out in order:
            out.append(run(r))
    return cand, base


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join([line, rule, *body])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# --- a small HTTP/1.1 keep-alive load generator ------------------------------------------


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else float("nan")

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


def _request(method: str, target: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return status, b"".join(parts)


async def _load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    headers: dict[str, str],
    keep_bodies: bool,
) -> LoadResult:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc
    result = LoadResult()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                started = time.perf_counter()
                writer.write(_request("POST", target, host, body, headers))
                status, answer = await _read_response(reader)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if keep_bodies:
                    result.bodies.append(answer)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def post_load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    *,
    headers: dict[str, str] | None = None,
    keep_bodies: bool = False,
) -> LoadResult:
    """POST each body once over `concurrency` keep-alive connections; time each one."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return asyncio.run(_load(url, bodies, concurrency, all_headers, keep_bodies))


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "STREAMLIT_"))}
    env.update(settings)
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> float:
    """Poll url + /_stcore/health (or url itself) until it answers; seconds waited."""
    import requests

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early (code {process.returncode})")
        try:
            if requests.get(url, timeout=1).ok:
                return time.perf_counter() - started
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def streamlit_cmd(script: str | Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]


@contextmanager
def streamlit_app(
    script: str | Path, env: dict[str, str], log_path: Path, cwd: Path = ROOT
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`streamlit run script` on a free port until healthy; yields (base URL, process)."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            streamlit_cmd(script, port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/_stcore/health", process)
        yield url, process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port; yield its URL.

    uvicorn binds the port itself here, so asyncio sets TCP_NODELAY on every connection
    (a socket bound by hand would wait ~40 ms on Nagle per keep-alive answer)."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name=f"bench-uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the benchmark server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
