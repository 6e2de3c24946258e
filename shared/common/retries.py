"""The service's one retry policy: how many attempts, how long between them, and ``Retry-After``.

Every caller that repeats an outbound call goes through ``attempt``: provider
checks (``shared.validators.retry``), Google API calls (``shared.egress.google_rest``),
BigQuery jobs (``shared.store.bigquery``) and webhook deliveries
(``shared.egress.webhooks``). Nothing below them retries on its own (the HTTP client
resends only an idempotent request whose kept-alive connection turned out
closed), so a call is sent at most ``policy.attempts`` times whatever fails.
The token requests of OAuth flows are never retried: a code or rotating
refresh token that reached the provider is spent.

Between attempts: full-jitter exponential backoff (uniform in
``[0, min(cap, base * 2^(n-1))]``), or the server's ``Retry-After`` when it
gives one, up to ``retry_after_cap_seconds``. No attempt starts, and no pause
is begun, that would end past the caller's deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class RetryPolicy(NamedTuple):
    attempts: int  # sends in all, the first included
    backoff_base_seconds: float
    backoff_cap_seconds: float
    retry_after_cap_seconds: float = 0.0  # 0: a Retry-After hint is not waited for

    def pause(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None and self.retry_after_cap_seconds > 0:
            return min(retry_after, self.retry_after_cap_seconds)
        return random.uniform(0, min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1)))


class Tried(NamedTuple):  # not Generic: a generic NamedTuple costs ~0.3 ms more to import on a cold start
    """The last result (or the exception that ended the last attempt), and how many attempts were made."""

    result: Any
    error: Exception | None
    attempts: int


def attempt(
    send: Callable[[int], T],
    *,
    policy: RetryPolicy,
    retryable: Callable[[T | None, Exception | None], bool],
    deadline: float | None = None,
    retry_after: Callable[[T | None, Exception | None], float | None] | None = None,
) -> Tried:
    """Call ``send(attempt_number)`` until ``retryable`` says the outcome is final, the
    attempts are spent, or the next attempt could not start before ``deadline`` (a
    ``time.monotonic()`` instant). An exception from ``send`` is an outcome like a result:
    ``retryable(None, error)`` decides; the caller re-raises ``Tried.error`` if it wants to.
    """
    number = 0
    result: T | None = None
    error: Exception | None = None
    while True:
        number += 1
        try:
            result, error = send(number), None
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, who decides
            result, error = None, exc
        if number >= policy.attempts or not retryable(result, error):
            break
        wait = policy.pause(number, retry_after(result, error) if retry_after else None)
        if deadline is not None and time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
    return Tried(result, error, number)


def retry_after_seconds(headers: Any) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now; None when absent or unreadable."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
