"""The pipelines' read side: a usable, short-lived credential for an ``active`` integration.

The route (``POST /api/v1/integrations/{org}/{provider}/access``,
``functions/credential_access.py``) and ``shared.inbound.pipelines.access_credential``
(for a pipeline that imports this package, a Cloud Run job next to the service)
run the same ``access``:

1. the pipeline must be one the provider declares in the registry;
2. one store read: the integration and its credential, handed out only while
   the integration is ``active`` and not past its expiry;
3. one decrypt, and where the provider offers something shorter-lived than
   the stored secret, one token call: a Google access token minted from a
   service-account key (JWT-bearer grant, the registry's scopes), an STS
   session of an AWS role, an Azure Resource Manager token of a service
   principal, an OAuth access token refreshed first when near expiry (the
   single-flight refresh of ``shared.usecases.oauth_refresh``). API keys and SaaS
   tokens go out as they are: their providers offer nothing shorter-lived;
4. one audit row (``credential_accessed``, whatever the outcome), appended
   with ``IntegrationStore.append_audit``, never a DML statement: pipelines
   may fetch thousands of credentials an hour and BigQuery queues at most 20
   mutating statements per table.

A provider that refuses the stored credential turns the integration to
``error`` (by a validation, which records the message and the alert) and the
pipeline gets 409; an unreachable provider gets 503 and changes nothing.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from shared.domain.caller import Caller
from shared.domain.errors import (
    BadRequest,
    Forbidden,
    IntegrationNotActive,
    NotFound,
    ProviderUnavailable,
    ReauthorizationRequired,
    ServiceError,
)
from shared.domain.inputs import check_org_slug
from shared.domain.models import AuditEvent, Integration, Status, StoredCredential, credential_fingerprint, iso, utc_now
from shared.domain.providers import ROLE_ARN_FIELD
from shared.usecases.integrations import no_integration

if TYPE_CHECKING:
    from datetime import datetime

    from shared.domain.providers import ProviderSpec
    from shared.domain.validation import CheckResult
    from shared.usecases.integrations import IntegrationService

logger = logging.getLogger("integrations.credential_access")

ACTION = "credential_accessed"
# AWS RoleSessionName: 2-64 of [\w+=,.@-]; it shows in the customer's CloudTrail.
SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")


class CredentialAccess(NamedTuple):
    """What a pipeline gets: the credential to use for ``pipeline``, and until when."""

    org_slug: str
    provider: str
    pipeline: str
    credential_type: str  # the registry's: api_key | service_account | oauth
    credential: dict[str, Any]
    expires_at: datetime | None
    fingerprint: str  # of the stored credential the answer comes from (sha256, 8 hex)
    # The integration's config (no secret): where the pipeline reads (dataset, bucket, scope, organization).
    config: dict[str, Any]

    def to_answer(self) -> dict[str, Any]:
        """The route's answer body (besides ``success``)."""
        return {
            "org_slug": self.org_slug,
            "provider": self.provider,
            "pipeline": self.pipeline,
            "credential_type": self.credential_type,
            "credential": self.credential,
            "expires_at": iso(self.expires_at),
            "fingerprint": self.fingerprint,
            "config": self.config,
        }


def check_pipeline_caller(caller: Caller, pipelines_service_account: str | None) -> None:
    """Only pipelines may read a credential back: an admin key, or the pipelines' platform identity.

    An organization's own key is refused: an org's users never read a secret
    back. In platform mode (``REVALIDATE_AUTH=platform``) Cloud Run let only
    the invokers of this function through, and the token must also be the
    pipelines' service account's. With none configured no token is: the
    invoker check alone would also let in whoever holds run.invoker through a
    broader role (a project owner), and "unset" must mean no one, not anyone.
    """
    if not caller.is_admin:
        raise Forbidden("Credential access is for the platform's pipelines: it needs an admin API key")
    if caller.key_id.startswith("oidc:"):
        if not pipelines_service_account:
            raise Forbidden("Credential access is closed: PIPELINES_SERVICE_ACCOUNT names no pipelines' identity")
        if caller.key_id != f"oidc:{pipelines_service_account}":
            raise Forbidden("Credential access is for the pipelines' service account only")


def access(
    service: IntegrationService, caller: Caller, org_slug: str, provider_id: str, pipeline: Any
) -> CredentialAccess:
    """The credential ``pipeline`` needs for ``org_slug``'s ``provider_id``, audited whatever the outcome."""
    spec = _provider(service, org_slug, provider_id)
    acting = caller._replace(org_slug=org_slug)  # the admin or pipeline identity, acting on this org
    declared = pipeline if isinstance(pipeline, str) and pipeline in spec.pipelines else None
    audit = acting.audit(org_slug, spec.provider_id, ACTION, "success", pipeline=declared)
    try:
        if declared is None:
            raise _undeclared_pipeline(spec, pipeline)
        answer = _access(service, acting, spec, declared, audit)
    except ServiceError as error:
        _record_refusal(service, audit, error)
        raise
    _record(service, audit, None)
    return answer


def audit_refusal(
    service: IntegrationService, caller: Caller, org_slug: str, provider_id: str, error: ServiceError
) -> None:
    """The audit row of a call refused before ``access`` ran (the route's caller or body check).

    Such a call is an access refused like any other, so it leaves the same row
    (no pipeline: the body did not name a declared one). A path whose
    organization or provider cannot be named leaves none, as in ``access``:
    the path is the caller's input, and no row is keyed by it.
    """
    try:
        spec = _provider(service, org_slug, provider_id)
    except ServiceError:
        return
    audit = caller._replace(org_slug=org_slug).audit(org_slug, spec.provider_id, ACTION, "rejected")
    _record_refusal(service, audit, error)


def _provider(service: IntegrationService, org_slug: str, provider_id: str) -> ProviderSpec:
    """The provider whose credential is asked for, on a well-formed organization; else 400 or 404 (no row)."""
    check_org_slug(org_slug)
    spec = service.registry.get(provider_id)
    if spec is None or not spec.connectable:
        known = ", ".join(sorted(p for p, s in service.registry.providers.items() if s.connectable))
        raise NotFound(f"No such provider to read a credential of; providers with credentials: {known}")
    return spec


def _record_refusal(service: IntegrationService, audit: AuditEvent, error: ServiceError) -> None:
    audit.outcome = "failure" if error.status_code >= 500 else "rejected"
    audit.detail = error.message
    _record(service, audit, error.code)


def _record(service: IntegrationService, audit: AuditEvent, code: str | None) -> None:
    """The audit row, and one log line per access that a log-based metric counts (terraform/monitoring.tf)."""
    service.adapters.store.append_audit(audit)
    logger.info(
        "credential access",
        extra={
            "org_slug": audit.org_slug,
            "provider": audit.provider,
            "pipeline": audit.pipeline,
            "outcome": audit.outcome,
            "code": code,
            "actor": audit.actor_key_id,
        },
    )


def _access(
    service: IntegrationService, caller: Caller, spec: ProviderSpec, pipeline: str, audit: AuditEvent
) -> CredentialAccess:
    pair = service.adapters.store.get_integration_with_credential(caller.org_slug, spec.provider_id)
    if pair is None:
        raise no_integration(spec)
    integration, credential = pair
    audit.credential_fingerprint = credential.fingerprint
    _check_active(spec, integration)
    if spec.credential_type == "oauth":
        payload, expires_at, audit.credential_fingerprint = _oauth_token(service, caller, spec, integration, credential)
    else:
        secret = service.decrypt_credential(integration, credential)
        payload, expires_at = _usable_credential(service, caller, spec, integration, secret, pipeline)
    return CredentialAccess(
        org_slug=caller.org_slug,
        provider=spec.provider_id,
        pipeline=pipeline,
        credential_type=spec.credential_type,
        credential=payload,
        expires_at=expires_at,
        fingerprint=audit.credential_fingerprint or credential.fingerprint,
        config=dict(integration.config),
    )


def _usable_credential(
    service: IntegrationService,
    caller: Caller,
    spec: ProviderSpec,
    integration: Integration,
    secret: str,
    pipeline: str,
) -> tuple[dict[str, Any], datetime | None]:
    """What the pipeline gets for ``secret``: a token or session where the provider mints one, else the key."""
    context = service.adapters.validation_context(spec)
    module = spec.validation.get("module")
    if module in ("gcp_service_account", "azure_service_principal"):
        if module == "gcp_service_account":
            from shared.validators.gcp_live import mint_access_token
        else:
            from shared.validators.azure_live import mint_access_token
        scopes = spec.access_scopes[pipeline]
        token = _issued(service, caller, spec, mint_access_token(secret, scopes, context))
        return {"access_token": token.access_token, "token_type": "Bearer", "scopes": list(scopes)}, token.expires_at
    if spec.credential_field == ROLE_ARN_FIELD:
        from shared.validators.aws_live import assume_for_pipeline

        assumed = assume_for_pipeline(
            spec,
            secret,
            integration.config,
            context,
            session_name=session_name(caller.org_slug, pipeline),
            duration_seconds=service.adapters.settings.access_aws_session_seconds,
        )
        session = _issued(service, caller, spec, assumed)
        return {
            "access_key_id": session.access_key_id,
            "secret_access_key": session.secret_access_key,
            "session_token": session.session_token,
        }, session.expires_at
    # API keys and SaaS API tokens: the provider offers nothing shorter-lived.
    return {"api_key": secret}, integration.expires_at


Issued = TypeVar("Issued")


def _issued(service: IntegrationService, caller: Caller, spec: ProviderSpec, minted: Issued | CheckResult) -> Issued:
    """``minted`` when the provider issued it; else its refusal recorded (409) or the outage answered (503)."""
    from shared.domain.validation import CheckResult, FailureClass

    if not isinstance(minted, CheckResult):
        return minted
    if minted.failure_class == FailureClass.CONFIG:
        raise _refused(service, caller, spec)
    raise ProviderUnavailable(f"Unable to connect to {spec.display_name}")


def _refused(service: IntegrationService, caller: Caller, spec: ProviderSpec) -> ServiceError:
    """The provider refused a credential the integration holds as active: a validation records why."""
    outcome = service.validate(caller, spec.provider_id)  # the error status, its message and the alert
    if outcome.result.ok:  # refused a moment ago, accepted now: nothing to record; the pipeline tries again
        return ProviderUnavailable(f"Unable to connect to {spec.display_name}")
    return _not_active(spec, outcome.integration, f"{spec.display_name} refused the stored credential")


def _oauth_token(
    service: IntegrationService,
    caller: Caller,
    spec: ProviderSpec,
    integration: Integration,
    credential: StoredCredential,
) -> tuple[dict[str, Any], datetime | None, str]:
    from shared.oauth.token_endpoint import TokenEndpointUnavailable
    from shared.usecases.oauth_refresh import current_tokens

    try:
        tokens = current_tokens(service.adapters, spec, integration, credential)  # one refresh, whatever the load
    except ReauthorizationRequired:
        outcome = service.validate(caller, spec.provider_id)  # records error + alert; makes no token call
        raise _not_active(spec, outcome.integration, f"{spec.display_name} refused the refresh") from None
    except TokenEndpointUnavailable:
        raise ProviderUnavailable(f"Unable to connect to {spec.display_name}") from None
    # The stored secret is the token set's to_secret(): after a refresh, this is the new row's fingerprint.
    fingerprint = credential_fingerprint(tokens.to_secret())
    return {"access_token": tokens.access_token, "token_type": "Bearer"}, tokens.expires_at, fingerprint


def _not_active(spec: ProviderSpec, integration: Integration, what_happened: str | None = None) -> IntegrationNotActive:
    message = f"Integration for {spec.display_name} is {integration.status}, not active"
    if what_happened:
        message = f"{what_happened}; the integration is now {integration.status}"
    if integration.error_message:
        message += f": {integration.error_message}"
    return IntegrationNotActive(
        message, details={"status": integration.status, "error_message": integration.error_message}
    )


def _check_active(spec: ProviderSpec, integration: Integration) -> None:
    if integration.status != Status.ACTIVE:
        raise _not_active(spec, integration)
    if integration.expires_at is not None and integration.expires_at <= utc_now():
        raise IntegrationNotActive(
            f"{spec.display_name} credential expired at {iso(integration.expires_at)}; rotate it",
            details={"status": Status.EXPIRED, "error_message": None, "expires_at": iso(integration.expires_at)},
        )


def _undeclared_pipeline(spec: ProviderSpec, pipeline: Any) -> BadRequest:
    # The caller's value is not quoted back: name what the registry declares instead.
    if not isinstance(pipeline, str):
        return BadRequest("Field 'pipeline' must be a string")
    if not spec.pipelines:
        return BadRequest(f"{spec.display_name} feeds no pipeline: there is no credential to hand out for it")
    return BadRequest(
        f"Field 'pipeline' is not a pipeline of {spec.display_name}; its pipelines: {', '.join(spec.pipelines)}"
    )


def session_name(org_slug: str, pipeline: str) -> str:
    """The AWS session name: the org and the pipeline, so the customer's CloudTrail says who read what."""
    return SESSION_NAME_UNSAFE.sub("-", f"{org_slug}@{pipeline}")[:64]
