"""Provider checks' requests: bounded, and retried by the service's one policy.

Retries only what is a fault rather than an answer (429, 5xx, 529, network
errors), at most ``max_attempts`` times, with full-jitter exponential backoff
that honours ``Retry-After`` up to a cap (``shared.common.retries``), and never past
the validation's deadline: every request gets only the time left before it
(``shared.egress.http_client``: connect, send and every read), so a validation ends
within ``VALIDATION_DEADLINE_SECONDS`` whatever the provider does.

Every check goes through ``CHECKS``, the service's HTTP client; msal's calls
too (``shared.validators.azure_live`` hands it a small adapter), and
google-auth's token exchange (``shared.egress.google_rest.GoogleAuthTransport``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from shared.common.retries import RetryPolicy, attempt, retry_after_seconds
from shared.egress.http_client import HttpClient

if TYPE_CHECKING:
    from email.message import Message

    from shared.validators.context import ValidationContext

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 8.0

# Thread-safe and pooled: revalidation's workers share it (at most revalidation_per_provider = 8 at
# once per provider, which the default pool of 8 connections per origin covers).
CHECKS = HttpClient()


class Answer(Protocol):
    """What a check reads of an answer (``shared.egress.http_client.Response``)."""

    status_code: int

    @property
    def headers(self) -> Message | Any: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class Attempted(NamedTuple):  # not a dataclass: see shared.domain.caller.Caller
    """The last response (or network error) after retries, and how many tries."""

    response: Answer | None
    error: Exception | None
    attempts: int


def check_policy(context: ValidationContext) -> RetryPolicy:
    """The operator's retry settings (``VALIDATION_MAX_ATTEMPTS``, ``VALIDATION_RETRY_AFTER_CAP_SECONDS``)."""
    return RetryPolicy(
        attempts=context.settings.validation_max_attempts,
        backoff_base_seconds=BACKOFF_BASE_SECONDS,
        backoff_cap_seconds=BACKOFF_CAP_SECONDS,
        retry_after_cap_seconds=context.settings.retry_after_cap_seconds,
    )


def _is_fault(response: Answer | None, error: Exception | None) -> bool:
    if error is not None:
        return isinstance(error, OSError)  # the transport's failures; anything else is a bug, not a fault
    return response is not None and response.status_code in RETRYABLE_STATUS


def _hinted(response: Answer | None, error: Exception | None) -> float | None:
    return retry_after_seconds(response.headers) if response is not None else None


def request_with_retries(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
    data: Any = None,
    context: ValidationContext,
    deadline: float,
    verify: str | None = None,
) -> Attempted:
    """Send one idempotent check, retrying faults; ``deadline`` is a ``time.monotonic()`` instant.

    Each attempt may take ``VALIDATION_REQUEST_TIMEOUT_SECONDS``, cut to what is left
    before ``deadline``. ``verify`` names a CA bundle for this request (a simulator's
    own CA); None keeps the client's default.
    """

    def send(_: int) -> Answer:
        if time.monotonic() >= deadline:
            raise TimeoutError("the validation's deadline passed")
        return CHECKS.request(
            method,
            url,
            headers=headers,
            params=params,
            data=data,
            timeout=context.settings.request_timeout_seconds,
            deadline=deadline,
            verify=verify,
        )

    tried = attempt(send, policy=check_policy(context), retryable=_is_fault, deadline=deadline, retry_after=_hinted)
    if tried.error is not None and not isinstance(tried.error, OSError):
        raise tried.error
    return Attempted(response=tried.result, error=tried.error, attempts=tried.attempts)
