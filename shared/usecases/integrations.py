"""The integration lifecycle: setup, validate, list, get, update, delete, rotate.

``IntegrationService`` is the one object the entry points call. It sees ports
only (``shared.usecases.ports.ServicePorts``; ``shared.app.wiring`` builds them
lazily), checks every input against the provider registry
(``credential_checks``), and keeps the invariants: the plaintext secret lives
only in local variables between the request and the cipher or the provider
call; every credential operation writes one audit row; a failed step leaves the
stored state as it was. Its API keys (``api_keys.ApiKeyAuthentication``) and an
organization's webhook and alerts (``alerts.AlertsAndWebhooks``) are mixins
kept in their own modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.crypto import credential_aad
from shared.domain.caller import Caller
from shared.domain.errors import (
    BadRequest,
    Conflict,
    CredentialRejected,
    EncryptionFailed,
    IntegrationAlreadyExists,
    IntegrationDisabled,
    InvalidCredentialFormat,
    NotFound,
    ProviderNotConnectable,
    ProviderUnavailable,
    ReauthorizationRequired,
    UnknownProvider,
)
from shared.domain.lifecycle import apply_validation, expired_result
from shared.domain.models import (
    Alert,
    AuditEvent,
    Integration,
    SettingsChange,
    Status,
    StoredCredential,
    credential_fingerprint,
    new_id,
    utc_now,
)
from shared.domain.providers import ROLE_ARN_FIELD, ProviderSpec, Registry
from shared.usecases.alerts import AlertsAndWebhooks, deliver_alerts, status_alert
from shared.usecases.api_keys import ApiKeyAuthentication, KeyCache

# shared.validators (and its aws/gcp parsers) is imported where a credential is checked,
# not here: list, get and an API key's setup never need it, and every cold start imports
# this module.
if TYPE_CHECKING:
    from shared.domain.validation import ValidationResult
    from shared.usecases.ports import ServicePorts

logger = logging.getLogger("integrations.service")


@dataclass
class ValidationOutcome:
    """The integration after a validation, and the validation's result."""

    integration: Integration
    result: ValidationResult


@dataclass
class IntegrationService(ApiKeyAuthentication, AlertsAndWebhooks):
    """The credential operations, over the ports it is given (``shared.app.wiring`` builds it)."""

    adapters: ServicePorts
    registry: Registry
    _key_cache: KeyCache = field(default_factory=KeyCache, repr=False)

    # --- input checks -----------------------------------------------------------------

    def provider(self, provider_id: str) -> ProviderSpec:
        spec = self.registry.get(provider_id)
        if spec is None:
            # The name asked for is not repeated: a secret pasted into the wrong place must not come back.
            known = ", ".join(sorted(self.registry.providers))
            raise UnknownProvider(f"Unknown provider; supported providers: {known}")
        return spec

    def connectable_provider(self, org_slug: str, provider_id: str) -> ProviderSpec:
        """A provider a credential can be set up for; a toggle-only SaaS tool is refused (400)."""
        spec = self.provider(provider_id)
        if not spec.connectable:
            raise ProviderNotConnectable(
                f"{spec.display_name} has no API connection: it is a subscription toggle only;"
                f" use PUT /api/v1/subscriptions/{org_slug}/providers/{spec.provider_id}"
                ' with {"enabled": true}'
            )
        return spec

    # The checks are imported where a request brings credentials or config: list, get and delete never do.

    def check_credentials(self, spec: ProviderSpec, credentials: Any) -> str:
        """The plaintext secret of ``credentials`` after setup's checks (400 saying what is wrong, never quoting it)."""
        from shared.usecases.credential_checks import credential_secret

        return credential_secret(spec, credentials, self.adapters.settings)

    def check_config(self, spec: ProviderSpec, config: Any) -> dict[str, str]:
        """``config`` checked against the provider's config fields (400 naming what is wrong)."""
        from shared.usecases.credential_checks import checked_config

        return checked_config(spec, config)

    def _integration(self, org_slug: str, spec: ProviderSpec) -> Integration:
        integration = self.adapters.store.get_integration(org_slug, spec.provider_id)
        if integration is None:
            raise no_integration(spec)
        return integration

    def _with_credential(self, org_slug: str, spec: ProviderSpec) -> tuple[Integration, StoredCredential]:
        pair = self.adapters.store.get_integration_with_credential(org_slug, spec.provider_id)
        if pair is None:
            raise no_integration(spec)
        return pair

    def _audit(
        self,
        caller: Caller,
        spec: ProviderSpec,
        action: str,
        outcome: str,
        *,
        fingerprint: str | None = None,
        detail: str | None = None,
    ) -> AuditEvent:
        return caller.audit(caller.org_slug, spec.provider_id, action, outcome, fingerprint=fingerprint, detail=detail)

    def encrypt_credential(
        self, caller: Caller, spec: ProviderSpec, secret: str, action: str, expires_at: datetime | None
    ) -> StoredCredential:
        """A new credential row holding ``secret`` encrypted (audits a KMS failure)."""
        return self._encrypt(caller, spec, secret, action, expires_at)

    def _encrypt(
        self, caller: Caller, spec: ProviderSpec, secret: str, action: str, expires_at: datetime | None
    ) -> StoredCredential:
        credential_id = new_id()
        fingerprint = credential_fingerprint(secret)
        try:
            encrypted = self.adapters.cipher.encrypt(
                secret.encode(), credential_aad(caller.org_slug, spec.provider_id, credential_id)
            )
        except EncryptionFailed:
            self.adapters.store.record_audit(
                self._audit(
                    caller, spec, action, "failure", fingerprint=fingerprint, detail="Credential encryption failed"
                )
            )
            raise
        return StoredCredential(
            credential_id=credential_id,
            org_slug=caller.org_slug,
            provider=spec.provider_id,
            credential_type=spec.credential_type,
            encrypted_value=encrypted.ciphertext,
            key_version=encrypted.key_version,
            fingerprint=fingerprint,
            expires_at=expires_at,
            created_by=caller.actor,
        )

    def _with_external_id(self, caller: Caller, spec: ProviderSpec, secret: str) -> str:
        """A cross-account role is stored with the org's external ID, so checks need no extra read."""
        return self.bind_external_id(caller, spec, secret)

    def bind_external_id(self, caller: Caller, spec: ProviderSpec, secret: str, *, create: bool = True) -> str:
        """The secret as stored: a cross-account role with the org's external ID (one store job), else as is.

        ``create=False`` (a dry run) only reads: an org without an external ID
        yet gets a throwaway one, which no customer's trust policy can name.
        """
        if spec.credential_field != ROLE_ARN_FIELD:
            return secret
        from shared.validators.aws import new_external_id, stored_credential

        store = self.adapters.store
        if create:
            external_id = store.external_id(caller.org_slug, spec.provider_id, new_external_id())
        else:
            external_id = store.find_external_id(caller.org_slug, spec.provider_id) or new_external_id()
        return stored_credential(secret, external_id)

    def decrypt_credential(self, integration: Integration, credential: StoredCredential) -> str:
        aad = credential_aad(integration.org_slug, integration.provider, credential.credential_id)
        return self.adapters.cipher.decrypt(credential.encrypted_value, aad).decode()

    # --- use cases -----------------------------------------------------------------------

    def setup(
        self, caller: Caller, provider_id: str, credentials: Any, config: Any, expires_at: datetime | None
    ) -> Integration:
        spec = self.connectable_provider(caller.org_slug, provider_id)
        try:
            secret = self.check_credentials(spec, credentials)
        except InvalidCredentialFormat as error:
            self.adapters.store.record_audit(self._audit(caller, spec, "setup", "rejected", detail=error.message))
            raise
        clean_config = self.check_config(spec, config)
        secret = self._with_external_id(caller, spec, secret)
        credential = self._encrypt(caller, spec, secret, "setup", expires_at)
        now = credential.created_at
        integration = Integration(
            integration_id=new_id(),
            org_slug=caller.org_slug,
            provider=spec.provider_id,
            status=Status.PENDING,
            credential_id=credential.credential_id,
            config=clean_config,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
            created_by=caller.actor,
        )
        audit = self._audit(caller, spec, "setup", "success", fingerprint=credential.fingerprint)
        if not self.adapters.store.create_integration(integration, credential, audit):
            message = f"Integration already exists for {spec.display_name}"
            self.adapters.store.record_audit(
                self._audit(caller, spec, "setup", "rejected", fingerprint=credential.fingerprint, detail=message)
            )
            raise IntegrationAlreadyExists(message)
        return integration

    def validate(self, caller: Caller, provider_id: str) -> ValidationOutcome:
        spec = self.provider(provider_id)
        integration, credential = self._with_credential(caller.org_slug, spec)
        if integration.status == Status.DISABLED:
            raise IntegrationDisabled(f"Integration for {spec.display_name} is disabled; enable it before validating")
        read_version, before = integration.updated_at, integration.status
        now = utc_now()
        if integration.expires_at is not None and integration.expires_at <= now:
            result = expired_result(spec, integration.expires_at)
        elif spec.credential_type == "oauth":
            from shared.usecases.oauth_refresh import oauth_validation

            result = oauth_validation(self.adapters, spec, integration, credential)  # refreshes first if near expiry
        else:
            from shared.validators import validate_credential

            secret = self.decrypt_credential(integration, credential)
            result = validate_credential(spec, secret, integration.config, self.adapters.validation_context(spec))
        apply_validation(integration, result, now, transient_tolerance=0)
        audit = self._audit(
            caller,
            spec,
            "validate",
            "success" if result.ok else "failure",
            fingerprint=credential.fingerprint,
            detail=result.message,
        )
        # Every change to error or expired (and back to active) alerts the org, as revalidation's do.
        alert = status_alert(before, integration, spec.display_name, integration.updated_at)
        if alert is not None:
            saved = self._save_with_status_alert(integration, audit, read_version, alert)
        else:
            saved = self.adapters.store.save_integration(integration, audit, expected_updated_at=read_version)
        if not saved:
            raise Conflict(f"Integration for {spec.display_name} changed during validation; try again")
        return ValidationOutcome(integration, result)

    def _save_with_status_alert(
        self, integration: Integration, audit: AuditEvent, read_version: datetime, alert: Alert
    ) -> bool:
        """Save a validation that changed the status with its alert (one job), and deliver the alert."""
        written, inserted = self.adapters.store.save_revalidation_results([(integration, audit, read_version)], [alert])
        if alert.alert_id in inserted:
            deliver_alerts(self.adapters, [alert])
        return written == 1

    def oauth_access_token(self, caller: Caller, provider_id: str) -> str:
        """A usable access token for a pipeline, refreshed first when near expiry (one refresh per expiry).

        Raises ``ReauthorizationRequired`` (and records the integration's error
        and alert) when the provider refused the refresh token.
        """
        from shared.oauth.token_endpoint import TokenEndpointUnavailable
        from shared.usecases.oauth_refresh import current_tokens

        spec = self.provider(provider_id)
        if spec.credential_type != "oauth":
            raise BadRequest(f"{spec.display_name} is not an OAuth integration")
        integration, credential = self._with_credential(caller.org_slug, spec)
        if integration.status == Status.DISABLED:
            raise IntegrationDisabled(f"Integration for {spec.display_name} is disabled")
        try:
            return current_tokens(self.adapters, spec, integration, credential).access_token
        except ReauthorizationRequired:
            self.validate(caller, provider_id)  # records error + alert; makes no token call (refresh_error is set)
            raise
        except TokenEndpointUnavailable:
            raise ProviderUnavailable(f"Unable to connect to {spec.display_name}") from None

    def list_integrations(self, caller: Caller) -> list[Integration]:
        return self.adapters.store.list_integrations(caller.org_slug)

    def get(self, caller: Caller, provider_id: str) -> Integration:
        return self._integration(caller.org_slug, self.provider(provider_id))

    def update(self, caller: Caller, provider_id: str, change: SettingsChange) -> Integration:
        spec = self.provider(provider_id)
        if change.config is not None:
            change = SettingsChange(
                config=self.check_config(spec, change.config),
                enabled=change.enabled,
                expires_at=change.expires_at,
                clear_expires_at=change.clear_expires_at,
            )
        action = {True: "enable", False: "disable", None: "update"}[change.enabled]
        updated = self.adapters.store.update_settings(
            caller.org_slug, spec.provider_id, change, self._audit(caller, spec, action, "success")
        )
        if updated is None:
            raise no_integration(spec)
        return updated

    def delete(self, caller: Caller, provider_id: str) -> None:
        spec = self.provider(provider_id)
        if not self.adapters.store.delete_integration(
            caller.org_slug, spec.provider_id, self._audit(caller, spec, "delete", "success")
        ):
            raise no_integration(spec)

    def rotate(
        self, caller: Caller, provider_id: str, new_credentials: Any, expires_at: datetime | None
    ) -> ValidationOutcome:
        """Validate the new credential first; only a good one replaces the old."""
        spec = self.provider(provider_id)
        integration, old_credential = self._with_credential(caller.org_slug, spec)
        if integration.status == Status.DISABLED:
            raise IntegrationDisabled(f"Integration for {spec.display_name} is disabled; enable it before rotating")
        # The row version this rotation builds on: the provider check below can be
        # slow, and a settings change meanwhile must win over what was read here.
        read_version = integration.updated_at
        try:
            secret = self.check_credentials(spec, new_credentials)
        except InvalidCredentialFormat as error:
            self.adapters.store.record_audit(self._audit(caller, spec, "rotate", "rejected", detail=error.message))
            raise
        secret = self._with_external_id(caller, spec, secret)
        from shared.validators import FailureClass, validate_credential

        result = validate_credential(spec, secret, integration.config, self.adapters.validation_context(spec))
        if not result.ok:
            message = result.message or f"{spec.display_name} API key is invalid or expired"
            self.adapters.store.record_audit(
                self._audit(
                    caller, spec, "rotate", "rejected", fingerprint=credential_fingerprint(secret), detail=message
                )
            )
            error_type = CredentialRejected if result.failure_class == FailureClass.CONFIG else ProviderUnavailable
            raise error_type(message, details=result.details)
        if expires_at is None:
            # A rotation without a new expiry keeps the one the integration had;
            # the answer's integration.expires_at shows which applies.
            expires_at = integration.expires_at
        elif expires_at != integration.expires_at:
            integration.expiry_alert_window = None  # a new expiry gets its warnings anew
        credential = self._encrypt(caller, spec, secret, "rotate", expires_at)
        now = credential.created_at
        integration.credential_id = credential.credential_id
        integration.expires_at = expires_at
        apply_validation(integration, result, now, transient_tolerance=0)
        audit = self._audit(
            caller,
            spec,
            "rotate",
            "success",
            fingerprint=credential.fingerprint,
            detail=f"replaced credential {old_credential.fingerprint}",
        )
        if not self.adapters.store.replace_credential(
            integration,
            credential,
            audit,
            expected_credential_id=old_credential.credential_id,
            expected_updated_at=read_version,
        ):
            self.adapters.store.record_audit(
                self._audit(
                    caller,
                    spec,
                    "rotate",
                    "rejected",
                    fingerprint=credential.fingerprint,
                    detail="integration changed during rotation",
                )
            )
            raise Conflict(f"Integration for {spec.display_name} changed during rotation; try again")
        return ValidationOutcome(integration, result)

    def setup_instructions(
        self, caller: Caller, provider_id: str, export_bucket: str | None, export_prefix: str | None
    ) -> dict[str, Any]:
        """What to create in AWS before setup: the org's external ID (made once, kept) and the policies."""
        spec = self.provider(provider_id)
        if spec.credential_field != ROLE_ARN_FIELD:
            raise NotFound(f"{spec.display_name} has no setup instructions")
        for name, value in (("export_bucket", export_bucket), ("export_prefix", export_prefix)):
            field_spec = spec.config_fields[name]
            if value is not None and not field_spec.pattern.fullmatch(value):
                raise BadRequest(f"Query parameter '{name}' must match {field_spec.pattern.pattern}")
        platform_role_arn = self.adapters.settings.aws_platform_role_arn
        if not platform_role_arn:
            raise ProviderUnavailable(
                f"{spec.display_name} is not configured on this deployment: the operator must set AWS_PLATFORM_ROLE_ARN"
            )
        from shared.validators.aws import new_external_id, setup_instructions

        external_id = self.adapters.store.external_id(caller.org_slug, spec.provider_id, new_external_id())
        return setup_instructions(spec.display_name, platform_role_arn, external_id, export_bucket, export_prefix)


def no_integration(spec: ProviderSpec) -> NotFound:
    return NotFound(f"No integration for {spec.display_name} in this organization")
