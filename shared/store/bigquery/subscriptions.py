"""The BigQuery store: SaaS subscription toggles."""

from __future__ import annotations

from shared.domain.models import AuditEvent, SubscriptionToggle
from shared.domain.schemas import AUDIT_TABLE, INTEGRATIONS_TABLE, SAAS_TOGGLES_TABLE, column_names
from shared.store import rows
from shared.store.bigquery.base import BigQueryBase


class BigQuerySubscriptions(BigQueryBase):
    """SaaS subscription toggles."""

    def list_subscription_toggles(self, org_slug: str) -> tuple[list[SubscriptionToggle], dict[str, str]]:
        kinds = self._types[SAAS_TOGGLES_TABLE]
        # Same columns in the same order: integration rows carry only provider and status.
        blanks = ", ".join(
            name if name == "provider" else f"CAST(NULL AS {kind}) AS {name}" for name, kind in kinds.items()
        )
        found = self._run(
            f"SELECT 'toggle' AS kind, {self._columns(SAAS_TOGGLES_TABLE)}, CAST(NULL AS STRING) AS status "
            f"FROM {self._table(SAAS_TOGGLES_TABLE)} WHERE org_slug = @org_slug "
            f"UNION ALL SELECT 'integration' AS kind, {blanks}, status "
            f"FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug",
            [self._scalar("org_slug", org_slug)],
        )
        toggles = [
            rows.toggle_from_row({name: row[name] for name in kinds}) for row in found if row["kind"] == "toggle"
        ]
        statuses = {row["provider"]: row["status"] for row in found if row["kind"] == "integration"}
        return toggles, statuses

    def set_subscription_toggle(
        self, toggle: SubscriptionToggle, audit: AuditEvent
    ) -> tuple[SubscriptionToggle, bool, str | None]:
        """One script: MERGE decides insert / update / nothing; concurrent first
        toggles cannot both insert (one MERGE aborts and is retried by ``_run``)."""
        toggles = self._table(SAAS_TOGGLES_TABLE)
        audit_values = self._values("a_", AUDIT_TABLE).replace(
            "@a_detail", "IF(previous IS NOT NULL AND previous = @t_enabled, 'unchanged', @a_detail)"
        )
        sql = f"""
DECLARE previous BOOL DEFAULT NULL;
BEGIN TRANSACTION;
SET previous = (SELECT ANY_VALUE(enabled) FROM {toggles} WHERE org_slug = @t_org_slug AND provider = @t_provider);
MERGE {toggles} AS existing
USING (SELECT @t_org_slug AS org_slug, @t_provider AS provider) AS wanted
ON existing.org_slug = wanted.org_slug AND existing.provider = wanted.provider
WHEN MATCHED AND existing.enabled != @t_enabled THEN UPDATE SET
  enabled = @t_enabled, updated_at = @t_updated_at, updated_by = @t_updated_by,
  updated_by_key_id = @t_updated_by_key_id
WHEN NOT MATCHED THEN
  INSERT ({self._columns(SAAS_TOGGLES_TABLE)}) VALUES ({self._values("t_", SAAS_TOGGLES_TABLE)});
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)}) VALUES ({audit_values});
COMMIT TRANSACTION;
SELECT toggle.*, previous IS NULL OR previous != toggle.enabled AS changed,
  (SELECT ANY_VALUE(status) FROM {self._table(INTEGRATIONS_TABLE)}
   WHERE org_slug = @t_org_slug AND provider = @t_provider) AS integration_status
FROM {toggles} AS toggle WHERE org_slug = @t_org_slug AND provider = @t_provider;
"""
        parameters = [
            *self._row_parameters("t_", SAAS_TOGGLES_TABLE, rows.toggle_to_row(toggle)),
            *self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit)),
        ]
        row = self._run(sql, parameters)[0]
        changed = bool(row["changed"])
        if not changed:
            audit.detail = "unchanged"
        stored = rows.toggle_from_row({name: row[name] for name in column_names(SAAS_TOGGLES_TABLE)})
        return stored, changed, row["integration_status"]
