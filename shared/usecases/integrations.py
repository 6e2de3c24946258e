"""The use cases: setup, validate, list, get, update, delete, rotate.

The service sees ports only (``shared.usecases.ports.ServicePorts``; ``shared.app.wiring`` builds
them lazily), checks every input against the provider registry, and keeps the invariants: the plaintext
secret lives only in local variables between the request and the cipher or
the provider call; every credential operation writes one audit row; a failed
step leaves the stored state as it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    Forbidden,
    IntegrationAlreadyExists,
    IntegrationDisabled,
    InvalidCredentialFormat,
    NotFound,
    ProviderNotConnectable,
    ProviderUnavailable,
    ReauthorizationRequired,
    Unauthenticated,
    UnknownProvider,
)
from shared.domain.inputs import check_org_slug
from shared.domain.lifecycle import apply_validation, expired_result
from shared.domain.models import (
    Alert,
    ApiKeyRecord,
    AuditEvent,
    Integration,
    SettingsChange,
    Status,
    StoredCredential,
    Webhook,
    credential_fingerprint,
    new_id,
    utc_now,
)
from shared.domain.providers import ROLE_ARN_FIELD, ProviderSpec, Registry
from shared.usecases.alerts import deliver_alerts, status_alert

# shared.validators (and its aws/gcp parsers) is imported where a credential is checked,
# not here: list, get and an API key's setup never need it, and every cold start imports
# this module.
if TYPE_CHECKING:
    from shared.domain.validation import ValidationResult
    from shared.store import KeyCheck
    from shared.usecases.ports import ServicePorts

logger = logging.getLogger("integrations.service")

# Org API keys: signed (ik_v2_<org>_<key id>_<o|a>_<signature>) and, issued before those, unsigned.
SIGNED_API_KEY_SHAPE = re.compile(r"ik_v2_([a-z0-9][a-z0-9_-]{1,62})_([0-9a-f]{16})_([oa])_([A-Za-z0-9_-]{43})")
UNSIGNED_API_KEY_SHAPE = re.compile(r"^ik_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")
ORG_ROLE, ADMIN_ROLE = "o", "a"
# Derives the key-signing key from the pepper (the pepper also hashes keys and derives webhook secrets).
KEY_SIGNING_LABEL = b"integrations:api-key-signature:v2"
MAX_SECRET_CHARS = 16 * 1024


@dataclass
class _CachedKey:
    """An API key record and when it was read (the auth cache's entry)."""

    record: ApiKeyRecord
    fetched_at: float


@dataclass
class ValidationOutcome:
    """The integration after a validation, and the validation's result."""

    integration: Integration
    result: ValidationResult


@dataclass
class IntegrationService:
    """The credential operations, over the ports it is given (``shared.app.wiring`` builds it)."""

    adapters: ServicePorts
    registry: Registry
    _key_cache: dict[str, _CachedKey] = field(default_factory=dict)
    _key_cache_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- org API keys -------------------------------------------------------------
    #
    # A key is ik_v2_<org>_<key id>_<role>_<signature>: the signature (HMAC-SHA256 under a key
    # derived from the pepper) proves org and role without the store, so a key of another org or
    # role is refused before anything is read. Whether the key is still on file and not revoked
    # is confirmed by the store inside the request's first job (``authenticated``), or by one
    # lookup when the request has no job; a confirmed key is then trusted for AUTH_CACHE_SECONDS.
    # Keys issued before signatures (ik_<key id>_<secret>) are looked up first, as they always
    # were. docs/design/api-key-auth.md has the reasons.

    def _hash_api_key(self, api_key: str) -> str:
        return hmac.new(self.adapters.api_key_pepper, api_key.encode(), hashlib.sha256).hexdigest()

    def _key_signature(self, org_slug: str, key_id: str, role: str) -> str:
        signing_key = hmac.new(self.adapters.api_key_pepper, KEY_SIGNING_LABEL, hashlib.sha256).digest()
        message = f"{org_slug}\x00{key_id}\x00{role}".encode()
        return base64.urlsafe_b64encode(hmac.new(signing_key, message, hashlib.sha256).digest()).rstrip(b"=").decode()

    def create_api_key(
        self, org_slug: str, *, is_admin: bool = False, label: str | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for ``org_slug``; the plaintext is returned once and never stored."""
        check_org_slug(org_slug)
        key_id = secrets.token_hex(8)
        role = ADMIN_ROLE if is_admin else ORG_ROLE
        api_key = f"ik_v2_{org_slug}_{key_id}_{role}_{self._key_signature(org_slug, key_id, role)}"
        record = ApiKeyRecord(
            key_id=key_id, org_slug=org_slug, key_hash=self._hash_api_key(api_key), is_admin=is_admin, label=label
        )
        self.adapters.store.add_api_key(record)
        return record, api_key

    def authenticate(self, api_key: str | None, org_slug: str, request_id: str, *, admin: bool = False) -> Caller:
        """The caller behind ``X-API-Key``, allowed on ``org_slug`` only (or on admin operations), confirmed now.

        A key of another org gets 403 before anything about ``org_slug`` is
        read, so the answer says nothing about what that org has. An
        unconfirmed signed key costs one store lookup here; ``authenticated``
        lets the request's first job carry it instead.
        """
        caller, check = self._identify(api_key, org_slug, request_id, admin=admin)
        if check is not None:
            self._confirm(check)
        return caller

    @contextmanager
    def authenticated(
        self, api_key: str | None, org_slug: str, request_id: str, *, admin: bool = False
    ) -> Iterator[Caller]:
        """``authenticate``, with the store's confirmation riding on the block's first store job.

        Nothing the block does reaches the caller unless the key is confirmed:
        the store reads and writes nothing for a refused key (it raises
        ``Unauthenticated``), and a block that ran no job (or failed before
        one) is followed by the lookup, whose refusal replaces its answer.
        Side effects outside the store that a use case makes before its first
        job (setup's KMS encrypt) happen only for a validly signed key.
        """
        from shared.store import pending_key_check  # the port; loading main.py does not need it

        caller, check = self._identify(api_key, org_slug, request_id, admin=admin)
        if check is None:
            yield caller
            return
        token = pending_key_check.set(check)
        try:
            yield caller
        finally:
            pending_key_check.reset(token)
            if check.confirmed is None:
                self._confirm(check)
            if not check.confirmed:
                raise Unauthenticated("Invalid API key")  # even if the block swallowed the store's refusal
            self._remember(ApiKeyRecord(check.key_id, check.org_slug, check.key_hash, check.is_admin))

    def _identify(
        self, api_key: str | None, org_slug: str, request_id: str, *, admin: bool
    ) -> tuple[Caller, KeyCheck | None]:
        """The caller the key names, and the store check still owed (None: confirmed or cached)."""
        if not api_key:
            raise Unauthenticated("Missing X-API-Key header")
        signed = SIGNED_API_KEY_SHAPE.fullmatch(api_key)
        if signed is None:
            record = self._unsigned_key_record(api_key)
            self._check_scope(record.org_slug, record.is_admin, org_slug, admin=admin)
            return Caller(record.key_id, record.org_slug, record.is_admin, request_id), None
        key_org, key_id, role, signature = signed.groups()
        # compare_digest: the time taken does not depend on how much of a forged signature matches.
        if not hmac.compare_digest(signature, self._key_signature(key_org, key_id, role)):
            raise Unauthenticated("Invalid API key")
        is_admin = role == ADMIN_ROLE
        self._check_scope(key_org, is_admin, org_slug, admin=admin)
        caller = Caller(key_id=key_id, org_slug=key_org, is_admin=is_admin, request_id=request_id)
        key_hash = self._hash_api_key(api_key)
        cached = self._cached_key(key_id)
        if cached is not None and hmac.compare_digest(cached.key_hash, key_hash):
            return caller, None
        from shared.store import KeyCheck

        return caller, KeyCheck(key_id=key_id, key_hash=key_hash, org_slug=key_org, is_admin=is_admin)

    @staticmethod
    def _check_scope(key_org: str, key_is_admin: bool, org_slug: str, *, admin: bool) -> None:
        if admin:
            if not key_is_admin:
                raise Forbidden("This operation needs an admin API key")
        elif key_org != org_slug:
            raise Forbidden("API key is not valid for this organization")

    def _confirm(self, check: KeyCheck) -> None:
        """One store lookup: is the signed key on file as it claims, and not revoked?"""
        record = self.adapters.store.find_api_key(check.key_id)
        check.confirmed = (
            record is not None
            and hmac.compare_digest(record.key_hash, check.key_hash)
            and record.revoked_at is None
            and record.org_slug == check.org_slug
            and record.is_admin == check.is_admin
        )
        if not check.confirmed:
            raise Unauthenticated("Invalid API key")
        assert record is not None
        self._remember(record)

    def _unsigned_key_record(self, api_key: str) -> ApiKeyRecord:
        """The record of a key issued before signatures (looked up unless cached), or Unauthenticated."""
        match = UNSIGNED_API_KEY_SHAPE.match(api_key)
        record = None
        if match:
            record = self._cached_key(match.group(1))
            if record is None:
                record = self.adapters.store.find_api_key(match.group(1))
                if record is not None:
                    self._remember(record)
        expected = record.key_hash if record else "0" * 64
        # compare_digest even on a miss, so timing does not tell ids apart.
        matches = hmac.compare_digest(self._hash_api_key(api_key), expected)
        if record is None or not matches or record.revoked_at is not None:
            raise Unauthenticated("Invalid API key")
        return record

    def _cached_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key's record if this instance read or confirmed it less than AUTH_CACHE_SECONDS ago."""
        with self._key_cache_lock:
            cached = self._key_cache.get(key_id)
        if cached is not None and time.monotonic() - cached.fetched_at < self.adapters.settings.auth_cache_seconds:
            return cached.record
        return None

    def _remember(self, record: ApiKeyRecord) -> None:
        if self.adapters.settings.auth_cache_seconds > 0:
            with self._key_cache_lock:
                self._key_cache[record.key_id] = _CachedKey(record, time.monotonic())

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

    def check_credentials(self, spec: ProviderSpec, credentials: Any) -> str:
        """The plaintext secret of ``credentials`` after setup's checks (400 saying what is wrong, never quoting it)."""
        return self._secret_from(spec, credentials)

    def _secret_from(self, spec: ProviderSpec, credentials: Any) -> str:
        """The plaintext secret of ``credentials`` after the provider's format check."""
        if not isinstance(credentials, dict):
            raise BadRequest("Field 'credentials' must be an object")
        if spec.credential_fields:
            return self._multi_field_secret(spec, credentials)
        field_name = spec.credential_field
        if spec.credential_type == "oauth":
            raise BadRequest(
                f"{spec.display_name} connects through OAuth, not a pasted token: "
                f"POST /api/v1/integrations/{{org}}/{spec.provider_id}/oauth/start"
            )
        unknown = set(credentials) - {field_name}
        if unknown:
            raise BadRequest(
                f"Field 'credentials' for {spec.display_name} takes only '{field_name}';"
                f" {_count(len(unknown), 'other field was', 'other fields were')} sent"
            )
        value = credentials.get(field_name)
        # Both GCP keys and AWS roles are the spec's service_account; the request field tells them apart.
        if field_name == "service_account_json" and isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"Field 'credentials.{field_name}' is required and must be a non-empty string")
        if len(value) > MAX_SECRET_CHARS:
            raise BadRequest(f"Field 'credentials.{field_name}' is longer than {MAX_SECRET_CHARS} characters")
        if field_name == "service_account_json":
            from shared.validators.gcp import parse_service_account

            settings = self.adapters.settings
            document = parse_service_account(
                value, spec.display_name, settings.allowed_token_hosts, settings.gcp_token_uri
            )
            return json.dumps(document, sort_keys=True)
        if field_name == ROLE_ARN_FIELD:
            from shared.validators.aws import parse_role_arn

            return parse_role_arn(value, spec.display_name).arn
        value = value.strip()
        if spec.key_pattern is not None and not spec.key_pattern.fullmatch(value):
            raise InvalidCredentialFormat(f"Invalid API key format for {spec.display_name}")
        return value

    def check_config(self, spec: ProviderSpec, config: Any) -> dict[str, str]:
        """``config`` checked against the provider's config fields (400 naming what is wrong)."""
        return self._config_from(spec, config)

    def _multi_field_secret(self, spec: ProviderSpec, credentials: dict[str, Any]) -> str:
        """A credential of several named fields (an Azure service principal), as canonical JSON."""
        from shared.validators import credential_parsers

        unknown = set(credentials) - set(spec.credential_fields)
        if unknown:
            allowed = ", ".join(spec.credential_fields)
            raise BadRequest(
                f"Field 'credentials' for {spec.display_name} takes {allowed};"
                f" {_count(len(unknown), 'other field was', 'other fields were')} sent"
            )
        too_long = [
            name for name, value in credentials.items() if isinstance(value, str) and len(value) > MAX_SECRET_CHARS
        ]
        if too_long:
            raise BadRequest(f"Field 'credentials.{too_long[0]}' is longer than {MAX_SECRET_CHARS} characters")
        return credential_parsers()[spec.validation["module"]](credentials, spec.display_name)

    def _config_from(self, spec: ProviderSpec, config: Any) -> dict[str, str]:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise BadRequest("Field 'config' must be an object")
        unknown = set(config) - set(spec.config_fields)
        if unknown:
            allowed = ", ".join(sorted(spec.config_fields)) or "none"
            raise BadRequest(
                f"Unknown config field(s) for {spec.display_name}"
                f" ({_count(len(unknown), 'field', 'fields')} it does not take); allowed: {allowed}"
            )
        problems = []
        for name, field_spec in spec.config_fields.items():
            value = config.get(name)
            if value is None:
                if field_spec.required:
                    problems.append(f"'{name}' is required ({field_spec.description})")
                continue
            if not isinstance(value, str) or not field_spec.pattern.fullmatch(value):
                shape = (
                    f"look like {field_spec.example}" if field_spec.example else f"match {field_spec.pattern.pattern}"
                )
                problems.append(f"'{name}' must {shape}")
        if problems:
            raise BadRequest(f"Invalid config for {spec.display_name}: " + "; ".join(problems))
        return {name: value for name, value in config.items() if value is not None}

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
            secret = self._secret_from(spec, credentials)
        except InvalidCredentialFormat as error:
            self.adapters.store.record_audit(self._audit(caller, spec, "setup", "rejected", detail=error.message))
            raise
        clean_config = self._config_from(spec, config)
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
                config=self._config_from(spec, change.config),
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
            secret = self._secret_from(spec, new_credentials)
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

    # --- webhooks + revalidation ---------------------------------------------------------

    def set_webhook(self, org_slug: str, url: Any, caller: Caller | None = None) -> tuple[Webhook, str]:
        """Point the org's alerts at ``url``; returns the signing secret, shown once.

        A new webhook id (so a new secret) every time: setting the webhook again
        is how an organization rotates its signing secret.
        """
        from shared.egress.webhooks import check_webhook_url, signing_secret

        check_org_slug(org_slug)
        if not isinstance(url, str):
            raise BadRequest("Field 'url' must be a string")
        webhook = Webhook(
            org_slug=org_slug,
            webhook_id=secrets.token_hex(8),
            url=check_webhook_url(url, self.adapters.settings.webhook_insecure_hosts),
        )
        self.adapters.store.set_webhook(webhook)
        if caller is not None:
            self.adapters.store.record_audit(self._webhook_audit(caller, "webhook_set"))
        return webhook, signing_secret(self.adapters.api_key_pepper, webhook)

    def get_webhook(self, caller: Caller) -> Webhook:
        webhook = self.adapters.store.get_webhooks([caller.org_slug]).get(caller.org_slug)
        if webhook is None:
            raise NotFound("No webhook is set for this organization")
        return webhook

    def delete_webhook(self, caller: Caller) -> None:
        if not self.adapters.store.delete_webhook(caller.org_slug):
            raise NotFound("No webhook is set for this organization")
        self.adapters.store.record_audit(self._webhook_audit(caller, "webhook_delete"))

    def list_alerts(self, caller: Caller, limit: int = 100) -> list[Alert]:
        return self.adapters.store.list_alerts(caller.org_slug, limit=limit)

    def _webhook_audit(self, caller: Caller, action: str) -> AuditEvent:
        return caller.audit(caller.org_slug, "webhook", action)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def no_integration(spec: ProviderSpec) -> NotFound:
    return NotFound(f"No integration for {spec.display_name} in this organization")
