"""Authorized JSON calls to Google REST APIs, shared by the BigQuery and Cloud KMS adapters.

Why not the generated client libraries on the request path: importing
``google.cloud.bigquery`` costs more CPU than a whole functions-framework
cold start, and ``google.cloud.kms`` (which drags in gRPC even when asked for
its REST transport) about as much again; a list or get paid 3x a hello
world's first response for it (issue 17, ``bench/operations.py``). Both APIs
are plain JSON over HTTPS, so the adapters speak it through google-auth's
``AuthorizedSession`` (token refresh, a retry on 401) and ``requests``, which
the provider validators load anyway. The generated libraries remain the
tests' reference clients: the tests check that what these adapters send and
store is what those libraries send and read (``tests/test_bigquery_jobs.py``).

Credentials are Google's application default credentials (on Cloud Functions
the runtime service account, through the metadata server), or anonymous ones
for a stand-in on loopback (``api_endpoint`` set), which never needs a token.
"""

from __future__ import annotations

from typing import Any

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Status codes a Google API answers for a condition that may pass on its own.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# Connections kept per host: at least the widest worker pool (revalidation, rewrap: 16).
POOL_SIZE = 32


class GoogleApiError(Exception):
    """A Google API answered with an error status.

    ``message`` is Google's error text, kept for retry decisions (BigQuery
    names transaction conflicts only there); it is never logged, since it can
    quote a statement. Logs name ``status`` and ``reason`` only.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message

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
        return cls(response.status_code, reason or "unknown", message)


class GoogleRestSession:
    """One authorized ``requests`` session to one API's base URL, reused for the instance's life."""

    def __init__(self, base_url: str, *, api_endpoint: str | None = None, credentials: Any = None) -> None:
        from google.auth.transport.requests import AuthorizedSession
        from requests.adapters import HTTPAdapter

        if credentials is None:
            credentials = _stand_in_or_default_credentials(api_endpoint)
        self.base_url = (api_endpoint or base_url).rstrip("/")
        self.session = AuthorizedSession(credentials)
        # Revalidation and re-wrapping call KMS from up to 16 workers at once: keep a
        # connection for each instead of requests' default 10 (the rest would be reopened per call).
        adapter = HTTPAdapter(pool_maxsize=POOL_SIZE)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float,
    ) -> dict[str, Any]:
        """``method`` ``base_url + path``; the decoded JSON answer, or ``GoogleApiError``.

        Transport failures (``requests.RequestException``) and google-auth
        errors (``google.auth.exceptions.GoogleAuthError``) pass through: the
        adapter maps them to its own error like any other failure.
        """
        response = self.session.request(method, self.base_url + path, json=body, params=params, timeout=timeout)
        if response.status_code >= 400:
            raise GoogleApiError.from_response(response)
        answer = response.json() if response.content else {}
        if not isinstance(answer, dict):
            raise GoogleApiError(response.status_code, "malformedResponse", "the answer is not a JSON object")
        return answer


def _stand_in_or_default_credentials(api_endpoint: str | None) -> Any:
    if api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials
