"""The SQLite store: saaS subscription toggles."""

from __future__ import annotations

from shared.domain.models import AuditEvent, SubscriptionToggle
from shared.domain.schemas import AUDIT_TABLE, INTEGRATIONS_TABLE, SAAS_TOGGLES_TABLE, column_names
from shared.store import rows
from shared.store.sqlite.base import SqliteBase


class SqliteSubscriptions(SqliteBase):
    """SaaS subscription toggles."""

    def list_subscription_toggles(self, org_slug: str) -> tuple[list[SubscriptionToggle], dict[str, str]]:
        toggle_columns = column_names(SAAS_TOGGLES_TABLE)
        # Same columns in the same order: integration rows carry only provider and status.
        blanks = ", ".join(name if name == "provider" else f"NULL AS {name}" for name in toggle_columns)
        found = self._query(
            f"SELECT 'toggle' AS kind, {', '.join(toggle_columns)}, NULL AS status "
            f"FROM {SAAS_TOGGLES_TABLE} WHERE org_slug = ? "
            f"UNION ALL SELECT 'integration' AS kind, {blanks}, status "
            f"FROM {INTEGRATIONS_TABLE} WHERE org_slug = ?",
            (org_slug, org_slug),
        )
        toggles = [
            rows.toggle_from_row(self._from_sql(SAAS_TOGGLES_TABLE, row)) for row in found if row["kind"] == "toggle"
        ]
        statuses = {row["provider"]: row["status"] for row in found if row["kind"] == "integration"}
        return toggles, statuses

    def set_subscription_toggle(
        self, toggle: SubscriptionToggle, audit: AuditEvent
    ) -> tuple[SubscriptionToggle, bool, str | None]:
        key = (toggle.org_slug, toggle.provider)
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {SAAS_TOGGLES_TABLE} WHERE org_slug = ? AND provider = ?", key
            ).fetchall()
            current = rows.toggle_from_row(self._from_sql(SAAS_TOGGLES_TABLE, found[0])) if found else None
            changed = current is None or current.enabled != toggle.enabled
            if current is None:
                self._insert(connection, SAAS_TOGGLES_TABLE, rows.toggle_to_row(toggle))
            elif changed:
                connection.execute(
                    f"UPDATE {SAAS_TOGGLES_TABLE} SET enabled = :enabled, updated_at = :updated_at, "
                    "updated_by = :updated_by, updated_by_key_id = :updated_by_key_id "
                    "WHERE org_slug = :org_slug AND provider = :provider",
                    self._to_sql(SAAS_TOGGLES_TABLE, rows.toggle_to_row(toggle)),
                )
                toggle.created_at, toggle.created_by = current.created_at, current.created_by
            else:
                toggle = current
                audit.detail = "unchanged"
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
            status = connection.execute(
                f"SELECT status FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", key
            ).fetchall()
        return toggle, changed, status[0]["status"] if status else None
