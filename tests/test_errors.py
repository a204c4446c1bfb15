"""The code -> exception table, and what each exception tells a person."""

from __future__ import annotations

import pytest

from kie import errors
from kie.errors import ERRORS_BY_CODE, KieAPIError, KieError, error_for

# The documented codes (kie-api/README.md), written out here independently of the table.
DOCUMENTED: dict[int, type[KieAPIError]] = {
    401: errors.AuthenticationError,
    402: errors.InsufficientCreditsError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.ValidationFailedError,
    429: errors.RateLimitError,
    451: errors.FileFetchError,
    455: errors.MaintenanceError,
    500: errors.ServerError,
    505: errors.FeatureDisabledError,
}


def all_error_classes() -> list[type[KieError]]:
    found: list[type[KieError]] = []
    pending: list[type[KieError]] = [KieError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize(("code", "cls"), DOCUMENTED.items(), ids=[str(c) for c in DOCUMENTED])
def test_code_maps_to_its_class(code: int, cls: type[KieAPIError]) -> None:
    error = error_for(code, "what Kie said")

    assert type(error) is cls
    assert error.code == code
    assert error.msg == "what Kie said"
    assert f"code {code}: what Kie said" in str(error)


def test_the_table_holds_exactly_the_documented_codes() -> None:
    assert ERRORS_BY_CODE == DOCUMENTED


@pytest.mark.parametrize("code", [405, 430, 0, 999])
def test_unknown_code_falls_back_and_shows_code_and_msg(code: int) -> None:
    error = error_for(code, "rate limited (old table)")

    assert type(error) is errors.UnknownAPIError
    assert error.code == code
    assert f"code {code}" in str(error)
    assert "rate limited (old table)" in str(error)


def test_rate_limit_carries_retry_after() -> None:
    error = error_for(429, "slow down", retry_after=1.5)

    assert isinstance(error, errors.RateLimitError)
    assert error.retry_after == 1.5


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_each_class_says_what_happened_and_what_to_do(cls: type[KieError]) -> None:
    assert cls.title.strip().endswith(".")
    assert cls.advice.strip().endswith(".")
    if cls not in (KieError, KieAPIError):  # the two bases share the generic wording
        assert cls.title != KieError.title

    text = str(cls("the detail"))
    assert cls.title in text
    assert cls.advice in text
    assert "the detail" in text


def test_message_without_msg_or_code_is_still_plain() -> None:
    assert str(KieError()) == f"{KieError.title} {KieError.advice}"
    assert "code 404" in str(errors.NotFoundError())


def test_transport_failures_are_connection_errors_not_api_errors() -> None:
    for cls in (errors.KieTimeoutError, errors.OutcomeUnknownError):
        assert issubclass(cls, errors.KieConnectionError)
        assert not issubclass(cls, KieAPIError)
    assert not issubclass(errors.OutcomeUnknownError, errors.KieTimeoutError)
    assert issubclass(errors.KieResponseError, KieError)
    assert all(issubclass(cls, KieAPIError) for cls in DOCUMENTED.values())
