"""Records the service works with, independent of any store.

Field names match the table columns in ``configs/schemas/*.json`` so every
adapter maps them one to one.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a trailing Z, as the frontend's types expect."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def credential_fingerprint(secret: str) -> str:
    """First 8 hex chars of SHA-256 of the secret: identifies, never reveals."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


class Status(StrEnum):
    PENDING = "pending"
    VALIDATING = "validating"
    ACTIVE = "active"
    ERROR = "error"
    DISABLED = "disabled"
    EXPIRED = "expired"


@dataclass
class Integration:
    """A row of org_integrations: one provider connected by one organization, and its lifecycle."""

    integration_id: str
    org_slug: str
    provider: str
    status: str
    credential_id: str
    config: dict[str, Any] = field(default_factory=dict)
    validated_at: datetime | None = None  # the last *successful* validation only
    error_message: str | None = None
    details: dict[str, Any] | None = None  # the last ValidationDetails
    expires_at: datetime | None = None
    consecutive_failures: int = 0
    last_checked_at: datetime | None = None
    last_success_at: datetime | None = None
    expiry_alert_window: int | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    created_by: str | None = None

    def to_info(self) -> dict[str, Any]:
        """The frontend's ``IntegrationInfo`` shape, plus this service's lifecycle fields."""
        info: dict[str, Any] = {
            "integration_id": self.integration_id,
            "org_slug": self.org_slug,
            "provider": self.provider,
            "status": self.status,
            "config": self.config,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "consecutive_failures": self.consecutive_failures,
        }
        optional = {
            "validated_at": iso(self.validated_at),
            "error_message": self.error_message,
            "expires_at": iso(self.expires_at),
            "last_checked_at": iso(self.last_checked_at),
            "last_success_at": iso(self.last_success_at),
            "created_by": self.created_by,
        }
        info.update({key: value for key, value in optional.items() if value is not None})
        if self.details is not None:
            info["details"] = self.details
        return info


class SettingsChange(NamedTuple):  # not a frozen dataclass: see shared.domain.caller.Caller
    """What a user's PUT asks to change; None means "leave as is"."""

    config: dict[str, Any] | None = None
    enabled: bool | None = None
    expires_at: datetime | None = None
    clear_expires_at: bool = False


@dataclass
class StoredCredential:
    """Only ciphertext and metadata; the plaintext never reaches a store."""

    credential_id: str
    org_slug: str
    provider: str
    credential_type: str  # api_key | service_account | oauth
    encrypted_value: bytes
    key_version: str
    fingerprint: str
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)  # OAuth: the version a refresh is conditioned on
    created_by: str | None = None
    refresh_lease_id: str | None = None
    refresh_lease_expires_at: datetime | None = None
    refresh_error: str | None = None


@dataclass
class OAuthState:
    """One started authorization-code flow: single use, bound to org and provider, short-lived.

    After the callback it also holds the exchanged tokens (encrypted, bound to
    the flow) and the hash of the one-time completion code, until the
    organization completes the flow with its own key.
    """

    state_hash: str
    org_slug: str
    provider: str
    encrypted_verifier: bytes | None
    key_version: str | None
    redirect_uri: str
    expires_at: datetime
    config: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utc_now)
    used_at: datetime | None = None
    created_by: str | None = None
    actor_key_id: str | None = None
    completion_code_hash: str | None = None
    encrypted_tokens: bytes | None = None
    tokens_key_version: str | None = None
    completion_expires_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass
class AuditEvent:
    """A row of the audit log: one credential operation, who asked and how it ended (never a secret)."""

    org_slug: str
    provider: str
    action: str  # setup, validate, update, disable, enable, rotate, delete, revalidate, credential_accessed
    outcome: str  # success, failure, rejected
    actor_key_id: str
    request_id: str
    credential_fingerprint: str | None = None
    detail: str | None = None
    audit_id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utc_now)
    actor: str | None = None  # X-User-Id when the frontend sent one, else the key id
    pipeline: str | None = None  # credential_accessed: the pipeline the credential was handed to


@dataclass
class ApiKeyRecord:
    """An org API key as stored: its id and peppered hash, never the key itself."""

    key_id: str
    org_slug: str
    key_hash: str
    is_admin: bool = False
    label: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    revoked_at: datetime | None = None


@dataclass
class Alert:
    """A notice to the organization: expiry ahead, an integration broke or recovered."""

    dedupe_key: str
    org_slug: str
    provider: str
    integration_id: str
    kind: str  # expiring | error | expired | recovered
    message: str
    alert_id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utc_now)
    delivery_status: str = "pending"  # pending | delivered | failed | no_webhook
    delivery_attempts: int = 0
    delivered_at: datetime | None = None

    def to_info(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "provider": self.provider,
            "integration_id": self.integration_id,
            "message": self.message,
            "created_at": iso(self.created_at),
            "delivery_status": self.delivery_status,
            "delivery_attempts": self.delivery_attempts,
            "delivered_at": iso(self.delivered_at),
        }


@dataclass
class SubscriptionToggle:
    """An organization's "we pay for this SaaS tool" switch (saas_subscription_providers_meta)."""

    org_slug: str
    provider: str
    enabled: bool
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    created_by: str | None = None  # X-User-Id, else the API key id
    updated_by: str | None = None
    updated_by_key_id: str | None = None


@dataclass
class Webhook:
    """Where an organization's alerts are delivered."""

    org_slug: str
    webhook_id: str
    url: str
    created_at: datetime = field(default_factory=utc_now)
