"""The BigQuery store: writes and reads over many integrations at once, one job each: bulk import,
re-encryption onto the primary key version, revalidation pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.domain.models import Alert, AuditEvent, Integration, StoredCredential
from shared.domain.schemas import ALERTS_TABLE, AUDIT_TABLE, CREDENTIALS_TABLE, INTEGRATIONS_TABLE, column_names
from shared.store import rows
from shared.store.bigquery.base import MUTABLE_INTEGRATION_COLUMNS, BigQueryBase
from shared.store.bigquery.jobs import scalar

# The revalidation pages' keyset stands in this instant for "never checked" (before any real check).
NEVER_CHECKED_AT = datetime(1970, 1, 1, tzinfo=UTC)

NEVER_CHECKED = "TIMESTAMP '1970-01-01 00:00:00+00'"


class BigQueryFleet(BigQueryBase):
    """Many integrations at once: bulk import, re-encryption and revalidation pages, one job each."""

    def import_integrations(
        self,
        entries: Sequence[tuple[Integration, StoredCredential, AuditEvent]],
        audits: Sequence[AuditEvent] = (),
    ) -> set[str]:
        """One job: a MERGE inserts the integrations no org+provider holds yet, then their credentials and audits.

        The candidates are filtered and merged inside one transaction; a
        concurrent setup of the same org+provider makes one of the two
        transactions abort (MERGE is mutating DML) and ``_run`` retries this
        one, which then leaves that entry out.
        """
        if not entries and not audits:
            return set()
        suffix = uuid.uuid4().hex[:12]
        fresh, outcome = f"fresh_{suffix}", f"import_outcome_{suffix}"
        parameters: list[Any] = []
        refused_sql = ""
        if audits:
            parameters.append(
                self._struct_array(
                    "refused_rows",
                    self._types[AUDIT_TABLE],
                    [rows.audit_to_row(audit) for audit in audits],
                    column_names(AUDIT_TABLE),
                )
            )
            refused_sql = (
                f"INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)}) "
                f"SELECT {self._converted(AUDIT_TABLE, 'refused')} FROM UNNEST(@refused_rows) AS refused;"
            )
        if not entries:
            self._run(refused_sql, parameters)
            return set()
        parameters += [
            self._struct_array(
                "integration_rows",
                self._types[INTEGRATIONS_TABLE],
                [rows.integration_to_row(integration) for integration, _, _ in entries],
                column_names(INTEGRATIONS_TABLE),
            ),
            self._struct_array(
                "credential_rows",
                self._types[CREDENTIALS_TABLE],
                [rows.credential_to_row(credential) for _, credential, _ in entries],
                column_names(CREDENTIALS_TABLE),
            ),
            self._struct_array(
                "audit_rows",
                self._types[AUDIT_TABLE],
                [rows.audit_to_row(audit) for _, _, audit in entries],
                column_names(AUDIT_TABLE),
            ),
        ]
        integrations = self._table(INTEGRATIONS_TABLE)
        sql = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {fresh} AS
SELECT candidate.* FROM UNNEST(@integration_rows) AS candidate
WHERE NOT EXISTS (
  SELECT 1 FROM {integrations} AS current
  WHERE current.org_slug = candidate.org_slug AND current.provider = candidate.provider
);
MERGE {integrations} AS existing
USING {fresh} AS wanted
ON existing.org_slug = wanted.org_slug AND existing.provider = wanted.provider
WHEN NOT MATCHED THEN
  INSERT ({self._columns(INTEGRATIONS_TABLE)}) VALUES ({self._converted(INTEGRATIONS_TABLE, "wanted")});
INSERT INTO {self._table(CREDENTIALS_TABLE)} ({self._columns(CREDENTIALS_TABLE)})
SELECT {self._converted(CREDENTIALS_TABLE, "credential")} FROM UNNEST(@credential_rows) AS credential
JOIN {fresh} AS fresh ON fresh.credential_id = credential.credential_id;
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {self._converted(AUDIT_TABLE, "audit")} FROM UNNEST(@audit_rows) AS audit
JOIN {fresh} AS fresh ON fresh.org_slug = audit.org_slug AND fresh.provider = audit.provider;
{refused_sql}
COMMIT TRANSACTION;
CREATE TEMP TABLE {outcome} AS SELECT integration_id FROM {fresh};
DROP TABLE {fresh};
SELECT integration_id FROM {outcome};
"""
        return {row["integration_id"] for row in self._run(sql, parameters)}

    def count_credentials_by_key_version(self) -> dict[str, int]:
        found = self._run(
            f"SELECT key_version, COUNT(*) AS credentials FROM {self._table(CREDENTIALS_TABLE)} GROUP BY key_version"
        )
        return {str(row["key_version"]): int(row["credentials"]) for row in found}

    def list_credentials_for_rewrap(
        self, *, primary_version: str, after_credential_id: str | None, limit: int
    ) -> list[StoredCredential]:
        found = self._run(
            f"SELECT * FROM {self._table(CREDENTIALS_TABLE)} "
            "WHERE key_version IS DISTINCT FROM @primary_version "
            "AND (@after IS NULL OR credential_id > @after) ORDER BY credential_id LIMIT @limit",
            [
                self._scalar("primary_version", primary_version),
                scalar("after", "STRING", after_credential_id),
                self._scalar("limit", limit),
            ],
            order_by="credential_id",
        )
        return [self._credential(row) for row in found]

    def save_rewrapped_credentials(
        self, rewrapped: Sequence[tuple[StoredCredential, StoredCredential, AuditEvent]]
    ) -> set[str]:
        """One job: update the rows still as they were read, audit exactly those."""
        if not rewrapped:
            return set()
        suffix = uuid.uuid4().hex[:12]
        done, outcome = f"rewrapped_{suffix}", f"rewrap_outcome_{suffix}"
        kinds = dict(self._types[CREDENTIALS_TABLE], expected_key_version="STRING", expected_updated_at="TIMESTAMP")
        candidates = [
            {
                **rows.credential_to_row(new),
                "expected_key_version": old.key_version,
                "expected_updated_at": old.updated_at,
            }
            for old, new, _ in rewrapped
        ]
        audit_kinds = dict(self._types[AUDIT_TABLE], credential_id="STRING")
        audit_rows = [{**rows.audit_to_row(audit), "credential_id": old.credential_id} for old, _, audit in rewrapped]
        parameters = [
            self._struct_array(
                "candidates",
                kinds,
                candidates,
                (
                    "credential_id",
                    "encrypted_value",
                    "key_version",
                    "updated_at",
                    "expected_key_version",
                    "expected_updated_at",
                ),
            ),
            self._struct_array("audit_rows", audit_kinds, audit_rows, (*column_names(AUDIT_TABLE), "credential_id")),
        ]
        credentials = self._table(CREDENTIALS_TABLE)
        sql = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {done} AS
SELECT candidate.* FROM UNNEST(@candidates) AS candidate
WHERE EXISTS (
  SELECT 1 FROM {credentials} AS current
  WHERE current.credential_id = candidate.credential_id
    AND current.key_version = candidate.expected_key_version
    AND current.updated_at = candidate.expected_updated_at
);
UPDATE {credentials} AS target
SET encrypted_value = FROM_BASE64(done.encrypted_value), key_version = done.key_version, updated_at = done.updated_at
FROM {done} AS done
WHERE target.credential_id = done.credential_id AND target.key_version = done.expected_key_version
  AND target.updated_at = done.expected_updated_at;
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {self._converted(AUDIT_TABLE, "audit")} FROM UNNEST(@audit_rows) AS audit
JOIN {done} AS done ON done.credential_id = audit.credential_id;
COMMIT TRANSACTION;
CREATE TEMP TABLE {outcome} AS SELECT credential_id FROM {done};
DROP TABLE {done};
SELECT credential_id FROM {outcome};
"""
        return {row["credential_id"] for row in self._run(sql, parameters)}

    def list_integrations_for_revalidation(
        self, *, checked_before: datetime, limit: int, after: tuple[datetime | None, str] | None = None
    ) -> list[tuple[Integration, StoredCredential]]:
        where = "i.status != 'disabled' AND (i.last_checked_at IS NULL OR i.last_checked_at < @checked_before)"
        parameters = [self._scalar("checked_before", checked_before), self._scalar("limit", limit)]
        if after is not None:
            # Past the previous page's last (last_checked_at, integration_id); never checked sorts first.
            checked = f"IFNULL(i.last_checked_at, {NEVER_CHECKED})"
            where += (
                f" AND ({checked} > @after_checked OR ({checked} = @after_checked AND i.integration_id > @after_id))"
            )
            parameters += [
                scalar("after_checked", "TIMESTAMP", after[0] or NEVER_CHECKED_AT),
                self._scalar("after_id", after[1]),
            ]
        found = self._run(
            # ASC puts NULLs (never checked) first, as IFNULL above does.
            self._pairs_sql(where, "ORDER BY i.last_checked_at, i.integration_id LIMIT @limit"),
            parameters,
            order_by="integration.last_checked_at, integration.integration_id",
        )
        return [self._pair(row) for row in found]

    def save_revalidation_results(
        self, results: Sequence[tuple[Integration, AuditEvent, datetime]], alerts: Sequence[Alert] = ()
    ) -> tuple[int, list[str]]:
        """One job for the whole batch, passed as ARRAY<STRUCT> parameters.

        A row is written only where ``updated_at`` still equals what the run
        read, so a user's change during the run is never overwritten; audit rows
        and alerts are inserted for exactly the rows written, and an alert whose
        ``dedupe_key`` exists already is not inserted twice.
        """
        if not results:
            return 0, []
        integration_columns = ("integration_id", *MUTABLE_INTEGRATION_COLUMNS)
        batch_rows = []
        for integration, _, expected in results:
            row = rows.integration_to_row(integration)
            row["expected_updated_at"] = expected
            batch_rows.append(row)
        batch_kinds = dict(self._types[INTEGRATIONS_TABLE], expected_updated_at="TIMESTAMP")
        audit_rows = [rows.audit_to_row(audit) for _, audit, _ in results]
        parameters = [
            self._struct_array(
                "batch_rows",
                batch_kinds,
                batch_rows,
                (*integration_columns, "org_slug", "provider", "expected_updated_at"),
            ),
            self._struct_array("audit_rows", self._types[AUDIT_TABLE], audit_rows, column_names(AUDIT_TABLE)),
        ]
        # Temp tables are script-scoped on BigQuery; the emulator keeps them in
        # the dataset, so they get unique names and are dropped explicitly.
        suffix = uuid.uuid4().hex[:12]
        batch, new_alerts, outcome = f"batch_{suffix}", f"new_alerts_{suffix}", f"outcome_{suffix}"
        alert_sql = alert_outcome = drop_alerts = ""
        if alerts:
            parameters.append(
                self._struct_array(
                    "alert_rows",
                    self._types[ALERTS_TABLE],
                    [rows.alert_to_row(alert) for alert in alerts],
                    column_names(ALERTS_TABLE),
                )
            )
            alert_sql = f"""
CREATE TEMP TABLE {new_alerts} AS
SELECT alert.* FROM UNNEST(@alert_rows) AS alert
JOIN {batch} AS batch ON batch.integration_id = alert.integration_id
WHERE NOT EXISTS (SELECT 1 FROM {self._table(ALERTS_TABLE)} AS sent WHERE sent.dedupe_key = alert.dedupe_key);
INSERT INTO {self._table(ALERTS_TABLE)} ({self._columns(ALERTS_TABLE)})
SELECT {self._columns(ALERTS_TABLE)} FROM {new_alerts};
"""
            alert_outcome = f"UNION ALL SELECT 'alert' AS kind, alert_id AS value FROM {new_alerts}"
            drop_alerts = f"DROP TABLE {new_alerts};"
        kinds = self._types[INTEGRATIONS_TABLE]
        assignments = ", ".join(
            f"{name} = {self._value(kinds[name], f'batch.{name}')}" for name in MUTABLE_INTEGRATION_COLUMNS
        )
        sql = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {batch} AS
SELECT candidate.* FROM UNNEST(@batch_rows) AS candidate
WHERE EXISTS (
  SELECT 1 FROM {self._table(INTEGRATIONS_TABLE)} AS current
  WHERE current.integration_id = candidate.integration_id AND current.updated_at = candidate.expected_updated_at
);
UPDATE {self._table(INTEGRATIONS_TABLE)} AS target SET {assignments}
FROM {batch} AS batch
WHERE target.integration_id = batch.integration_id AND target.updated_at = batch.expected_updated_at;
UPDATE {self._table(CREDENTIALS_TABLE)} AS credential SET expires_at = batch.expires_at, updated_at = batch.updated_at
FROM {batch} AS batch
WHERE credential.credential_id = batch.credential_id AND credential.expires_at IS DISTINCT FROM batch.expires_at
  AND credential.credential_type != 'oauth';
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {", ".join("audit." + c for c in column_names(AUDIT_TABLE))} FROM UNNEST(@audit_rows) AS audit
JOIN {batch} AS batch ON batch.org_slug = audit.org_slug AND batch.provider = audit.provider;
{alert_sql}
COMMIT TRANSACTION;
CREATE TEMP TABLE {outcome} AS
SELECT 'written' AS kind, CAST(COUNT(*) AS STRING) AS value FROM {batch} {alert_outcome};
DROP TABLE {batch};
{drop_alerts}
SELECT kind, value FROM {outcome};
"""
        found = self._run(sql, parameters)
        written = next(int(row["value"]) for row in found if row["kind"] == "written")
        return written, [row["value"] for row in found if row["kind"] == "alert"]
