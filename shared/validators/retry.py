"""Bounded HTTP retries for provider checks.

Retries only what is a fault rather than an answer (429, 5xx, 529, network
errors), at most ``max_attempts`` times, with full-jitter exponential backoff
that honours ``Retry-After`` up to a cap, and never past the overall deadline:
a validation cannot hang a function.

Checks go through ``shared.http_client`` (the standard library's client: a
cold start does not pay ~26 ms to import requests). ``session()`` is the
``requests`` session for libraries that need one (google-auth's token
refresh, msal, the AWS metadata call, OAuth token exchange); msal's checks
also pass it as ``client``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from shared.http_client import HttpClient

if TYPE_CHECKING:
    from email.message import Message

    import requests

    from shared.validators import ValidationContext

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})

_sessions = threading.local()
# Thread-safe and pooled: revalidation's workers share it (at most revalidation_per_provider = 8 at
# once per provider, which the default pool of 8 connections per origin covers).
CHECKS = HttpClient()


class Answer(Protocol):
    """What a check reads of an answer (``shared.http_client.Response`` or ``requests.Response``)."""

    status_code: int

    @property
    def headers(self) -> Message | Any: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def session() -> requests.Session:
    """One pooled ``requests`` session per thread (requests.Session is not thread-safe)."""
    import urllib.request

    import requests

    current = getattr(_sessions, "session", None)
    if current is None:
        current = requests.Session()
        # Read proxy and CA settings from the environment once per session,
        # not on every request (that scan was ~20% of a check's CPU time).
        current.trust_env = False
        current.proxies.update(urllib.request.getproxies())
        current.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        _sessions.session = current
    return current


class Attempted(NamedTuple):  # not a dataclass: see shared.service.Caller
    """The last response (or network error) after retries, and how many tries."""

    response: Answer | None
    error: Exception | None
    attempts: int


def retry_after_seconds(response: Answer) -> float | None:
    value = response.headers.get("Retry-After")
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
    client: Any = CHECKS,  # HttpClient or a requests.Session: the same request() signature
) -> Attempted:
    """Send one idempotent check, retrying faults; ``deadline`` is a monotonic time.

    Timeout, attempts, backoff and the Retry-After cap are the operator's
    (``context``), the same for every validator.

    ``verify`` names a CA bundle for this request (a simulator's own CA);
    None keeps the client's setting. ``client`` is ``CHECKS`` unless a library
    needs ``requests``' own answers (msal: ``session()``).
    """
    response: Answer | None = None
    error: Exception | None = None
    attempt = 0
    while attempt < context.max_attempts:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            response = client.request(
                method,
                url,
                headers=headers,
                params=params,
                data=data,
                timeout=min(context.request_timeout_seconds, remaining),
                allow_redirects=False,
                verify=verify,
            )
            error = None
        except OSError as exc:  # transport failures, requests' included
            response, error = None, exc
        if response is not None and response.status_code not in RETRYABLE_STATUS:
            break
        if attempt >= context.max_attempts:
            break
        backoff = random.uniform(0, context.backoff_base_seconds * (2 ** (attempt - 1)))
        hinted = retry_after_seconds(response) if response is not None else None
        if hinted is not None:
            backoff = min(hinted, context.retry_after_cap_seconds)
        if time.monotonic() + backoff >= deadline:
            break
        time.sleep(backoff)
    return Attempted(response=response, error=error, attempts=attempt)
