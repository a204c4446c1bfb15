"""The server-side reconciler: record-info checks that do not wait for a visitor.

A background thread of the server (started and stopped by studio.server's lifespan)
that, with the host's Kie access, does two things off the request path:

- **confirm**: a task a callback called `complete` is checked against record-info
  before its tracks count as trusted. Kie signs only `task_id.timestamp`, not the
  body, so a signed callback can still carry forged tracks (e.g. a replayed signature
  with a new body inside the 5-minute window). Record-info wins any disagreement; the
  disagreement goes to the log (field names and values with URL query strings cut, no
  keys) and to the task's check row (TaskStore.confirmation).
- **poll**: a task with no callback for `quiet_after_s` (2 min) is polled every
  `poll_every_s` (30 s) until it ends, whoever submitted it.

Every record-info request goes through one pacer: at most `max_rps` (3) requests per
second in all, hence at most 3 per second for any one task (Kie's limit). A failed
request is not retried on the spot (the next due time retries it), so stopping is
prompt. Which Kie it asks: the host's `KIE_API_KEY` at `KIE_BASE_URL`; in sandbox mode
(no host key, or `KIE_SANDBOX=1`) the built-in sandbox of this very server
(http://127.0.0.1:<server.port>/kie-sandbox, or `KIE_SANDBOX_URL`). Tasks submitted
with a visitor's own key (Settings page) are unknown to the host's account: their
checks end "unverifiable" after `max_confirm_attempts` tries and the visitor's Tasks
page keeps polling them with the visitor's key.

Environment knobs (for tests and demos): `KIE_RECONCILE=0` turns it off;
`KIE_RECONCILE_QUIET_S`, `KIE_RECONCILE_EVERY_S`, `KIE_RECONCILE_TICK_S` shorten the
quiet time, the poll/retry interval and the loop period.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kie.client import KieClient, RetryPolicy
from kie.errors import KieError
from studio.store import TaskStore

log = logging.getLogger(__name__)

ENABLED_ENV = "KIE_RECONCILE"
QUIET_ENV = "KIE_RECONCILE_QUIET_S"
EVERY_ENV = "KIE_RECONCILE_EVERY_S"
TICK_ENV = "KIE_RECONCILE_TICK_S"

QUIET_AFTER_S = 120.0
POLL_EVERY_S = 30.0
TICK_S = 5.0
MAX_RPS = 3.0
MAX_CONFIRM_ATTEMPTS = 10
BATCH = 20
MAX_BACKOFF_S = 600.0
# One try per call: the loop retries at the next due time, and stop() stays prompt.
NO_RETRY = RetryPolicy(max_tries=1)


@dataclass
class Pass:
    """What one run_once did."""

    confirmed: int = 0
    corrected: int = 0
    pending: int = 0
    polled: int = 0
    failed: int = 0
    requests: int = 0


class Reconciler:
    """Confirms completed tasks and polls quiet ones against record-info."""

    def __init__(
        self,
        store: TaskStore,
        client: Callable[[], KieClient | None],
        *,
        quiet_after_s: float = QUIET_AFTER_S,
        poll_every_s: float = POLL_EVERY_S,
        confirm_retry_s: float | None = None,
        tick_s: float = TICK_S,
        max_rps: float = MAX_RPS,
        max_confirm_attempts: int = MAX_CONFIRM_ATTEMPTS,
        batch: int = BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_rps <= 0 or max_rps > MAX_RPS:
            raise ValueError(f"max_rps must be in (0, {MAX_RPS}] (Kie's limit per task).")
        self.store = store
        self._client_factory = client
        self._client: KieClient | None = None
        self.quiet_after_s = quiet_after_s
        self.poll_every_s = poll_every_s
        self.confirm_retry_s = poll_every_s if confirm_retry_s is None else confirm_retry_s
        self.tick_s = tick_s
        self.min_gap_s = 1.0 / max_rps
        self.max_confirm_attempts = max_confirm_attempts
        self.batch = batch
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_request = float("-inf")
        self._failures: dict[str, tuple[int, float]] = {}  # task -> (count, not before)

    # --- life --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="kie-reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop and wait for it (an HTTP call in flight may finish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        log.info(
            "reconciler started: poll after %.0f s quiet, every %.0f s, at most %.1f req/s",
            self.quiet_after_s,
            self.poll_every_s,
            1 / self.min_gap_s,
        )
        while not self._stop.wait(self.tick_s):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the loop must outlive any one bad pass
                log.exception("reconciler pass failed")

    # --- one pass ----------------------------------------------------------------------

    def run_once(self) -> Pass:
        """Confirm what is due, then poll what is due; one record-info call per task."""
        done = Pass()
        client = self._get_client()
        if client is None:
            return done
        now = self.clock()
        confirm = self.store.tasks_to_confirm(
            now=now, retry_every_s=self.confirm_retry_s, limit=self.batch
        )
        poll = self.store.tasks_to_poll_all(
            now=now,
            quiet_after_s=self.quiet_after_s,
            every_s=self.poll_every_s,
            limit=self.batch,
        )
        for task_id in dict.fromkeys([*confirm, *poll]):
            if self._stop.is_set():
                break
            if not self._due(task_id, now):
                continue
            self._check(client, task_id, done)
        return done

    def _check(self, client: KieClient, task_id: str, done: Pass) -> None:
        if not self._pace():
            return
        done.requests += 1
        try:
            info = client.get_task(task_id)
        except KieError as exc:
            done.failed += 1
            self._failed(task_id)
            reason = f"record-info failed: {type(exc).__name__} (code {exc.code})"
            verdict = self.store.note_check_failed(
                task_id, reason, at=self.clock(), max_attempts=self.max_confirm_attempts
            )
            if verdict == "n/a":
                self.store.mark_polled(task_id, polled_at=self.clock())
            log.info("reconciler: task %r: %s", task_id[:80], reason)
            return
        self._failures.pop(task_id, None)
        if info.task_id != task_id:
            info = info.model_copy(update={"task_id": task_id})
        result = self.store.reconcile(
            info, at=self.clock(), max_attempts=self.max_confirm_attempts
        )
        done.polled += 1
        if result.verdict == "corrected":
            done.corrected += 1
            log.warning(
                "record-info disagrees with the callbacks of task %r; record-info wins: %s",
                task_id[:80],
                "; ".join(result.differences)[:2000],
            )
        elif result.verdict == "confirmed":
            done.confirmed += 1
        elif result.verdict in ("pending", "unverifiable"):
            done.pending += 1
            log.info("reconciler: task %r: record-info says %s", task_id[:80], info.status)

    # --- pacing and backoff -------------------------------------------------------------

    def _pace(self) -> bool:
        """Wait for this request's slot (at most max_rps in all); False when stopping."""
        wait = self._last_request + self.min_gap_s - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return False
        self._last_request = time.monotonic()
        return True

    def _due(self, task_id: str, now: float) -> bool:
        failures = self._failures.get(task_id)
        return failures is None or now >= failures[1]

    def _failed(self, task_id: str) -> None:
        count = self._failures.get(task_id, (0, 0.0))[0] + 1
        backoff = min(MAX_BACKOFF_S, self.poll_every_s * 2 ** min(count, 10))
        self._failures[task_id] = (count, self.clock() + backoff)
        if len(self._failures) > 10_000:  # bounded memory
            self._failures.pop(next(iter(self._failures)))

    def _get_client(self) -> KieClient | None:
        if self._client is None:
            try:
                self._client = self._client_factory()
            except Exception:  # noqa: BLE001 - a bad key is logged, not fatal
                log.exception("reconciler: cannot make a Kie client")
                return None
        return self._client


# --- wiring ----------------------------------------------------------------------------


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, default)
        return default
    return value if value >= 0 else default


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def from_environment(port: int) -> Reconciler | None:
    """The reconciler for this server (None when KIE_RECONCILE=0), not started yet."""
    if not enabled():
        return None
    from studio import runtime
    from studio.session import SANDBOX_KEY, SANDBOX_URL_ENV

    settings = runtime.host()
    store = runtime.store_for(settings)

    def client() -> KieClient:
        if settings.sandbox:
            base = os.environ.get(SANDBOX_URL_ENV) or runtime.sandbox_base_url(port)
            key = SANDBOX_KEY
        else:
            base, key = settings.base_url, str(settings.api_key)
        return KieClient(api_key=key, base_url=base, timeout=10, retry=NO_RETRY)

    every = _env_float(EVERY_ENV, POLL_EVERY_S)
    return Reconciler(
        store,
        client,
        quiet_after_s=_env_float(QUIET_ENV, QUIET_AFTER_S),
        poll_every_s=every,
        tick_s=_env_float(TICK_ENV, min(TICK_S, every) or TICK_S),
    )
