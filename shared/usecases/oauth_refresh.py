"""Refresh that never races: one token-endpoint call per expiry, whatever the concurrency.

Peers got this wrong: an in-process lock does not span instances, a Redis
lock is not safe across a restart, and a worker that refreshes from a stale
snapshot spends a rotating refresh token someone else already spent
(``invalid_grant``). Here the store decides, with a conditional write on the
credential's version (``updated_at``):

1. A caller whose access token is within ``OAUTH_REFRESH_WINDOW_MINUTES`` of
   expiry tries to *claim* the refresh: set a lease (id + expiry) on the row
   if ``updated_at`` still equals what it read. Of all callers that read
   that version, exactly one wins; the claim moves the version.
2. The winner sends the refresh grant once, encrypts the new tokens and
   writes them where its lease still holds, clearing the lease.
3. A loser never calls the token endpoint: it re-reads until the lease is
   gone and uses the winner's tokens. If the winner's refresh failed
   transiently, the loser uses the old access token while it still works and
   otherwise reports the provider unreachable.
4. A lease outlives everything its winner does, so it only lapses when the
   winner died; then one of the waiting callers claims it the same way. The
   lease (``OAUTH_REFRESH_LEASE_SECONDS``) is shared out from the moment it is
   claimed, on the winner's own clock:

   - the token request must end within the first ``TOKEN_REQUEST_SHARE``
     (half) of it. That is the request's *total* deadline (connect, send and
     every read: ``shared.egress.http_client``), not a per-read timeout, so a token
     endpoint that answers a byte at a time cannot stretch it;
   - the rest is the stated margin: encrypting the new tokens and writing
     them. The winner starts its write only before ``LAST_WRITE_SHARE``
     (three quarters) of the lease, leaving the last quarter for the write to
     land and for clock differences between instances. Past that it writes
     nothing (the store would refuse it once another caller took over): a
     lease is never taken over while its holder can still write.

   A validation's refresh (``oauth_validation``) also ends by the validation's
   deadline, and so does a loser's wait: the refresh and the checks after it
   share ``VALIDATION_DEADLINE_SECONDS``.

``invalid_grant`` is written on the credential (``refresh_error``), so later
callers fail fast with "re-authorize" instead of spending more calls.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from shared.crypto import credential_aad
from shared.domain.errors import EncryptionFailed, NotFound, ReauthorizationRequired
from shared.domain.models import Integration, StoredCredential, credential_fingerprint, utc_now
from shared.domain.validation import Failure, FailureClass, ValidationResult
from shared.oauth import OAuthClient, TokenSet, client_for, oauth_spec, token_url
from shared.oauth.token_endpoint import (
    ClientRejected,
    GrantRejected,
    TokenEndpointUnavailable,
    TokenRequestFailed,
    request_tokens,
)
from shared.validators import validate_credential

if TYPE_CHECKING:
    from shared.domain.providers import ProviderSpec
    from shared.usecases.ports import ServicePorts

logger = logging.getLogger("integrations.oauth")

REAUTHORIZE = "invalid_grant"
TRANSIENT = "transient"
# Shares of the lease, from the moment the winner claimed it (see the module docstring).
TOKEN_REQUEST_SHARE = 0.5  # the token request ends by then, whatever the endpoint does
LAST_WRITE_SHARE = 0.75  # no write of the winner's starts after this


def reauthorize_message(spec: ProviderSpec, org_slug: str) -> str:
    return (
        f"{spec.display_name} authorization was revoked or has expired; re-authorize: "
        f"POST /api/v1/integrations/{org_slug}/{spec.provider_id}/oauth/start"
    )


def needs_refresh(credential: StoredCredential, now: datetime, window: timedelta) -> bool:
    return credential.expires_at is not None and credential.expires_at - now <= window


def _next_version(credential: StoredCredential) -> datetime:
    """A version strictly after the current one, even within one clock tick."""
    return max(utc_now(), credential.updated_at + timedelta(microseconds=1))


def _decrypt(ports: ServicePorts, integration: Integration, credential: StoredCredential) -> TokenSet:
    aad = credential_aad(integration.org_slug, integration.provider, credential.credential_id)
    return TokenSet.from_secret(ports.cipher.decrypt(credential.encrypted_value, aad).decode())


def _reread(ports: ServicePorts, integration: Integration) -> tuple[Integration, StoredCredential]:
    pair = ports.store.get_integration_with_credential(integration.org_slug, integration.provider)
    if pair is None:
        raise NotFound("The integration was deleted during a token refresh")
    return pair


def current_tokens(
    ports: ServicePorts,
    spec: ProviderSpec,
    integration: Integration,
    credential: StoredCredential,
    *,
    deadline: float | None = None,
) -> TokenSet:
    """Tokens whose access token is good beyond the refresh window, refreshing once if needed.

    ``deadline`` (a ``time.monotonic()`` instant: a validation's end) cuts the token request and
    the wait for another worker's refresh shorter than the lease alone would.
    Raises ``ReauthorizationRequired`` (refresh token refused) or
    ``TokenEndpointUnavailable`` (no usable access token and the refresh failed).
    """
    settings = ports.settings
    window = timedelta(seconds=settings.oauth_refresh_window_seconds)
    lease = timedelta(seconds=settings.oauth_refresh_lease_seconds)
    give_up = time.monotonic() + 2 * lease.total_seconds()
    if deadline is not None:
        give_up = min(give_up, deadline)
    waited = False
    pause = 0.02
    while True:
        now = utc_now()
        if credential.refresh_error == REAUTHORIZE:
            raise ReauthorizationRequired(reauthorize_message(spec, integration.org_slug))
        if not needs_refresh(credential, now, window):
            return _decrypt(ports, integration, credential)
        expires = credential.refresh_lease_expires_at
        lease_held = credential.refresh_lease_id is not None and expires is not None and expires > now
        if not lease_held and waited and credential.refresh_lease_id is None:
            # The refresh we waited for ended without new tokens: never a second call from us.
            return _still_usable(ports, integration, credential, now, "the refresh failed")
        if lease_held:
            waited = True
            if time.monotonic() > give_up:
                # The current access token, while it still works; else the provider counts as unreachable.
                return _still_usable(
                    ports, integration, credential, now, "another worker's refresh did not finish in time"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
            integration, credential = _reread(ports, integration)
            continue
        client = client_for(ports.service_secrets, spec)  # before the claim: a missing client must not hold a lease
        lease_id = secrets.token_hex(8)
        version = _next_version(credential)
        # The winner's clock starts before the claim is sent: it never counts more time than others do.
        lease_started, now = time.monotonic(), utc_now()
        claimed = ports.store.claim_credential_refresh(
            credential.credential_id,
            expected_updated_at=credential.updated_at,
            lease_id=lease_id,
            lease_expires_at=now + lease,
            version=version,
        )
        if claimed:
            credential.refresh_lease_id, credential.refresh_lease_expires_at = lease_id, now + lease
            credential.updated_at = version
            return _refresh_as_winner(
                ports,
                integration,
                credential,
                spec,
                _Lease(lease_id, lease_started, lease.total_seconds()),
                client,
                deadline,
            )
        waited = True  # someone else claimed this version: use their result
        integration, credential = _reread(ports, integration)


def _still_usable(
    ports: ServicePorts, integration: Integration, credential: StoredCredential, now: datetime, reason: str
) -> TokenSet:
    if credential.expires_at is not None and credential.expires_at > now:
        return _decrypt(ports, integration, credential)  # near expiry, but it still works
    raise TokenEndpointUnavailable(reason)


class _Lease(NamedTuple):
    """The winner's claim: its id, and when it started on the winner's ``time.monotonic()`` clock."""

    lease_id: str
    started: float
    seconds: float

    def by(self, share: float) -> float:
        """The monotonic instant ``share`` of the lease after it was claimed."""
        return self.started + share * self.seconds

    def may_write(self) -> bool:
        return time.monotonic() < self.by(LAST_WRITE_SHARE)


def _finish(ports: ServicePorts, integration: Integration, credential: StoredCredential, lease: _Lease) -> bool:
    """Write the refresh's outcome where the lease still holds; never once the lease may be taken over."""
    if not lease.may_write():
        logger.error(
            "oauth refresh ran out of its lease before its outcome was stored; nothing written",
            extra={"provider": integration.provider, "org_slug": integration.org_slug},
        )
        return False
    if ports.store.finish_credential_refresh(credential, lease_id=lease.lease_id):
        return True
    # Only when this worker was paused past its lease and another caller took it over.
    logger.error("oauth refresh lease lost before its outcome was stored", extra={"provider": integration.provider})
    return False


def _refresh_as_winner(
    ports: ServicePorts,
    integration: Integration,
    credential: StoredCredential,
    spec: ProviderSpec,
    lease: _Lease,
    client: OAuthClient,
    deadline: float | None,
) -> TokenSet:
    settings = ports.settings
    # Its whole duration ends within the first part of the lease, leaving the margin (and by the caller's end).
    request_ends = lease.by(TOKEN_REQUEST_SHARE) if deadline is None else min(lease.by(TOKEN_REQUEST_SHARE), deadline)
    tokens = _decrypt(ports, integration, credential)
    try:
        if not tokens.refresh_token:
            raise GrantRejected("no_refresh_token")
        fresh = request_tokens(
            oauth_spec(spec),
            token_url(settings, spec),
            client,
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
            timeout_seconds=settings.request_timeout_seconds,
            deadline=request_ends,
            previous=tokens,
        )
    except TokenRequestFailed as failure:
        rejected = isinstance(failure, GrantRejected)
        credential.refresh_error = REAUTHORIZE if rejected else TRANSIENT
        credential.updated_at = _next_version(credential)
        _finish(ports, integration, credential, lease)
        logger.warning(
            "oauth refresh failed",
            extra={"provider": spec.provider_id, "org_slug": integration.org_slug, "reason": failure.reason},
        )
        if rejected:
            raise ReauthorizationRequired(reauthorize_message(spec, integration.org_slug)) from None
        return _still_usable(ports, integration, credential, utc_now(), failure.reason)
    secret = fresh.to_secret()
    aad = credential_aad(integration.org_slug, integration.provider, credential.credential_id)
    encrypted = ports.cipher.encrypt(secret.encode(), aad)
    credential.encrypted_value, credential.key_version = encrypted.ciphertext, encrypted.key_version
    credential.fingerprint = credential_fingerprint(secret)
    credential.expires_at = fresh.expires_at
    credential.refresh_error = None
    credential.updated_at = _next_version(credential)
    _finish(ports, integration, credential, lease)
    logger.info("oauth token refreshed", extra={"provider": spec.provider_id, "org_slug": integration.org_slug})
    return fresh


def oauth_validation(
    ports: ServicePorts, spec: ProviderSpec, integration: Integration, credential: StoredCredential
) -> ValidationResult:
    """Refresh first when needed, then validate the access token like any credential: the refresh
    and the checks together end within ``VALIDATION_DEADLINE_SECONDS``."""
    settings = ports.settings
    deadline = time.monotonic() + settings.validation_deadline_seconds
    try:
        tokens = current_tokens(ports, spec, integration, credential, deadline=deadline)
    except ReauthorizationRequired as error:
        return ValidationResult(
            ok=False,
            details={"connection": False, "permissions": False, "message": error.message, "reauthorize": True},
            message=error.message,
            failure=Failure.INVALID_KEY,
            failure_class=FailureClass.CONFIG,
        )
    except (TokenEndpointUnavailable, ClientRejected, EncryptionFailed) as error:
        reason = error.reason if isinstance(error, TokenRequestFailed) else "Credential encryption failed"
        message = f"Unable to connect to {spec.display_name}"
        return ValidationResult(
            ok=False,
            details={"connection": False, "permissions": False, "message": message, "token_refresh": reason},
            message=message,
            failure=Failure.UNREACHABLE,
            failure_class=FailureClass.TRANSIENT,
        )
    context = ports.validation_context(spec)
    left = max(0.0, deadline - time.monotonic())
    if left < settings.validation_deadline_seconds:  # the checks get what the refresh left of the deadline
        context = context._replace(settings=replace(context.settings, validation_deadline_seconds=left))
    return validate_credential(spec, tokens.access_token, integration.config, context)
