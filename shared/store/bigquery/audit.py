"""The BigQuery store: the audit log."""

from __future__ import annotations

from shared.domain.models import AuditEvent
from shared.domain.schemas import AUDIT_TABLE
from shared.store import rows
from shared.store.bigquery.base import BigQueryBase
from shared.store.bigquery.jobs import scalar
from shared.store.key_check import key_check_to_carry


class BigQueryAudit(BigQueryBase):
    """The audit log."""

    def record_audit(self, audit: AuditEvent) -> None:
        self._run(
            self._insert_sql("a_", AUDIT_TABLE), self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit))
        )

    def append_audit(self, audit: AuditEvent) -> None:
        # Streamed, not DML: no job, no slot in the table's DML queue; the audit id lets
        # BigQuery drop a resent copy of the row.
        if key_check_to_carry() is not None:
            # A streaming insert cannot carry a pending API-key check: answer it first (a guarded read).
            self._run("SELECT 1 AS key_confirmed")
        row = rows.audit_to_row(audit)
        self._retrying(
            lambda end: self.jobs.insert_rows(self.dataset, AUDIT_TABLE, [row], insert_ids=[audit.audit_id], end=end),
            counted_as="appends",
        )

    def list_audit(self, org_slug: str, provider: str | None = None, limit: int = 100) -> list[AuditEvent]:
        found = self._run(
            f"SELECT * FROM {self._table(AUDIT_TABLE)} WHERE org_slug = @org_slug "
            "AND (@provider IS NULL OR provider = @provider) ORDER BY created_at DESC LIMIT @limit",
            [
                self._scalar("org_slug", org_slug),
                scalar("provider", "STRING", provider),
                self._scalar("limit", limit),
            ],
            order_by="created_at DESC",
        )
        return [rows.audit_from_row(row) for row in found]
