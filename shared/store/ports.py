"""The store port, one protocol per aggregate; ``shared.store.IntegrationStore`` is their sum.

Each adapter (``shared.store.sqlite``, ``shared.store.bigquery``) implements
every one, in a module of the same aggregate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from shared.domain.models import (
    Alert,
    ApiKeyRecord,
    AuditEvent,
    Integration,
    OAuthState,
    SettingsChange,
    StoredCredential,
    SubscriptionToggle,
    Webhook,
)


class IntegrationsStore(Protocol):
    """Integrations and their credentials, one at a time."""

    def create_integration(self, integration: Integration, credential: StoredCredential, audit: AuditEvent) -> bool:
        """Insert all three; False (and nothing written) if the org+provider exists."""
        ...

    def get_integration(self, org_slug: str, provider: str) -> Integration | None: ...

    def get_integration_with_credential(
        self, org_slug: str, provider: str
    ) -> tuple[Integration, StoredCredential] | None: ...

    def list_integrations(self, org_slug: str) -> list[Integration]: ...

    def save_integration(self, integration: Integration, audit: AuditEvent, *, expected_updated_at: datetime) -> bool:
        """Overwrite the mutable fields if the row still has ``expected_updated_at``."""
        ...

    def update_settings(
        self, org_slug: str, provider: str, change: SettingsChange, audit: AuditEvent
    ) -> Integration | None:
        """Apply a user's config/enabled/expiry change in one round trip.

        The new status follows ``shared.domain.lifecycle.status_after_settings_change``;
        returns the updated integration, or None if there is none.
        """
        ...

    def replace_credential(
        self,
        integration: Integration,
        credential: StoredCredential,
        audit: AuditEvent,
        *,
        expected_credential_id: str,
        expected_updated_at: datetime,
    ) -> bool:
        """Swap in a new credential (rotation) if the row is as the rotation read it.

        Both must still hold: the old credential is current, and ``updated_at``
        is unchanged (a settings change or a validation while the new key was
        being checked must not be overwritten with what rotate read before it).
        """
        ...

    def delete_integration(self, org_slug: str, provider: str, audit: AuditEvent) -> bool:
        """Delete integration and credential; the audit row gets the deleted credential's fingerprint."""
        ...


class FleetStore(Protocol):
    """Many integrations at once: bulk import, re-encryption onto the primary key version, revalidation pages."""

    def import_integrations(
        self,
        entries: Sequence[tuple[Integration, StoredCredential, AuditEvent]],
        audits: Sequence[AuditEvent] = (),
    ) -> set[str]:
        """Create every entry whose org+provider has no integration yet (one job).

        Each entry is written with its credential and audit row or not at all;
        an entry that finds an integration for its org+provider writes nothing.
        ``audits`` (items refused before reaching the store) are written in the
        same job. Returns the integration ids created.
        """
        ...

    def count_credentials_by_key_version(self) -> dict[str, int]:
        """How many stored credentials name each key version (one job)."""
        ...

    def list_credentials_for_rewrap(
        self, *, primary_version: str, after_credential_id: str | None, limit: int
    ) -> list[StoredCredential]:
        """Credentials not on ``primary_version``, by credential_id after the given one (one job)."""
        ...

    def save_rewrapped_credentials(
        self, rewrapped: Sequence[tuple[StoredCredential, StoredCredential, AuditEvent]]
    ) -> set[str]:
        """Write many (as read, re-encrypted, audit) at once (one job).

        The new ``encrypted_value``/``key_version``/``updated_at`` replace a
        row only if it still has the ``key_version`` and ``updated_at`` it was
        read with: a credential rotated, deleted or re-encrypted by someone
        else meanwhile is skipped, with its audit row. Returns the
        credential ids written.
        """
        ...

    def list_integrations_for_revalidation(
        self, *, checked_before: datetime, limit: int, after: tuple[datetime | None, str] | None = None
    ) -> list[tuple[Integration, StoredCredential]]:
        """A page of non-disabled integrations not checked since ``checked_before`` (one job).

        In (``last_checked_at``, ``integration_id``) order, never checked first;
        ``after`` is that key of the previous page's last row (keyset paging:
        a row written meanwhile, or skipped and still due, is not read twice).
        """
        ...

    def save_revalidation_results(
        self, results: Sequence[tuple[Integration, AuditEvent, datetime]], alerts: Sequence[Alert] = ()
    ) -> tuple[int, list[str]]:
        """Write many (integration, audit, expected_updated_at) and their alerts at once (one job).

        Rows changed since they were read are skipped with their audit and
        alerts; an alert whose ``dedupe_key`` exists is not inserted again.
        Returns (rows written, ids of the alerts inserted).
        """
        ...


class AuditStore(Protocol):
    """The audit log: a row for every credential operation."""

    def record_audit(self, audit: AuditEvent) -> None:
        """Audit an operation that changed nothing (rejected or failed)."""
        ...

    def append_audit(self, audit: AuditEvent) -> None:
        """Append one audit row on its own, outside any transaction (``counters["appends"]``, not a job).

        For high-volume reads that change nothing (a pipeline fetching a
        credential): BigQuery streams the row in (``tabledata.insertAll``)
        instead of running a DML statement, which its per-table DML queue
        would cap at a few a second.
        """
        ...

    def list_audit(self, org_slug: str, provider: str | None = None, limit: int = 100) -> list[AuditEvent]: ...


class ApiKeyStore(Protocol):
    """Org API keys (their hashes; the keys themselves are never stored)."""

    def add_api_key(self, record: ApiKeyRecord) -> None: ...

    def find_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key by its public id; the caller compares hashes in constant time."""
        ...

    def list_api_keys(self, org_slug: str | None = None) -> list[ApiKeyRecord]: ...

    def revoke_api_key(self, key_id: str) -> bool: ...


class AlertStore(Protocol):
    """Alerts' deliveries, and the organizations' webhooks they go to."""

    def record_alert_deliveries(self, alerts: Sequence[Alert]) -> None:
        """Store delivery_status / attempts / delivered_at of many alerts (one job)."""
        ...

    def list_alerts(self, org_slug: str, limit: int = 100) -> list[Alert]: ...

    def set_webhook(self, webhook: Webhook) -> None:
        """Create or replace the organization's webhook."""
        ...

    def delete_webhook(self, org_slug: str) -> bool: ...

    def get_webhooks(self, org_slugs: Sequence[str]) -> dict[str, Webhook]:
        """The webhooks of these organizations (one job)."""
        ...


class OAuthStore(Protocol):
    """OAuth flows (``oauth_states``) and the refresh lease on an OAuth credential."""

    def create_oauth_state(self, state: OAuthState) -> None:
        """Store a started flow (one job); also drops flows whose state and completion expired over a day ago."""
        ...

    def consume_oauth_state(self, state_hash: str, now: datetime) -> tuple[str, OAuthState | None]:
        """Mark the state used if it is unused and unexpired, atomically (one job).

        Returns ("consumed", state) to exactly one caller; otherwise ("used" |
        "expired", state) or ("unknown", None), and changes nothing.
        """
        ...

    def hold_oauth_tokens(
        self,
        state_hash: str,
        *,
        encrypted_tokens: bytes,
        tokens_key_version: str,
        completion_code_hash: str,
        completion_expires_at: datetime,
    ) -> bool:
        """Keep a consumed flow's tokens (encrypted) until its org completes it (one job).

        Only a consumed flow that holds nothing yet takes them: True once per flow.
        """
        ...

    def complete_oauth_flow(
        self, completion_code_hash: str, org_slug: str, provider: str, now: datetime
    ) -> tuple[str, OAuthState | None]:
        """Mark the flow completed if the code is the org's and provider's, unused and unexpired (one job).

        Returns ("completed", flow with its held tokens) to exactly one caller
        and clears the tokens from the row; otherwise ("used" | "expired",
        flow) and changes nothing. A code of another org or provider is
        ("unknown", None), exactly like a code that does not exist.
        """
        ...

    def claim_credential_refresh(
        self,
        credential_id: str,
        *,
        expected_updated_at: datetime,
        lease_id: str,
        lease_expires_at: datetime,
        version: datetime,
    ) -> bool:
        """Take the refresh lease if the credential still has ``expected_updated_at`` (one job).

        A conditional write on the credential's version: of any number of
        callers that read the same version, exactly one gets True. The claim
        moves ``updated_at`` to ``version``, so later claims on the old version fail.
        """
        ...

    def finish_credential_refresh(self, credential: StoredCredential, *, lease_id: str) -> bool:
        """Write the refreshed (or failed) credential and clear the lease, if ``lease_id`` still holds it."""
        ...


class SubscriptionStore(Protocol):
    """SaaS subscription toggles."""

    def list_subscription_toggles(self, org_slug: str) -> tuple[list[SubscriptionToggle], dict[str, str]]:
        """The org's toggles, and the status of each of its integrations by provider (one job)."""
        ...

    def set_subscription_toggle(
        self, toggle: SubscriptionToggle, audit: AuditEvent
    ) -> tuple[SubscriptionToggle, bool, str | None]:
        """Create or change the org's toggle for ``toggle.provider`` with its audit row (one job).

        Setting the value it has writes only the audit row (detail ``unchanged``)
        and keeps created/updated fields. Returns the stored toggle, whether it
        changed, and the status of the org's integration for that provider.
        """
        ...


class ExternalIdStore(Protocol):
    """The external ID of each organization's cross-account role, generated once and kept."""

    def external_id(self, org_slug: str, provider: str, candidate: str) -> str:
        """The org's external ID for ``provider``; stores ``candidate`` first if there is none (one job).

        Generated once and kept: concurrent first calls agree on one value.
        """
        ...

    def find_external_id(self, org_slug: str, provider: str) -> str | None:
        """The org's external ID for ``provider`` if it has one; writes nothing (one job)."""
        ...
