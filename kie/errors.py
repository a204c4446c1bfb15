"""One exception per documented Kie failure, all under KieError.

Each carries the documented `.code`, Kie's `.msg`, and `.advice`: what a person should
do next. Transport failures (no answer, a garbled answer) are KieError too.
"""

from __future__ import annotations


class KieError(Exception):
    """Base of every failure the kie package raises."""

    code: int | None = None
    title = "The Kie API call failed."
    advice = "Try again in a moment."

    def __init__(self, msg: str = "", *, code: int | None = None) -> None:
        self.msg = msg
        if code is not None:
            self.code = code
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One sentence a non-coder understands, with Kie's code and words when known."""
        detail = (
            f" (code {self.code}: {self.msg})"
            if self.code is not None and self.msg
            else (
                f" (code {self.code})"
                if self.code is not None
                else (f" ({self.msg})" if self.msg else "")
            )
        )
        return f"{self.title}{detail} {self.advice}"


class KieAPIError(KieError):
    """Kie answered, and the answer says the call failed."""


class AuthenticationError(KieAPIError):
    code = 401
    title = "Kie did not accept the API key."
    advice = "Check the key on the Settings page."


class InsufficientCreditsError(KieAPIError):
    code = 402
    title = "The account has run out of credits."
    advice = "Add credits at kie.ai, then try again."


class NotFoundError(KieAPIError):
    code = 404
    title = "Kie could not find that resource."
    advice = "Check the ID and the base URL on the Settings page."


class ConflictError(KieAPIError):
    code = 409
    title = "That record already exists."
    advice = "Nothing new was created; use the existing one."


class ValidationFailedError(KieAPIError):
    code = 422
    title = "Kie rejected the request's parameters."
    advice = "Correct the fields Kie names and send again."


class RateLimitError(KieAPIError):
    code = 429
    title = "Too many requests for now."
    advice = "Wait a minute, then try again."

    def __init__(
        self, msg: str = "", *, code: int | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(msg, code=code)


class FileFetchError(KieAPIError):
    code = 451
    title = "Kie could not fetch a file the request refers to."
    advice = "Check that the file is public and not blocked by access limits."


class MaintenanceError(KieAPIError):
    code = 455
    title = "Kie is under maintenance."
    advice = "Try again later."


class ServerError(KieAPIError):
    code = 500
    title = "Kie had a server error."
    advice = "Try again in a few minutes."


class FeatureDisabledError(KieAPIError):
    code = 505
    title = "That feature is disabled for this account."
    advice = "Check your account at kie.ai."


class UnknownAPIError(KieAPIError):
    """A code Kie does not document (e.g. older tables' 405 and 430)."""

    title = "Kie reported an unexpected problem."
    advice = "Try again later; if it persists, contact Kie support with the code."


class KieConnectionError(KieError):
    """No answer: the server could not be reached or the connection broke."""

    title = "Could not reach the Kie API."
    advice = "Check the internet connection and the base URL on the Settings page."


class KieTimeoutError(KieConnectionError):
    """The server did not answer in time."""

    title = "The Kie API did not answer in time."
    advice = "Try again in a moment."


class OutcomeUnknownError(KieConnectionError):
    """A paid request was sent but its answer was lost: it may or may not have run."""

    title = "The request was sent, but its answer was lost, so it may have started a task."
    advice = "Check the Tasks page and your Kie dashboard before sending it again."


class KieResponseError(KieError):
    """Kie answered with something that is not the documented envelope."""

    title = "The Kie API sent an answer that could not be read."
    advice = "Try again later; check the base URL on the Settings page."


class WebhookError(KieError):
    """A callback that cannot be trusted or read."""

    title = "A callback was rejected."
    advice = "Check the webhook key and callback URL on the Settings page."


# The documented code -> class table; unknown codes fall back to UnknownAPIError.
ERRORS_BY_CODE: dict[int, type[KieAPIError]] = {
    cls.code: cls
    for cls in (
        AuthenticationError,
        InsufficientCreditsError,
        NotFoundError,
        ConflictError,
        ValidationFailedError,
        RateLimitError,
        FileFetchError,
        MaintenanceError,
        ServerError,
        FeatureDisabledError,
    )
    if cls.code is not None
}


def error_for(code: int, msg: str, *, retry_after: float | None = None) -> KieAPIError:
    """The exception for a failing envelope code."""
    cls = ERRORS_BY_CODE.get(code, UnknownAPIError)
    if cls is RateLimitError:
        return RateLimitError(msg, code=code, retry_after=retry_after)
    return cls(msg, code=code)
