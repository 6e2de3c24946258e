"""The SQLite store: the audit log."""

from __future__ import annotations

from typing import Any

from shared.domain.models import AuditEvent
from shared.domain.schemas import AUDIT_TABLE
from shared.store import rows
from shared.store.sqlite.base import SqliteBase


class SqliteAudit(SqliteBase):
    """The audit log."""

    def record_audit(self, audit: AuditEvent) -> None:
        with self._transaction() as connection:
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))

    def append_audit(self, audit: AuditEvent) -> None:
        with self._transaction(counted_as="appends") as connection:
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))

    def list_audit(self, org_slug: str, provider: str | None = None, limit: int = 100) -> list[AuditEvent]:
        sql = f"SELECT * FROM {AUDIT_TABLE} WHERE org_slug = ?"
        parameters: list[Any] = [org_slug]
        if provider is not None:
            sql += " AND provider = ?"
            parameters.append(provider)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        parameters.append(limit)
        return [rows.audit_from_row(self._from_sql(AUDIT_TABLE, row)) for row in self._query(sql, parameters)]
