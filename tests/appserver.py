"""Runs the real app (`streamlit run app.py`) on a free loopback port for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment for a fresh app: no host KIE_* settings leak in, its own store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "STREAMLIT_"))}
    env["KIE_DATABASE_URL"] = f"sqlite:///{data_dir / 'extend-studio.db'}"
    env["KIE_SANDBOX_STAGE_DELAY_S"] = "0.4"
    env.update(settings)
    return env


@dataclass
class AppServer:
    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "streamlit.log"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "app.py",
                "--server.port", str(self.port),
                "--server.address", "127.0.0.1",
                "--server.headless", "true",
                "--server.fileWatcherType", "none",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/_stcore/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the app did not start:\n{self.log_path.read_text()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_app(data_dir: Path, **settings: str) -> Iterator[AppServer]:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = AppServer(data_dir=data_dir, env=app_env(data_dir, **settings))
    server.start()
    try:
        yield server
    finally:
        server.stop()
