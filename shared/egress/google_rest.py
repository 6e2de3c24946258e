"""Authorized JSON calls to Google REST APIs, shared by the BigQuery and Cloud KMS adapters.

Why not the generated client libraries on the request path: importing
``google.cloud.bigquery`` costs more CPU than a whole functions-framework
cold start, and ``google.cloud.kms`` (which drags in gRPC even when asked for
its REST transport) about as much again; a list or get paid 3x a hello
world's first response for it (``bench/operations.py``;
docs/design/cold-start-rest-adapters.md). Both APIs
are plain JSON over HTTPS, so the adapters speak it through
``shared.egress.http_client`` (the standard library's ``http.client``, already loaded
by the functions framework; ``requests`` alone would add ~26 ms to a cold
start). The generated libraries remain the
tests' reference clients: the tests check that what these adapters send and
store is what those libraries send and read (``tests/test_bigquery_jobs.py``).

Where the token comes from, first match wins:

1. credentials passed in (a test, a tool): google-auth puts their token on
   each request (``before_request``), refreshing it through
   ``GoogleAuthTransport`` (the same HTTP client; not a cold-start path);
2. on Google's serverless runtime (``K_SERVICE`` set, as Cloud Functions and
   Cloud Run set it) or wherever ``GCE_METADATA_HOST`` names a metadata
   server (google-auth's variable): the runtime service account's access
   token, read from the metadata server with one GET and cached until shortly
   before it expires (``MetadataServerToken``). This is what google-auth's
   compute-engine credentials do too, but loading them (and the JWT and
   crypto modules they pull in) costs ~35 ms CPU on every cold start, about
   0.4x a whole hello-world cold start;
3. a stand-in on loopback (``api_endpoint`` set): no token at all;
4. anything else (a laptop with ``gcloud auth application-default login``, a
   key file): google-auth's application default credentials, as in 1.

Every call is bounded in total (``shared.egress.http_client``) and repeated only
by ``shared.common.retries``' policy (``GOOGLE_API_RETRY``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.common.retries import RetryPolicy, attempt, retry_after_seconds
from shared.egress.http_client import HttpClient

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Status codes a Google API answers for a condition that may pass on its own.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# The metadata server (google-auth reads the same variable; tests and benches point it at a stand-in).
METADATA_HOST_ENV = "GCE_METADATA_HOST"
DEFAULT_METADATA_HOST = "metadata.google.internal"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
METADATA_TIMEOUT_SECONDS = 5.0  # the whole token request: connect, send and every read
METADATA_MAX_ANSWER_BYTES = 64 * 1024  # a token answer is ~1 KB
# A token is fetched again this long before it expires (they live ~1 h), as google-auth does.
REFRESH_MARGIN_SECONDS = 225.0
# A call that is safe to repeat: up to 6 sends, full-jitter backoff from 0.1 s doubling to at most
# 2 s (a Retry-After up to 5 s), and none of it past the caller's retry_deadline.
GOOGLE_API_RETRY = RetryPolicy(
    attempts=6, backoff_base_seconds=0.1, backoff_cap_seconds=2.0, retry_after_cap_seconds=5.0
)
# Connections kept per host: at least the widest worker pool (revalidation, rewrap: 16).
POOL_SIZE = 32


class GoogleApiError(Exception):
    """A Google API answered with an error status.

    ``message`` is Google's error text, kept for retry decisions (BigQuery
    names transaction conflicts only there); it is never logged, since it can
    quote a statement. Logs name ``status`` and ``reason`` only.
    """

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after  # seconds, when the answer said (Retry-After)

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUSES

    @classmethod
    def from_response(cls, response: Any) -> GoogleApiError:
        """Google's error body is ``{"error": {"code", "message", "status", "errors": [{"reason"}]}}``."""
        reason, message = "", ""
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            details = error.get("errors") or []
            first = details[0] if isinstance(details, list) and details and isinstance(details[0], dict) else {}
            reason = str(first.get("reason") or error.get("status") or "")
        return cls(response.status_code, reason or "unknown", message, retry_after_seconds(response.headers))


class MetadataServerToken:
    """The runtime service account's OAuth access token, from the metadata server.

    ``GET http://{host}/computeMetadata/v1/instance/service-accounts/default/token``
    with ``Metadata-Flavor: Google`` answers ``{"access_token", "expires_in",
    "token_type"}``. The token is kept until ``REFRESH_MARGIN_SECONDS`` before
    it expires, and dropped when an API answers 401 (``invalidate``). Threads
    share one token; one of them fetches it. A failure raises google-auth's
    ``RefreshError``, as its own credentials would.
    """

    def __init__(self, session: HttpClient, host: str | None = None) -> None:
        self.host = host or os.environ.get(METADATA_HOST_ENV) or DEFAULT_METADATA_HOST
        self._session = session
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def authorization(self, deadline: float | None = None) -> str:
        """``Bearer <token>``; a fetch, when one is needed, ends by ``deadline`` (``time.monotonic()``) too."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = self._fetch(deadline)
                self._expires_at = time.monotonic() + max(0.0, lifetime - REFRESH_MARGIN_SECONDS)
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self, deadline: float | None) -> tuple[str, float]:
        from google.auth.exceptions import RefreshError

        self.fetches += 1
        try:
            response = self._session.request(
                "GET",
                f"http://{self.host}{METADATA_TOKEN_PATH}",
                headers={"Metadata-Flavor": "Google"},
                timeout=METADATA_TIMEOUT_SECONDS,
                deadline=deadline,
                max_body_bytes=METADATA_MAX_ANSWER_BYTES,
            )
            answer = response.json() if response.status_code == 200 else {}
            answer = answer if isinstance(answer, dict) else {}
        except (OSError, ValueError) as exc:  # transport failures are OSErrors
            raise RefreshError(f"the metadata server did not answer: {type(exc).__name__}") from exc
        token, lifetime = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise RefreshError(f"the metadata server gave no access token (HTTP {response.status_code})")
        return token, float(lifetime)


_runtime_tokens: dict[str, MetadataServerToken] = {}
_runtime_tokens_lock = threading.Lock()


def runtime_token() -> MetadataServerToken:
    """The instance's token source, one per metadata server: the BigQuery, KMS and Secret
    Manager sessions share it, so a cold start that uses several fetches the token once."""
    host = os.environ.get(METADATA_HOST_ENV) or DEFAULT_METADATA_HOST
    with _runtime_tokens_lock:
        token = _runtime_tokens.get(host)
        if token is None:
            token = _runtime_tokens[host] = MetadataServerToken(HttpClient(pool_size=1), host)
        return token


def uses_metadata_server(environ: Mapping[str, str] | None = None) -> bool:
    """On Google's serverless runtime, or told where a metadata server is."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("K_SERVICE") or environ.get(METADATA_HOST_ENV))


class GoogleRestSession:
    """One authorized session to one API's base URL, reused for the instance's life.

    Revalidation and re-wrapping call KMS from up to 16 workers at once: the
    session keeps a connection for each (``POOL_SIZE``) instead of reopening them.
    """

    def __init__(self, base_url: str, *, api_endpoint: str | None = None, credentials: Any = None) -> None:
        self.base_url = (api_endpoint or base_url).rstrip("/")
        self.token: MetadataServerToken | None = None
        self.credentials: Any = None
        self.session = HttpClient(pool_size=POOL_SIZE)
        if credentials is None and uses_metadata_server():
            self.token = runtime_token()
        elif credentials is None and api_endpoint:
            pass  # a stand-in on loopback: no token exists or is needed
        else:
            self.credentials = credentials or _default_credentials()

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float,
        retry_deadline: float | None = None,
    ) -> dict[str, Any]:
        """``method`` ``base_url + path``; the decoded JSON answer, or ``GoogleApiError``.

        One attempt takes at most ``timeout`` seconds in all. With
        ``retry_deadline`` (only for calls that are safe to repeat), transient
        failures (``is_transient``) are retried by ``GOOGLE_API_RETRY``; no
        attempt starts after ``retry_deadline`` seconds, and the whole call
        ends within ``retry_deadline + timeout``. Transport failures (OSErrors)
        and google-auth errors (``google.auth.exceptions.GoogleAuthError``)
        pass through: the adapter maps them to its own error like any other
        failure.
        """
        started = time.monotonic()
        if retry_deadline is None:
            return self._call_once(method, path, body, params, timeout, started + timeout)
        end = started + retry_deadline + timeout
        tried = attempt(
            lambda _: self._call_once(method, path, body, params, timeout, end),
            policy=GOOGLE_API_RETRY,
            retryable=lambda _, error: error is not None and is_transient(error),
            deadline=started + retry_deadline,
            retry_after=lambda _, error: error.retry_after if isinstance(error, GoogleApiError) else None,
        )
        if tried.error is not None:
            raise tried.error
        assert tried.result is not None
        return tried.result

    def _call_once(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
        timeout: float,
        end: float,
    ) -> dict[str, Any]:
        response = self._send(method, path, body, params, timeout, end)
        if response.status_code == 401 and (self.token is not None or self.credentials is not None):
            # The token was revoked or expired early: fetch a new one, once (as AuthorizedSession does).
            if self.token is not None:
                self.token.invalidate()
            else:
                self.credentials.refresh(self._auth_transport(timeout, end))
            response = self._send(method, path, body, params, timeout, end)
        if response.status_code >= 400:
            raise GoogleApiError.from_response(response)
        answer = response.json() if response.content else {}
        if not isinstance(answer, dict):
            raise GoogleApiError(response.status_code, "malformedResponse", "the answer is not a JSON object")
        return answer

    def _auth_transport(self, timeout: float, end: float) -> GoogleAuthTransport:
        # A transient token answer raises, as a transient API answer does, so that ``call``'s policy
        # retries it: google-auth's own loop (3 tries, its own backoff) never runs inside ours.
        return GoogleAuthTransport(self.session, timeout=timeout, deadline=end, fault_statuses=TRANSIENT_STATUSES)

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
        timeout: float,
        end: float,
    ) -> Any:
        url = self.base_url + path
        headers: dict[str, str] = {}
        if self.token is not None:
            headers["Authorization"] = self.token.authorization(end)
        elif self.credentials is not None:
            # Refreshes the token when it is missing or expired, then sets the Authorization header.
            self.credentials.before_request(self._auth_transport(timeout, end), method, url, headers)
        return self.session.request(
            method,
            url,
            json=body,
            params=params,
            headers=headers,
            timeout=timeout,
            deadline=end,
            allow_redirects=False,  # Google's APIs answer, they do not redirect
        )


class GoogleAuthAnswer(NamedTuple):
    """What google-auth reads of an answer (``google.auth.transport.Response``)."""

    status: int
    headers: dict[str, str]
    data: bytes


class GoogleAuthTransport:
    """google-auth's HTTP transport (the ``google.auth.transport.Request`` interface) on the
    service's client: credential refreshes and token exchanges get its bounds, proxy and CA
    bundle, and never follow a redirect (a signed assertion goes to one chosen host only).

    ``timeout`` bounds each request google-auth makes; ``deadline`` (``time.monotonic()``)
    bounds them all together. A failure raises google-auth's ``TransportError``, as its own
    transports do, naming the failure's class only.

    ``fault_statuses``: answers with these statuses raise ``TransportError`` too, with the
    ``status`` (and ``retry_after``) on it, instead of reaching google-auth, which would retry
    them on its own schedule; the caller's retry policy (``shared.common.retries``) decides instead.
    """

    def __init__(
        self,
        client: HttpClient,
        *,
        timeout: float,
        deadline: float | None = None,
        verify: str | None = None,
        fault_statuses: frozenset[int] = frozenset(),
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.deadline = deadline
        self.verify = verify
        self.fault_statuses = fault_statuses

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> GoogleAuthAnswer:
        try:
            answer = self.client.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=self.timeout if timeout is None else min(timeout, self.timeout),
                deadline=self.deadline,
                verify=self.verify,
            )
        except OSError as exc:
            from google.auth.exceptions import TransportError

            raise TransportError(f"{type(exc).__name__} on a token request") from None
        if answer.status_code in self.fault_statuses:
            from google.auth.exceptions import TransportError

            fault = TransportError(f"HTTP {answer.status_code} on a token request")
            fault.status = answer.status_code  # type: ignore[attr-defined]
            fault.retry_after = retry_after_seconds(answer.headers)  # type: ignore[attr-defined]
            raise fault
        return GoogleAuthAnswer(answer.status_code, dict(answer.headers.items()), answer.content)


def failure_text(exc: BaseException) -> str:
    """What a log line or error may say about a failed call: the class, and for an API error
    its status ("GoogleApiError (HTTP 404 NOT_FOUND)"), never a message that could quote data."""
    name = type(exc).__name__
    return f"{name} ({exc})" if isinstance(exc, GoogleApiError) else name


def is_transient(exc: Exception) -> bool:
    """Worth another attempt: an API status that may pass on its own, or a failed transport."""
    if isinstance(exc, GoogleApiError):
        return exc.transient
    if isinstance(exc, ConnectionError | TimeoutError):  # shared.egress.http_client's failures
        return True
    # google-auth's transport failure (a token refresh through GoogleAuthTransport), if it was ever loaded.
    auth = sys.modules.get("google.auth.exceptions")
    return auth is not None and isinstance(exc, auth.TransportError)


def is_connection_failure(exc: Exception) -> bool:
    """The call failed in the transport (refused, reset, dropped, timed out), not with an answer."""
    return isinstance(exc, ConnectionError | TimeoutError)


def _default_credentials() -> Any:
    import google.auth

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials
