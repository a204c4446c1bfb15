"""KieClient over real HTTP on loopback: the wire, the error mapping, the retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from documented import EXTEND_EXAMPLE
from fakeserver import FakeServer, Reply, closed_port_url

from kie import errors
from kie.client import CREDIT_PATH, EXTEND_PATH, RECORD_INFO_PATH, KieClient, RetryPolicy
from kie.models import ExtendRequest

KEY = "sk-test-S3CRET-0123456789abcdef"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.02)

# The response example of the same file.
SPEC_ANSWER = {"code": 200, "msg": "success", "data": {"taskId": "5c79****be8e"}}

RECORD = {
    "taskId": "5c79****be8e",
    "parentMusicId": "e231****-****-****-****-****8cadc7dc",
    "param": '{"prompt": "gentle bridge"}',
    "response": {
        "taskId": "5c79****be8e",
        "sunoData": [
            {"id": "a1", "audioUrl": "https://cdn.example/a1.mp3", "duration": 120.5},
            {"id": "a2", "streamAudioUrl": "https://cdn.example/a2", "duration": 118},
        ],
    },
    "status": "SUCCESS",
    "type": "EXTEND",
    "errorCode": None,
    "errorMessage": None,
}

DOCUMENTED: list[tuple[int, type[errors.KieAPIError]]] = [
    (401, errors.AuthenticationError),
    (402, errors.InsufficientCreditsError),
    (404, errors.NotFoundError),
    (409, errors.ConflictError),
    (422, errors.ValidationFailedError),
    (429, errors.RateLimitError),
    (451, errors.FileFetchError),
    (455, errors.MaintenanceError),
    (500, errors.ServerError),
    (505, errors.FeatureDisabledError),
]


@pytest.fixture
def server(fake_server: FakeServer) -> FakeServer:
    return fake_server


@pytest.fixture
def client(server: FakeServer) -> Iterator[KieClient]:
    with KieClient(KEY, base_url=server.url, timeout=2, connect_timeout=1, retry=FAST) as c:
        yield c


def request() -> ExtendRequest:
    return ExtendRequest.model_validate(EXTEND_EXAMPLE)


# --- the happy path on the wire ----------------------------------------------------


def test_extend_sends_the_documented_body_and_returns_the_task_id(
    server: FakeServer, client: KieClient
) -> None:
    server.script(EXTEND_PATH, Reply.json(SPEC_ANSWER))

    assert client.extend(request()) == "5c79****be8e"

    [sent] = server.requests_to(EXTEND_PATH)
    assert sent.method == "POST"
    assert sent.json() == EXTEND_EXAMPLE
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"


def test_get_task_reads_record_info(server: FakeServer, client: KieClient) -> None:
    server.script(RECORD_INFO_PATH, Reply.envelope(data=RECORD))

    info = client.get_task("5c79****be8e")

    assert server.requests_to(RECORD_INFO_PATH)[0].query == {"taskId": ["5c79****be8e"]}
    assert info.task_id == "5c79****be8e"
    assert info.status == "SUCCESS"
    assert info.param == {"prompt": "gentle bridge"}
    assert [t.id for t in info.tracks] == ["a1", "a2"]
    assert info.tracks[1].playable_url == "https://cdn.example/a2"


def test_get_credits(server: FakeServer, client: KieClient) -> None:
    server.script(CREDIT_PATH, Reply.json({"code": 200, "msg": "success", "data": 100}))

    assert client.get_credits() == 100
    assert server.requests_to(CREDIT_PATH)[0].headers["Authorization"] == f"Bearer {KEY}"


def test_one_session_keeps_the_connection_alive(server: FakeServer, client: KieClient) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=1))

    client.get_credits()
    client.get_credits()

    first, second = server.requests_to(CREDIT_PATH)
    assert first.client_port == second.client_port


def test_base_url_may_end_with_a_slash(server: FakeServer) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=3))
    with KieClient(KEY, base_url=server.url + "/", retry=FAST) as c:
        assert c.get_credits() == 3


# --- every documented code ------------------------------------------------------------


@pytest.mark.parametrize("http_status", ["200", "same"], ids=["http200", "http-status"])
@pytest.mark.parametrize(("code", "cls"), DOCUMENTED, ids=[str(c) for c, _ in DOCUMENTED])
def test_documented_code_raises_its_class(
    server: FakeServer, client: KieClient, code: int, cls: type[errors.KieError], http_status: str
) -> None:
    status = 200 if http_status == "200" else code
    server.script(EXTEND_PATH, Reply.envelope(code, f"kie says {code}", status=status))

    with pytest.raises(cls) as caught:
        client.extend(request())

    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.msg == f"kie says {code}"
    assert f"kie says {code}" in str(caught.value)
    assert server.count(EXTEND_PATH) == 1


def test_http_200_with_code_402_is_insufficient_credits(
    server: FakeServer, client: KieClient
) -> None:
    server.script(CREDIT_PATH, Reply.envelope(402, "Credits insufficient", status=200))

    with pytest.raises(errors.InsufficientCreditsError, match="Credits insufficient"):
        client.get_credits()


def test_envelope_code_wins_over_the_http_status(server: FakeServer, client: KieClient) -> None:
    server.script(EXTEND_PATH, Reply.envelope(422, "prompt too long", status=500))

    with pytest.raises(errors.ValidationFailedError) as caught:
        client.extend(request())
    assert caught.value.code == 422


@pytest.mark.parametrize("code", [430, 405, 999])
def test_unknown_code_shows_code_and_msg(server: FakeServer, client: KieClient, code: int) -> None:
    server.script(EXTEND_PATH, Reply.envelope(code, "slow down please"))

    with pytest.raises(errors.UnknownAPIError) as caught:
        client.extend(request())

    assert caught.value.code == code
    assert str(code) in str(caught.value)
    assert "slow down please" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, errors.AuthenticationError),
        (404, errors.NotFoundError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (502, errors.ServerError),
        (503, errors.ServerError),
        (418, errors.KieResponseError),
        (301, errors.KieResponseError),
    ],
)
def test_http_error_without_envelope_maps_by_status(
    server: FakeServer, client: KieClient, status: int, cls: type[errors.KieError]
) -> None:
    server.script(
        EXTEND_PATH,
        Reply(status, b"<html>nginx</html>", {"Content-Type": "text/html", "Location": "/x"}),
    )

    with pytest.raises(cls) as caught:
        client.extend(request())

    assert type(caught.value) is cls
    assert str(status) in str(caught.value)
    if issubclass(cls, errors.KieAPIError):
        assert caught.value.code == status


# --- transport failures and unreadable answers --------------------------------------


def test_read_timeout_is_kie_timeout_error(server: FakeServer) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=1, delay=1.0))
    one_try = RetryPolicy(max_tries=1)
    with KieClient(KEY, base_url=server.url, timeout=0.2, retry=one_try) as c:
        started = time.monotonic()
        with pytest.raises(errors.KieTimeoutError):
            c.get_credits()
    assert time.monotonic() - started < 0.9


def test_connection_refused_is_kie_connection_error() -> None:
    with KieClient(KEY, base_url=closed_port_url(), retry=FAST) as c:
        with pytest.raises(errors.KieConnectionError) as caught:
            c.get_credits()
        assert type(caught.value) is errors.KieConnectionError

        # Nothing was sent, so extend's outcome is known: a plain connection error.
        with pytest.raises(errors.KieConnectionError) as caught:
            c.extend(request())
        assert type(caught.value) is errors.KieConnectionError


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"<html>Bad gateway</html>", {"Content-Type": "text/html"}),
        Reply(200, b"", {}),
        Reply.json(["not", "an", "envelope"]),
        Reply.json({"msg": "no code", "data": {"taskId": "t"}}),
        Reply.envelope(data=None),
        Reply.envelope(data={"task": "t"}),
        Reply.envelope(data={"taskId": ""}),
        Reply.envelope(data="5c79"),
    ],
    ids=["html", "empty", "list", "no-code", "no-data", "no-taskId", "blank-taskId", "str-data"],
)
def test_unreadable_extend_answer_is_response_error(
    server: FakeServer, client: KieClient, reply: Reply
) -> None:
    server.script(EXTEND_PATH, reply)

    with pytest.raises(errors.KieResponseError):
        client.extend(request())


@pytest.mark.parametrize("data", ["lots", None, True, 1.5, {"credits": 3}])
def test_credits_not_a_whole_number_is_response_error(
    server: FakeServer, client: KieClient, data: Any
) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=data))

    with pytest.raises(errors.KieResponseError):
        client.get_credits()
    assert server.count(CREDIT_PATH) == 1


@pytest.mark.parametrize("data", [None, {"status": "SUCCESS"}, "5c79"])
def test_task_details_in_another_shape_is_response_error(
    server: FakeServer, client: KieClient, data: Any
) -> None:
    server.script(RECORD_INFO_PATH, Reply.envelope(data=data))

    with pytest.raises(errors.KieResponseError):
        client.get_task("5c79")


# --- extend is sent exactly once ------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (Reply.envelope(500, "boom", status=500), errors.ServerError),
        (Reply(503, b"unavailable"), errors.ServerError),
        (
            Reply.envelope(429, "too many", status=429, headers={"Retry-After": "0"}),
            errors.RateLimitError,
        ),
        (Reply.envelope(429, "too many", headers={"Retry-After": "1"}), errors.RateLimitError),
        (Reply.envelope(data={"taskId": "late"}, delay=1.0), errors.OutcomeUnknownError),
        (Reply(drop="close"), errors.OutcomeUnknownError),
        (Reply(drop="reset"), errors.OutcomeUnknownError),
    ],
    ids=["500", "503", "429", "200+429", "read-timeout", "dropped", "reset"],
)
def test_extend_is_never_retried(
    server: FakeServer, reply: Reply, cls: type[errors.KieError]
) -> None:
    server.script(EXTEND_PATH, reply, Reply.json(SPEC_ANSWER))

    with (
        KieClient(KEY, base_url=server.url, timeout=0.3, retry=FAST) as c,
        pytest.raises(cls) as caught,
    ):
        c.extend(request())

    assert type(caught.value) is cls
    assert server.count(EXTEND_PATH) == 1


def test_outcome_unknown_is_a_connection_error_that_says_to_check_first(
    server: FakeServer, client: KieClient
) -> None:
    server.script(EXTEND_PATH, Reply(drop="close"))

    with pytest.raises(errors.KieConnectionError) as caught:
        client.extend(request())

    assert isinstance(caught.value, errors.OutcomeUnknownError)
    assert "Tasks page" in str(caught.value)


# --- the read calls retry --------------------------------------------------------------


def test_get_task_retries_5xx_until_it_succeeds(server: FakeServer, client: KieClient) -> None:
    server.script(
        RECORD_INFO_PATH,
        Reply(503, b"unavailable"),
        Reply.envelope(500, "internal", status=500),
        Reply.envelope(500, "internal", status=200),
        Reply.envelope(data=RECORD),
    )

    assert client.get_task("5c79****be8e").status == "SUCCESS"
    assert server.count(RECORD_INFO_PATH) == 4


def test_get_credits_retries_429_until_it_succeeds(server: FakeServer, client: KieClient) -> None:
    server.script(
        CREDIT_PATH,
        Reply.envelope(429, "slow down", status=429),
        Reply.envelope(429, "slow down", status=200),
        Reply.envelope(data=42),
    )

    assert client.get_credits() == 42
    assert server.count(CREDIT_PATH) == 3


@pytest.mark.parametrize("drop", [Reply(drop="close"), Reply(drop="reset")])
def test_read_calls_retry_broken_connections(
    server: FakeServer, client: KieClient, drop: Reply
) -> None:
    server.script(CREDIT_PATH, drop, Reply.envelope(data=5))

    assert client.get_credits() == 5
    assert server.count(CREDIT_PATH) == 2


def test_read_calls_retry_timeouts(server: FakeServer) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=1, delay=1.0), Reply.envelope(data=6))

    with KieClient(KEY, base_url=server.url, timeout=0.2, retry=FAST) as c:
        assert c.get_credits() == 6
    assert server.count(CREDIT_PATH) == 2


@pytest.mark.parametrize("path", [CREDIT_PATH, RECORD_INFO_PATH])
def test_retry_after_is_honoured(server: FakeServer, client: KieClient, path: str) -> None:
    server.script(
        path,
        Reply.envelope(429, "slow down", status=429, headers={"Retry-After": "0.3"}),
        Reply.envelope(data=RECORD if path == RECORD_INFO_PATH else 7),
    )
    started = time.monotonic()

    client.get_credits() if path == CREDIT_PATH else client.get_task("5c79****be8e")

    assert time.monotonic() - started >= 0.3
    assert server.count(path) == 2


def test_retry_after_is_capped(server: FakeServer) -> None:
    server.script(
        CREDIT_PATH,
        Reply.envelope(429, "slow down", status=429, headers={"Retry-After": "3600"}),
        Reply.envelope(data=8),
    )
    policy = RetryPolicy(base_delay=0.01, max_retry_after=0.05)
    started = time.monotonic()

    with KieClient(KEY, base_url=server.url, retry=policy) as c:
        assert c.get_credits() == 8
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (Reply(503, b"unavailable"), errors.ServerError),
        (Reply.envelope(500, "internal", status=500), errors.ServerError),
        (Reply.envelope(429, "slow down", status=429), errors.RateLimitError),
        (Reply(drop="close"), errors.KieConnectionError),
    ],
    ids=["503", "500", "429", "dropped"],
)
@pytest.mark.parametrize("path", [CREDIT_PATH, RECORD_INFO_PATH])
def test_read_calls_give_up_after_five_tries(
    server: FakeServer, client: KieClient, reply: Reply, cls: type[errors.KieError], path: str
) -> None:
    server.script(path, reply)

    with pytest.raises(cls) as caught:
        client.get_credits() if path == CREDIT_PATH else client.get_task("t")

    assert type(caught.value) is cls
    assert server.count(path) == 5


def test_read_timeouts_give_up_after_five_tries(server: FakeServer) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=1, delay=0.5))

    with (
        KieClient(KEY, base_url=server.url, timeout=0.05, retry=FAST) as c,
        pytest.raises(errors.KieTimeoutError),
    ):
        c.get_credits()
    assert server.count(CREDIT_PATH) == 5


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (401, errors.AuthenticationError),
        (404, errors.NotFoundError),
        (455, errors.MaintenanceError),
        (505, errors.FeatureDisabledError),
    ],
)
def test_read_calls_do_not_retry_lasting_failures(
    server: FakeServer, client: KieClient, code: int, cls: type[errors.KieError]
) -> None:
    server.script(CREDIT_PATH, Reply.envelope(code, "no", status=code))

    with pytest.raises(cls):
        client.get_credits()
    assert server.count(CREDIT_PATH) == 1


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, jitter=0.25)

    for tries, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        for _ in range(20):
            assert full * 0.75 <= policy.delay(tries) <= full
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert policy.delay(1, retry_after=999) == policy.max_retry_after


def test_retry_after_as_http_date(server: FakeServer, client: KieClient) -> None:
    server.script(
        CREDIT_PATH,
        Reply.envelope(
            429, "slow down", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
        ),
        Reply.envelope(data=9),
    )
    # A date in the past means "now".
    assert client.get_credits() == 9


# --- the key stays secret ---------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply.envelope(401, f"Invalid key: Bearer {KEY}", status=401),
        Reply.envelope(500, f"failed for {KEY}", status=500),
        Reply(500, f"<pre>Authorization: Bearer {KEY}</pre>".encode()),
        Reply(200, b"not json"),
        Reply(drop="close"),
        Reply.envelope(data=1, delay=0.5),
        Reply.envelope(430, KEY),
    ],
    ids=["401-echo", "500-echo", "html-echo", "not-json", "dropped", "timeout", "unknown"],
)
def test_the_key_never_leaks(
    server: FakeServer, reply: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(EXTEND_PATH, reply)
    server.script(CREDIT_PATH, reply)
    seen: list[str] = []

    with KieClient(KEY, base_url=server.url, timeout=0.1, retry=FAST) as c:
        seen.append(repr(c))
        for call in (lambda: c.extend(request()), c.get_credits):
            with pytest.raises(errors.KieError) as caught:
                call()
            seen += [str(caught.value), repr(caught.value), caught.value.msg]

    seen += [record.getMessage() for record in caplog.records]
    seen += [caplog.text]
    assert caplog.records, "the client logs its calls"
    for text in seen:
        assert KEY not in text


def test_refused_connection_does_not_leak_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with KieClient(KEY, base_url=closed_port_url(), retry=FAST) as c:
        with pytest.raises(errors.KieConnectionError) as caught:
            c.get_credits()
        assert KEY not in str(caught.value) + repr(c) + caplog.text


@pytest.mark.parametrize("bad", ["", "   ", "sk-a\nbc", "sk abc", "sk-ä", "sk-\x00abc"])
def test_malformed_key_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        KieClient(bad)
    if bad.strip():
        assert bad.strip() not in str(caught.value)


def test_key_is_stripped_of_surrounding_whitespace(server: FakeServer) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=1))
    with KieClient(f"  {KEY}\n", base_url=server.url) as c:
        c.get_credits()
    assert server.requests_to(CREDIT_PATH)[0].headers["Authorization"] == f"Bearer {KEY}"


def test_extend_on_a_reused_connection_is_still_sent_once(
    server: FakeServer, client: KieClient
) -> None:
    server.script(CREDIT_PATH, Reply.envelope(data=1))
    server.script(EXTEND_PATH, Reply(drop="close"), Reply.json(SPEC_ANSWER))
    client.get_credits()  # leaves a pooled keep-alive connection

    with pytest.raises(errors.OutcomeUnknownError):
        client.extend(request())

    assert server.count(EXTEND_PATH) == 1
    assert (
        server.requests_to(EXTEND_PATH)[0].client_port
        == server.requests_to(CREDIT_PATH)[0].client_port
    )
