"""Requests to a provider's token endpoint: the code grant and the refresh grant.

Each request is sent once, never retried: a code is single use, and a
rotating refresh token that reached the provider is spent even if its answer
was lost, so a retry would only earn ``invalid_grant``. The caller decides
what a failure means (``GrantRejected``: re-authorize; ``TokenEndpointUnavailable``:
try again later). No provider text is kept: only the RFC 6749 error code,
which is a short word, never an echo of a token.

Each request goes through the service's HTTP client, and ``timeout_seconds``
is its whole duration (connect, send, and every read of the answer): a token
endpoint that answers one byte at a time cannot keep it open longer, which is
what lets a refresh end inside its lease (``shared.usecases.oauth_refresh``). It obeys
``HTTPS_PROXY``/``NO_PROXY`` and the CA bundle like every other call, and
reads at most ``ANSWER_BYTES`` of the answer.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from shared.domain.models import utc_now
from shared.domain.providers import OAuthSpec
from shared.egress.http_client import HttpClient
from shared.oauth import OAuthClient, TokenSet

# invalid_grant (RFC 6749); GitHub answers bad_verification_code / bad_refresh_token (with HTTP 200).
GRANT_ERRORS = frozenset({"invalid_grant", "bad_verification_code", "bad_refresh_token"})
ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")
# A token answer is a few KB at most; a longer one is not a token answer.
ANSWER_BYTES = 256 * 1024

TOKEN_REQUESTS = HttpClient()


class TokenRequestFailed(Exception):
    """Base: ``reason`` is safe to log and show (no provider text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GrantRejected(TokenRequestFailed):
    """The code or refresh token is no longer valid: only a new consent helps."""


class ClientRejected(TokenRequestFailed):
    """The provider refused our client (invalid_client, unauthorized_client, ...): an operator fix."""


class TokenEndpointUnavailable(TokenRequestFailed):
    """5xx, 429, a timeout or an unreadable answer: nothing learned, try again later."""


def request_tokens(
    oauth: OAuthSpec,
    url: str,
    client: OAuthClient,
    form: dict[str, str],
    *,
    timeout_seconds: float,
    deadline: float | None = None,
    previous: TokenSet | None = None,
) -> TokenSet:
    """Send one grant and read its tokens; the request ends within ``timeout_seconds``, and by
    ``deadline`` (a ``time.monotonic()`` instant) when given."""
    headers = {"Accept": "application/json"}
    form = dict(form)
    if oauth.client_auth == "basic":
        # RFC 6749 2.3.1: form-encode id and secret before joining them.
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form.update(client_id=client.client_id, client_secret=client.client_secret)
    try:
        response = TOKEN_REQUESTS.request(
            "POST",
            url,
            data=form,
            headers=headers,
            timeout=timeout_seconds,
            deadline=deadline,
            max_body_bytes=ANSWER_BYTES,
        )
    except OSError as exc:  # refused, reset, timed out, an oversized or malformed answer
        raise TokenEndpointUnavailable(f"token endpoint unreachable ({exc.__class__.__name__})") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise TokenEndpointUnavailable(f"token endpoint answered {response.status_code}")
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TokenEndpointUnavailable(f"token endpoint answered {response.status_code} without a JSON object")
    error = body.get("error")
    if error is not None:
        code = error if isinstance(error, str) and ERROR_CODE.fullmatch(error) else "unknown_error"
        if code in GRANT_ERRORS:
            raise GrantRejected(code)
        raise ClientRejected(code)
    if response.status_code != 200 or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise TokenEndpointUnavailable(f"token endpoint answered {response.status_code} without an access token")
    return _token_set(body, oauth, utc_now(), previous)


def _token_set(body: dict[str, Any], oauth: OAuthSpec, now: datetime, previous: TokenSet | None) -> TokenSet:
    def seconds(name: str) -> int | None:
        value = body.get(name)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None

    lifetime = seconds("expires_in") or oauth.token_lifetime_seconds
    refresh_lifetime = seconds("refresh_token_expires_in")
    refresh_token = body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None
    return TokenSet(
        access_token=body["access_token"],
        # A provider that does not rotate may leave the refresh token out of a refresh answer: keep the old one.
        refresh_token=refresh_token or (previous.refresh_token if previous else None),
        expires_at=now + timedelta(seconds=lifetime),
        token_type=str(body.get("token_type") or "Bearer"),
        scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
        refresh_token_expires_at=(
            now + timedelta(seconds=refresh_lifetime)
            if refresh_lifetime
            else (previous.refresh_token_expires_at if previous and not refresh_token else None)
        ),
    )
