"""The authorization-code flow: start (org key), callback (the state is the proof)
and completion (the org's key again).

``start`` answers the provider's authorize URL with a fresh ``state`` (random,
single use, bound to org and provider, expiring after
``OAUTH_STATE_TTL_MINUTES``) and, for PKCE providers, the S256 challenge of a
verifier that never leaves the server except encrypted in ``oauth_states``.
Only the state's SHA-256 is stored.

``callback`` consumes the state atomically (so a replay finds it used) and
exchanges the code with the verifier of *that* state (so a code issued for
another org's flow fails PKCE at the provider). It stores no integration: it
keeps the tokens in the flow's row, encrypted with associated data bound to the
flow, and answers a one-time ``completion_code`` (only its SHA-256 is stored).
Whoever holds the consent link can reach the callback; only the org can finish.

``complete`` takes that code with the org's own key: the flow must be that
org's and that provider's, not completed yet and not older than
``OAUTH_STATE_TTL_MINUTES`` since the callback. Then, and only then, it
validates the access token like any credential and stores the tokens as one
encrypted credential: a new integration, or a re-authorization of the existing
one. Every rejection stores nothing (docs/design/oauth-completion.md).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shared.crypto import oauth_state_aad, oauth_tokens_aad
from shared.domain.errors import (
    BadRequest,
    Conflict,
    OAuthFlowRejected,
    OAuthNotConfigured,
    ProviderUnavailable,
    ServiceError,
)
from shared.domain.lifecycle import apply_validation
from shared.domain.models import Integration, OAuthState, Status, new_id, utc_now
from shared.oauth import (
    TokenSet,
    authorize_url,
    client_for,
    oauth_spec,
    pkce_challenge,
    state_hash,
    token_url,
)
from shared.oauth.token_endpoint import ClientRejected, GrantRejected, TokenEndpointUnavailable, request_tokens
from shared.validators import ValidationResult, validate_credential

if TYPE_CHECKING:
    from datetime import datetime

    from shared.domain.caller import Caller
    from shared.domain.providers import ProviderSpec
    from shared.usecases.integrations import IntegrationService

STATE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
COMPLETION_CODE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
PROVIDER_ERROR_SHAPE = re.compile(r"^[a-z_]{1,64}$")
MAX_CODE_CHARS = 2048


@dataclass
class StartedFlow:
    provider: str
    authorize_url: str
    state: str
    expires_at: datetime
    code_challenge_method: str | None


@dataclass
class AuthorizedFlow:
    """What the callback answers: the flow's org and provider, and the completion code (never a token)."""

    org_slug: str | None = None
    provider: str | None = None
    completion_code: str | None = None
    completion_expires_at: datetime | None = None
    error: ServiceError | None = None


@dataclass
class CompletedFlow:
    """The integration the org's completion stored, and the validation of its access token."""

    integration: Integration
    result: ValidationResult


def _oauth_provider(service: IntegrationService, org_slug: str, provider_id: str) -> ProviderSpec:
    # A toggle-only tool is refused as setup refuses it: pointing it at setup would send the caller in a circle.
    spec = service.connectable_provider(org_slug, provider_id)
    if spec.oauth is None:
        raise BadRequest(
            f"{spec.display_name} does not connect through OAuth; "
            f"send its credential to POST /api/v1/integrations/{{org}}/{spec.provider_id}/setup"
        )
    return spec


def start(service: IntegrationService, caller: Caller, provider_id: str, config: Any) -> StartedFlow:
    spec = _oauth_provider(service, caller.org_slug, provider_id)
    oauth = oauth_spec(spec)
    clean_config = service.check_config(spec, config)
    settings = service.adapters.settings
    client = client_for(service.adapters.service_secrets, spec)
    redirect_uri = settings.oauth_redirect_uri
    if not redirect_uri:
        raise OAuthNotConfigured("OAuth needs OAUTH_REDIRECT_URI: the public URL of GET /api/v1/oauth/callback")
    state = secrets.token_urlsafe(32)
    hashed = state_hash(state)
    now = utc_now()
    expires_at = now + timedelta(seconds=settings.oauth_state_ttl_seconds)
    parameters = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if oauth.scopes:
        parameters["scope"] = " ".join(oauth.scopes)
    encrypted_verifier = key_version = None
    if oauth.pkce:
        verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]: RFC 7636's 43-128
        encrypted = service.adapters.cipher.encrypt(
            verifier.encode(), oauth_state_aad(caller.org_slug, spec.provider_id, hashed)
        )
        encrypted_verifier, key_version = encrypted.ciphertext, encrypted.key_version
        parameters.update(code_challenge=pkce_challenge(verifier), code_challenge_method="S256")
    service.adapters.store.create_oauth_state(
        OAuthState(
            state_hash=hashed,
            org_slug=caller.org_slug,
            provider=spec.provider_id,
            encrypted_verifier=encrypted_verifier,
            key_version=key_version,
            redirect_uri=redirect_uri,
            expires_at=expires_at,
            config=clean_config,
            created_at=now,
            created_by=caller.actor,
            actor_key_id=caller.key_id,
        )
    )
    base = authorize_url(settings, spec)
    return StartedFlow(
        provider=spec.provider_id,
        authorize_url=base + ("&" if "?" in base else "?") + urlencode(parameters),
        state=state,
        expires_at=expires_at,
        code_challenge_method="S256" if oauth.pkce else None,
    )


def callback(service: IntegrationService, arguments: dict[str, str]) -> AuthorizedFlow:
    """Run the callback; errors are returned in ``AuthorizedFlow.error`` (the caller redirects either way)."""
    outcome = AuthorizedFlow()
    try:
        _callback(service, arguments, outcome)
    except ServiceError as error:
        outcome.error = error
    return outcome


def _callback(service: IntegrationService, arguments: dict[str, str], outcome: AuthorizedFlow) -> None:
    state = arguments.get("state") or ""
    if not STATE_SHAPE.fullmatch(state):
        raise OAuthFlowRejected("The OAuth callback has no valid state; start the connection again")
    store = service.adapters.store
    now = utc_now()
    verdict, flow = store.consume_oauth_state(state_hash(state), now)
    if flow is not None:
        outcome.org_slug, outcome.provider = flow.org_slug, flow.provider
    if verdict == "unknown" or flow is None:
        raise OAuthFlowRejected("Unknown OAuth state; start the connection again")
    if verdict == "used":
        raise OAuthFlowRejected("This OAuth state was already used; start the connection again")
    if verdict == "expired":
        raise OAuthFlowRejected("This OAuth state has expired; start the connection again")
    spec = _oauth_provider(service, flow.org_slug, flow.provider)
    provider_error = arguments.get("error")
    if provider_error is not None:
        if provider_error == "access_denied":
            raise OAuthFlowRejected(f"{spec.display_name} access was denied on the consent screen; nothing was stored")
        shown = provider_error if PROVIDER_ERROR_SHAPE.fullmatch(provider_error) else "unknown_error"
        raise OAuthFlowRejected(f"{spec.display_name} authorization failed ({shown}); nothing was stored")
    code = arguments.get("code") or ""
    if not code or len(code) > MAX_CODE_CHARS:
        raise OAuthFlowRejected("The OAuth callback has no authorization code; start the connection again")
    tokens = _exchange(service, spec, flow, code)
    sealed = service.adapters.cipher.encrypt(
        tokens.to_secret().encode(), oauth_tokens_aad(flow.org_slug, flow.provider, flow.state_hash)
    )
    completion_code = secrets.token_urlsafe(32)
    expires_at = utc_now() + timedelta(seconds=service.adapters.settings.oauth_state_ttl_seconds)
    if not store.hold_oauth_tokens(
        flow.state_hash,
        encrypted_tokens=sealed.ciphertext,
        tokens_key_version=sealed.key_version,
        completion_code_hash=completion_hash(completion_code),
        completion_expires_at=expires_at,
    ):  # cannot happen to a state this call consumed; refuse rather than hand out a dead code
        raise Conflict(f"{spec.display_name} authorization could not be kept; start the connection again")
    outcome.completion_code, outcome.completion_expires_at = completion_code, expires_at


def complete(service: IntegrationService, caller: Caller, provider_id: str, completion_code: Any) -> CompletedFlow:
    """The org confirms a flow its callback authorized: only now are the tokens validated and stored."""
    spec = _oauth_provider(service, caller.org_slug, provider_id)
    if not isinstance(completion_code, str) or not COMPLETION_CODE_SHAPE.fullmatch(completion_code):
        raise BadRequest("Field 'completion_code' must be the completion_code the OAuth callback answered")
    verdict, flow = service.adapters.store.complete_oauth_flow(
        completion_hash(completion_code), caller.org_slug, spec.provider_id, utc_now()
    )
    # Another org's code, or another provider's, is unknown here: the answer tells nothing about it.
    if verdict == "unknown" or flow is None:
        raise OAuthFlowRejected(f"Unknown {spec.display_name} completion code; start the connection again")
    if verdict == "used":
        raise OAuthFlowRejected("This OAuth completion code was already used; start the connection again")
    if verdict == "expired" or flow.encrypted_tokens is None:
        raise OAuthFlowRejected("This OAuth completion code has expired; start the connection again")
    aad = oauth_tokens_aad(flow.org_slug, flow.provider, flow.state_hash)
    tokens = TokenSet.from_secret(service.adapters.cipher.decrypt(flow.encrypted_tokens, aad).decode())
    result = validate_credential(spec, tokens.access_token, flow.config, service.adapters.validation_context(spec))
    return CompletedFlow(integration=_store(service, caller, spec, flow, tokens, result), result=result)


def completion_hash(completion_code: str) -> str:
    """Only this is stored: a copy of the table cannot complete anyone's flow."""
    return hashlib.sha256(b"integrations/oauth-completion/v1:" + completion_code.encode()).hexdigest()


def _exchange(service: IntegrationService, spec: ProviderSpec, flow: OAuthState, code: str) -> TokenSet:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow.redirect_uri}
    if flow.encrypted_verifier is not None:
        aad = oauth_state_aad(flow.org_slug, flow.provider, flow.state_hash)
        form["code_verifier"] = service.adapters.cipher.decrypt(flow.encrypted_verifier, aad).decode()
    settings = service.adapters.settings
    try:
        return request_tokens(
            oauth_spec(spec),
            token_url(settings, spec),
            client_for(service.adapters.service_secrets, spec),
            form,
            timeout_seconds=settings.request_timeout_seconds,
        )
    except GrantRejected:
        raise OAuthFlowRejected(
            f"{spec.display_name} refused the authorization code (expired, already used, or issued to another"
            " connection); nothing was stored; start the connection again"
        ) from None
    except ClientRejected as error:
        raise OAuthNotConfigured(
            f"{spec.display_name} refused this deployment's OAuth client ({error.reason}); nothing was stored"
        ) from None
    except TokenEndpointUnavailable:
        raise ProviderUnavailable(f"Unable to connect to {spec.display_name}; nothing was stored") from None


def _store(
    service: IntegrationService,
    caller: Caller,
    spec: ProviderSpec,
    flow: OAuthState,
    tokens: TokenSet,
    result: ValidationResult,
) -> Integration:
    store = service.adapters.store
    existing = store.get_integration_with_credential(flow.org_slug, spec.provider_id)
    action = "oauth_connect" if existing is None else "oauth_reauthorize"
    credential = service.encrypt_credential(caller, spec, tokens.to_secret(), action, tokens.expires_at)
    now = credential.created_at
    audit = caller.audit(
        flow.org_slug,
        spec.provider_id,
        action,
        "success" if result.ok else "failure",
        fingerprint=credential.fingerprint,
        detail=result.message,
    )
    if existing is None:
        integration = Integration(
            integration_id=new_id(),
            org_slug=flow.org_slug,
            provider=spec.provider_id,
            status=Status.PENDING,
            credential_id=credential.credential_id,
            config=flow.config,
            # The refresh token's end (when the provider says) is when only a new consent helps.
            expires_at=tokens.refresh_token_expires_at,
            created_at=now,
            updated_at=now,
            created_by=caller.actor,
        )
        apply_validation(integration, result, now, transient_tolerance=0)
        if not store.create_integration(integration, credential, audit):
            raise Conflict(f"{spec.display_name} was connected by another request at the same time; nothing was stored")
        return integration
    integration, old_credential = existing
    read_version = integration.updated_at
    integration.credential_id = credential.credential_id
    integration.expires_at = tokens.refresh_token_expires_at
    integration.expiry_alert_window = None
    if flow.config:
        integration.config = flow.config
    if integration.status == Status.DISABLED:
        integration.status = Status.PENDING  # a new consent is an explicit wish to use it
    apply_validation(integration, result, now, transient_tolerance=0)
    if not store.replace_credential(
        integration,
        credential,
        audit,
        expected_credential_id=old_credential.credential_id,
        expected_updated_at=read_version,
    ):
        raise Conflict(f"{spec.display_name} changed during the connection; nothing was stored; try again")
    return integration
