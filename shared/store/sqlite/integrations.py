"""The SQLite store: integrations and their credentials, one row each: create, read, change, replace, delete."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from shared.domain.lifecycle import status_after_settings_change
from shared.domain.models import AuditEvent, Integration, SettingsChange, StoredCredential
from shared.domain.schemas import AUDIT_TABLE, CREDENTIALS_TABLE, INTEGRATIONS_TABLE
from shared.store import rows
from shared.store.sqlite.base import SqliteBase, timestamp_text


class _DuplicateIntegration(Exception):
    """An integration for this org+provider exists (rolled back, reported as False)."""


class SqliteIntegrations(SqliteBase):
    """Integrations and their credentials, each operation one transaction (or one read)."""

    def create_integration(self, integration: Integration, credential: StoredCredential, audit: AuditEvent) -> bool:
        try:
            with self._transaction() as connection:
                try:
                    self._insert(connection, INTEGRATIONS_TABLE, rows.integration_to_row(integration))
                except sqlite3.IntegrityError as exc:
                    # Only the unique (org_slug, provider) index can refuse this insert.
                    raise _DuplicateIntegration() from exc
                self._insert(connection, CREDENTIALS_TABLE, rows.credential_to_row(credential))
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        except _DuplicateIntegration:
            return False
        return True

    def get_integration(self, org_slug: str, provider: str) -> Integration | None:
        found = self._query(
            f"SELECT * FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
        )
        return rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, found[0])) if found else None

    def get_integration_with_credential(
        self, org_slug: str, provider: str
    ) -> tuple[Integration, StoredCredential] | None:
        found = self._query(
            f"SELECT {self._integration_columns('i')}, {self._credential_columns('c')} "
            f"FROM {INTEGRATIONS_TABLE} i JOIN {CREDENTIALS_TABLE} c ON c.credential_id = i.credential_id "
            "WHERE i.org_slug = ? AND i.provider = ?",
            (org_slug, provider),
        )
        return self._pair(found[0]) if found else None

    def list_integrations(self, org_slug: str) -> list[Integration]:
        found = self._query(f"SELECT * FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? ORDER BY provider", (org_slug,))
        return [rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, row)) for row in found]

    def save_integration(self, integration: Integration, audit: AuditEvent, *, expected_updated_at: datetime) -> bool:
        with self._transaction() as connection:
            saved = self._update_integration(
                connection, integration, "updated_at = :expected", {"expected": timestamp_text(expected_updated_at)}
            )
            if saved:
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return saved

    def update_settings(
        self, org_slug: str, provider: str, change: SettingsChange, audit: AuditEvent
    ) -> Integration | None:
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            ).fetchall()
            if not found:
                return None
            integration = rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, found[0]))
            previous_updated_at = integration.updated_at
            config_changed = change.config is not None and change.config != integration.config
            integration.status = status_after_settings_change(
                integration.status, config_changed=config_changed, enabled=change.enabled
            )
            if change.config is not None:
                integration.config = change.config
            if change.clear_expires_at:
                integration.expires_at = None
            elif change.expires_at is not None:
                integration.expires_at = change.expires_at
            if change.clear_expires_at or change.expires_at is not None:
                integration.expiry_alert_window = None  # a new expiry gets its warnings anew
            integration.updated_at = audit.created_at
            self._update_integration(
                connection, integration, "updated_at = :expected", {"expected": timestamp_text(previous_updated_at)}
            )
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return integration

    def replace_credential(
        self,
        integration: Integration,
        credential: StoredCredential,
        audit: AuditEvent,
        *,
        expected_credential_id: str,
        expected_updated_at: datetime,
    ) -> bool:
        with self._transaction() as connection:
            saved = self._update_integration(
                connection,
                integration,
                "credential_id = :expected AND updated_at = :expected_updated_at",
                {"expected": expected_credential_id, "expected_updated_at": timestamp_text(expected_updated_at)},
            )
            if saved:
                connection.execute(
                    f"DELETE FROM {CREDENTIALS_TABLE} WHERE credential_id = ?", (expected_credential_id,)
                )
                self._insert(connection, CREDENTIALS_TABLE, rows.credential_to_row(credential))
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return saved

    def delete_integration(self, org_slug: str, provider: str, audit: AuditEvent) -> bool:
        with self._transaction() as connection:
            fingerprints = connection.execute(
                f"SELECT fingerprint FROM {CREDENTIALS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            ).fetchall()
            if fingerprints:
                audit.credential_fingerprint = fingerprints[0]["fingerprint"]
            connection.execute(
                f"DELETE FROM {CREDENTIALS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            )
            deleted = connection.execute(
                f"DELETE FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            ).rowcount
            if deleted:
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return bool(deleted)
