"""The BigQuery store: alerts' deliveries and the organizations' webhooks."""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.models import Alert, Webhook
from shared.domain.schemas import ALERTS_TABLE, WEBHOOKS_TABLE
from shared.store import rows
from shared.store.bigquery.base import BigQueryBase
from shared.store.bigquery.jobs import array


class BigQueryAlerts(BigQueryBase):
    """Alerts and webhooks."""

    def record_alert_deliveries(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        columns = ("alert_id", "delivery_status", "delivery_attempts", "delivered_at")
        deliveries = self._struct_array(
            "deliveries", self._types[ALERTS_TABLE], [rows.alert_to_row(a) for a in alerts], columns
        )
        self._run(
            f"""
UPDATE {self._table(ALERTS_TABLE)} AS target
SET delivery_status = delivery.delivery_status, delivery_attempts = delivery.delivery_attempts,
    delivered_at = delivery.delivered_at
FROM UNNEST(@deliveries) AS delivery
WHERE target.alert_id = delivery.alert_id
""",
            [deliveries],
        )

    def list_alerts(self, org_slug: str, limit: int = 100) -> list[Alert]:
        found = self._run(
            f"SELECT * FROM {self._table(ALERTS_TABLE)} WHERE org_slug = @org_slug "
            "ORDER BY created_at DESC LIMIT @limit",
            [self._scalar("org_slug", org_slug), self._scalar("limit", limit)],
            order_by="created_at DESC",
        )
        return [rows.alert_from_row(row) for row in found]

    def set_webhook(self, webhook: Webhook) -> None:
        self._run(
            f"""
MERGE {self._table(WEBHOOKS_TABLE)} AS existing
USING (SELECT @w_org_slug AS org_slug) AS wanted ON existing.org_slug = wanted.org_slug
WHEN MATCHED THEN UPDATE SET webhook_id = @w_webhook_id, url = @w_url, created_at = @w_created_at
WHEN NOT MATCHED THEN INSERT ({self._columns(WEBHOOKS_TABLE)}) VALUES ({self._values("w_", WEBHOOKS_TABLE)})
""",
            self._row_parameters("w_", WEBHOOKS_TABLE, rows.webhook_to_row(webhook)),
        )

    def delete_webhook(self, org_slug: str) -> bool:
        sql = f"""
DECLARE existed BOOL DEFAULT FALSE;
SET existed = EXISTS (SELECT 1 FROM {self._table(WEBHOOKS_TABLE)} WHERE org_slug = @org_slug);
DELETE FROM {self._table(WEBHOOKS_TABLE)} WHERE org_slug = @org_slug;
SELECT existed;
"""
        return bool(self._run(sql, [self._scalar("org_slug", org_slug)])[0]["existed"])

    def get_webhooks(self, org_slugs: Sequence[str]) -> dict[str, Webhook]:
        if not org_slugs:
            return {}
        found = self._run(
            f"SELECT * FROM {self._table(WEBHOOKS_TABLE)} WHERE org_slug IN UNNEST(@org_slugs)",
            [array("org_slugs", "STRING", list(org_slugs))],
        )
        webhooks = [rows.webhook_from_row(row) for row in found]
        return {webhook.org_slug: webhook for webhook in webhooks}
