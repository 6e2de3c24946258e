"""The SQLite store: alerts' deliveries and the organizations' webhooks."""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.models import Alert, Webhook
from shared.domain.schemas import ALERTS_TABLE, WEBHOOKS_TABLE
from shared.store import rows
from shared.store.sqlite.base import SqliteBase, timestamp_text


class SqliteAlerts(SqliteBase):
    """Alerts and webhooks."""

    def record_alert_deliveries(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        with self._transaction() as connection:
            for alert in alerts:
                connection.execute(
                    f"UPDATE {ALERTS_TABLE} SET delivery_status = ?, delivery_attempts = ?, delivered_at = ? "
                    "WHERE alert_id = ?",
                    (
                        alert.delivery_status,
                        alert.delivery_attempts,
                        None if alert.delivered_at is None else timestamp_text(alert.delivered_at),
                        alert.alert_id,
                    ),
                )

    def list_alerts(self, org_slug: str, limit: int = 100) -> list[Alert]:
        found = self._query(
            f"SELECT * FROM {ALERTS_TABLE} WHERE org_slug = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (org_slug, limit),
        )
        return [rows.alert_from_row(self._from_sql(ALERTS_TABLE, row)) for row in found]

    def set_webhook(self, webhook: Webhook) -> None:
        with self._transaction() as connection:
            connection.execute(f"DELETE FROM {WEBHOOKS_TABLE} WHERE org_slug = ?", (webhook.org_slug,))
            self._insert(connection, WEBHOOKS_TABLE, rows.webhook_to_row(webhook))

    def delete_webhook(self, org_slug: str) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(f"DELETE FROM {WEBHOOKS_TABLE} WHERE org_slug = ?", (org_slug,))
        return cursor.rowcount > 0

    def get_webhooks(self, org_slugs: Sequence[str]) -> dict[str, Webhook]:
        if not org_slugs:
            return {}
        placeholders = ", ".join("?" for _ in org_slugs)
        found = self._query(f"SELECT * FROM {WEBHOOKS_TABLE} WHERE org_slug IN ({placeholders})", list(org_slugs))
        webhooks = [rows.webhook_from_row(self._from_sql(WEBHOOKS_TABLE, row)) for row in found]
        return {webhook.org_slug: webhook for webhook in webhooks}
