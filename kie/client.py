"""KieClient: the one place that talks HTTP to the Kie API.

One `requests.Session` per client carries the Bearer header; every call has explicit
(connect, read) timeouts; every answer is read by its body `code` as well as its HTTP
status; every failure leaves as a KieError. `extend` (a paid job) is sent exactly once:
when its answer is lost after sending, the caller gets OutcomeUnknownError and decides.
The read calls retry per RetryPolicy, the one home of every retry number.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn

import requests
from pydantic import ValidationError
from urllib3.exceptions import NewConnectionError

from kie.errors import (
    ERRORS_BY_CODE,
    KieConnectionError,
    KieError,
    KieResponseError,
    KieTimeoutError,
    OutcomeUnknownError,
    RateLimitError,
    ServerError,
    error_for,
)
from kie.models import Envelope, ExtendRequest, TaskInfo

__all__ = ["KieClient", "RetryPolicy"]

log = logging.getLogger("kie")

DEFAULT_BASE_URL = "https://api.kie.ai"
EXTEND_PATH = "/api/v1/generate/extend"
RECORD_INFO_PATH = "/api/v1/generate/record-info"
CREDIT_PATH = "/api/v1/chat/credit"
SUCCESS_CODE = 200
MAX_MSG_CHARS = 300  # Kie's msg (or an error page) is cut to this in exception messages


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long the read calls (record-info, credit) wait before trying again.

    `extend` never retries: a second POST could start a second paid job.
    """

    max_tries: int = 5
    """Tries in all, the first one included."""
    base_delay: float = 0.5
    """Seconds before the first retry; doubles on each further one."""
    max_delay: float = 8.0
    """Longest computed backoff, in seconds."""
    jitter: float = 0.25
    """Each computed backoff is shortened by a random fraction up to this."""
    max_retry_after: float = 30.0
    """A server's Retry-After is honoured up to this many seconds."""
    retry_on: tuple[type[KieError], ...] = (RateLimitError, ServerError, KieConnectionError)
    """Failures worth another try: 429, 5xx, no answer or a broken one."""

    def should_retry(self, error: KieError, tries: int) -> bool:
        """Whether another try is due after `tries` tries ended in `error`."""
        return tries < self.max_tries and isinstance(error, self.retry_on)

    def delay(self, tries: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `tries`-th try failed."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (tries - 1))
        return backoff * (1 - self.jitter * random.random())  # noqa: S311 - not crypto


class KieClient:
    """A client of the Kie Suno API: extend a track, read a task, read the credits."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30,
        *,
        connect_timeout: float = 5,
        retry: RetryPolicy | None = None,
    ) -> None:
        key = api_key.strip()
        if not key or not key.isascii() or not key.isprintable() or " " in key:
            # Never echo the value: it is a secret even when it is malformed.
            raise ValueError("The API key is empty or contains spaces or unusual characters.")
        self._api_key = key
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, timeout)
        self.retry = retry or RetryPolicy()
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {key}",
                "Accept": "application/json",
                "User-Agent": "extend-studio-kie",
            }
        )

    def __repr__(self) -> str:
        return f"KieClient(base_url={self.base_url!r}, api_key='***', timeout={self.timeout!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> KieClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the API ---------------------------------------------------------------------

    def extend(self, req: ExtendRequest) -> str:
        """Start an extend task; returns its task id. Sent once, never retried."""
        response = self._send("POST", EXTEND_PATH, json=req.to_wire(), paid=True)
        data = self._data(response)
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id.strip():
            raise KieResponseError("the answer has no data.taskId")
        log.info("extend started task %s", task_id)
        return task_id

    def get_task(self, task_id: str) -> TaskInfo:
        """The task's status and tracks (record-info)."""
        data = self._read(RECORD_INFO_PATH, {"taskId": task_id})
        try:
            return TaskInfo.model_validate(data)
        except ValidationError as exc:
            raise KieResponseError("the task details are not in the documented shape") from exc

    def get_credits(self) -> int:
        """The account's remaining credits."""
        data = self._read(CREDIT_PATH, None)
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        if not isinstance(data, int) or isinstance(data, bool):
            raise KieResponseError("the credit balance is not a whole number")
        return data

    # --- the wire --------------------------------------------------------------------

    def _read(self, path: str, params: dict[str, str] | None) -> Any:
        """GET `path` and return the envelope's data, retrying per the policy."""
        tries = 0
        while True:
            tries += 1
            retry_after: float | None = None
            try:
                response = self._send("GET", path, params=params)
                retry_after = _retry_after(response)
                return self._data(response)
            except KieError as exc:
                if not self.retry.should_retry(exc, tries):
                    raise
                wait = self.retry.delay(tries, retry_after)
                log.warning(
                    "GET %s failed (%s); try %d of %d in %.2f s",
                    path,
                    type(exc).__name__,
                    tries + 1,
                    self.retry.max_tries,
                    wait,
                )
            time.sleep(wait)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        paid: bool = False,
    ) -> requests.Response:
        """One HTTP exchange; transport failures become KieConnectionError and kin."""
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.info("%s %s failed: %s", method, path, type(exc).__name__)
            self._raise_transport(exc, paid=paid)
        log.debug(
            "%s %s -> HTTP %d in %.0f ms",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _raise_transport(self, exc: requests.RequestException, *, paid: bool) -> NoReturn:
        sent = not _nothing_sent(exc)
        if isinstance(exc, requests.Timeout) and sent:
            what = f"no answer within {self.timeout[1]:g} s"
        elif isinstance(exc, requests.Timeout):
            what = f"could not connect within {self.timeout[0]:g} s"
        elif sent:
            what = "the connection broke before the answer arrived"
        else:
            what = "could not connect"
        detail = self._scrub(f"{what}: {self.base_url}")
        if paid and sent:
            raise OutcomeUnknownError(detail) from exc
        if isinstance(exc, requests.Timeout):
            raise KieTimeoutError(detail) from exc
        raise KieConnectionError(detail) from exc

    def _data(self, response: requests.Response) -> Any:
        """The envelope's data, or the KieError its code (or HTTP status) stands for."""
        status = response.status_code
        envelope = _envelope(response)
        if envelope is not None and envelope.code != SUCCESS_CODE:
            raise error_for(
                envelope.code, self._scrub(envelope.msg), retry_after=_retry_after(response)
            )
        if status >= 400 or envelope is None:
            raise self._status_error(response)
        return envelope.data

    def _status_error(self, response: requests.Response) -> KieError:
        """The failure for an answer that carries no envelope (or contradicts its own)."""
        status = response.status_code
        msg = self._scrub(f"HTTP {status} {response.reason or ''}".strip())
        if status in ERRORS_BY_CODE and status < 500:
            return error_for(status, msg, retry_after=_retry_after(response))
        if status >= 500:
            return ServerError(msg, code=status)
        if status >= 300:
            return KieResponseError(msg)
        return KieResponseError(f"{msg}: the answer is not the documented JSON envelope")

    def _scrub(self, text: str) -> str:
        """`text` cut short, with the API key masked should a server echo it back."""
        return text.replace(self._api_key, "***")[:MAX_MSG_CHARS]


def _envelope(response: requests.Response) -> Envelope | None:
    """The {code, msg, data} body, or None when the body is something else."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    msg = body.get("msg")
    return Envelope(code=code, msg="" if msg is None else str(msg), data=body.get("data"))


def _nothing_sent(exc: requests.RequestException) -> bool:
    """Whether the request certainly never reached the server (the connection failed)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.InvalidURL):
        return True
    if isinstance(
        exc,
        requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidHeader
        | requests.exceptions.SSLError
        | requests.exceptions.ProxyError,
    ):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)
    return False


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
