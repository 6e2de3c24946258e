"""The SQLite store: writes and reads over many integrations at once: bulk import, re-encryption, revalidation pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.domain.models import Alert, AuditEvent, Integration, StoredCredential
from shared.domain.schemas import ALERTS_TABLE, AUDIT_TABLE, CREDENTIALS_TABLE, INTEGRATIONS_TABLE, column_names
from shared.store import rows
from shared.store.sqlite.base import SqliteBase, timestamp_text


class SqliteFleet(SqliteBase):
    """Many integrations at once: bulk import, re-encryption and revalidation pages, one job each."""

    def import_integrations(
        self,
        entries: Sequence[tuple[Integration, StoredCredential, AuditEvent]],
        audits: Sequence[AuditEvent] = (),
    ) -> set[str]:
        if not entries and not audits:
            return set()
        created: set[str] = set()
        with self._transaction() as connection:
            for integration, credential, audit in entries:
                # The unique (org_slug, provider) index decides, as for one setup.
                if not self._insert_if_absent(connection, INTEGRATIONS_TABLE, rows.integration_to_row(integration)):
                    continue
                self._insert(connection, CREDENTIALS_TABLE, rows.credential_to_row(credential))
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
                created.add(integration.integration_id)
            for refused in audits:
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(refused))
        return created

    def count_credentials_by_key_version(self) -> dict[str, int]:
        found = self._query(f"SELECT key_version, COUNT(*) AS n FROM {CREDENTIALS_TABLE} GROUP BY key_version")
        return {str(row["key_version"]): int(row["n"]) for row in found}

    def list_credentials_for_rewrap(
        self, *, primary_version: str, after_credential_id: str | None, limit: int
    ) -> list[StoredCredential]:
        found = self._query(
            f"SELECT * FROM {CREDENTIALS_TABLE} WHERE key_version IS NOT ? AND (? IS NULL OR credential_id > ?) "
            "ORDER BY credential_id LIMIT ?",
            (primary_version, after_credential_id, after_credential_id, limit),
        )
        return [rows.credential_from_row(self._from_sql(CREDENTIALS_TABLE, row)) for row in found]

    def save_rewrapped_credentials(
        self, rewrapped: Sequence[tuple[StoredCredential, StoredCredential, AuditEvent]]
    ) -> set[str]:
        if not rewrapped:
            return set()
        written: set[str] = set()
        with self._transaction() as connection:
            for old, new, audit in rewrapped:
                cursor = connection.execute(
                    f"UPDATE {CREDENTIALS_TABLE} SET encrypted_value = ?, key_version = ?, updated_at = ? "
                    "WHERE credential_id = ? AND key_version = ? AND updated_at = ?",
                    (
                        new.encrypted_value,
                        new.key_version,
                        timestamp_text(new.updated_at),
                        old.credential_id,
                        old.key_version,
                        timestamp_text(old.updated_at),
                    ),
                )
                if cursor.rowcount == 1:
                    self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
                    written.add(old.credential_id)
        return written

    def list_integrations_for_revalidation(
        self, *, checked_before: datetime, limit: int, after: tuple[datetime | None, str] | None = None
    ) -> list[tuple[Integration, StoredCredential]]:
        # Two index ranges on ix_integration_due, so a page costs its own rows wherever it starts:
        # the never-checked rows (last_checked_at IS NULL) by id past the cursor, then the checked
        # ones from the cursor's (last_checked_at, id) on. A ranged row-value comparison would not
        # use the index, and NULLs compare to nothing.
        in_never_checked = after is None or after[0] is None
        after_id = "" if after is None else after[1]
        after_checked = "" if after is None or after[0] is None else timestamp_text(after[0])
        pair = f"{self._integration_columns('i')}, {self._credential_columns('c')}"
        join = f"FROM {INTEGRATIONS_TABLE} i JOIN {CREDENTIALS_TABLE} c ON c.credential_id = i.credential_id"
        never_checked = (
            f"SELECT 0 AS phase, {pair} {join} WHERE ? AND i.last_checked_at IS NULL AND i.integration_id > ? "
            "AND i.status != 'disabled' ORDER BY i.integration_id LIMIT ?"
        )
        checked = (
            f"SELECT 1 AS phase, {pair} {join} WHERE i.last_checked_at >= ? AND i.last_checked_at < ? "
            "AND (i.last_checked_at > ? OR i.integration_id > ?) AND i.status != 'disabled' "
            "ORDER BY i.last_checked_at, i.integration_id LIMIT ?"
        )
        found = self._query(
            f"SELECT * FROM ({never_checked}) UNION ALL SELECT * FROM ({checked}) "
            "ORDER BY phase, i_last_checked_at, i_integration_id LIMIT ?",
            (
                int(in_never_checked),
                after_id,
                limit,
                after_checked,
                timestamp_text(checked_before),
                after_checked,
                "" if in_never_checked else after_id,
                limit,
                limit,
            ),
        )
        return [self._pair(row) for row in found]

    def save_revalidation_results(
        self, results: Sequence[tuple[Integration, AuditEvent, datetime]], alerts: Sequence[Alert] = ()
    ) -> tuple[int, list[str]]:
        if not results:
            return 0, []
        written_ids = set()
        inserted: list[str] = []
        with self._transaction() as connection:
            for integration, audit, expected_updated_at in results:
                if self._update_integration(
                    connection,
                    integration,
                    "updated_at = :expected",
                    {"expected": timestamp_text(expected_updated_at)},
                ):
                    self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
                    written_ids.add(integration.integration_id)
            for alert in alerts:
                if alert.integration_id not in written_ids:
                    continue
                values = self._to_sql(ALERTS_TABLE, rows.alert_to_row(alert))
                names = column_names(ALERTS_TABLE)
                cursor = connection.execute(
                    f"INSERT OR IGNORE INTO {ALERTS_TABLE} ({', '.join(names)}) "
                    f"VALUES ({', '.join(':' + name for name in names)})",
                    values,
                )
                if cursor.rowcount == 1:
                    inserted.append(alert.alert_id)
        return len(written_ids), inserted
