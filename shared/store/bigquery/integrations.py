"""The BigQuery store: integrations and their credentials, one at a time: create, read, change, replace, delete."""

from __future__ import annotations

import json
from datetime import datetime

from shared.domain.models import AuditEvent, Integration, SettingsChange, StoredCredential
from shared.domain.schemas import AUDIT_TABLE, CREDENTIALS_TABLE, INTEGRATIONS_TABLE
from shared.store import rows
from shared.store.bigquery.base import BigQueryBase
from shared.store.bigquery.jobs import scalar


class BigQueryIntegrations(BigQueryBase):
    """Integrations and their credentials, one job per operation."""

    def create_integration(self, integration: Integration, credential: StoredCredential, audit: AuditEvent) -> bool:
        integration_row = rows.integration_to_row(integration)
        sql = f"""
DECLARE outcome STRING DEFAULT 'exists';
BEGIN TRANSACTION;
MERGE {self._table(INTEGRATIONS_TABLE)} AS existing
USING (SELECT @i_org_slug AS org_slug, @i_provider AS provider) AS wanted
ON existing.org_slug = wanted.org_slug AND existing.provider = wanted.provider
WHEN NOT MATCHED THEN
  INSERT ({self._columns(INTEGRATIONS_TABLE)}) VALUES ({self._values("i_", INTEGRATIONS_TABLE)});
IF EXISTS (
  SELECT 1 FROM {self._table(INTEGRATIONS_TABLE)} WHERE integration_id = @i_integration_id
) THEN
  {self._insert_sql("c_", CREDENTIALS_TABLE)};
  {self._insert_sql("a_", AUDIT_TABLE)};
  SET outcome = 'created';
END IF;
COMMIT TRANSACTION;
SELECT outcome;
"""
        parameters = (
            self._row_parameters("i_", INTEGRATIONS_TABLE, integration_row)
            + self._row_parameters("c_", CREDENTIALS_TABLE, rows.credential_to_row(credential))
            + self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit))
        )
        return self._run(sql, parameters)[0]["outcome"] == "created"

    def get_integration(self, org_slug: str, provider: str) -> Integration | None:
        found = self._run(
            f"SELECT * FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider",
            [self._scalar("org_slug", org_slug), self._scalar("provider", provider)],
        )
        return self._integration(found[0]) if found else None

    def get_integration_with_credential(
        self, org_slug: str, provider: str
    ) -> tuple[Integration, StoredCredential] | None:
        found = self._run(
            self._pairs_sql("i.org_slug = @org_slug AND i.provider = @provider"),
            [self._scalar("org_slug", org_slug), self._scalar("provider", provider)],
        )
        return self._pair(found[0]) if found else None

    def list_integrations(self, org_slug: str) -> list[Integration]:
        found = self._run(
            f"SELECT * FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug ORDER BY provider",
            [self._scalar("org_slug", org_slug)],
            order_by="provider",
        )
        return [self._integration(row) for row in found]

    def save_integration(self, integration: Integration, audit: AuditEvent, *, expected_updated_at: datetime) -> bool:
        parameters = [
            *self._row_parameters("i_", INTEGRATIONS_TABLE, rows.integration_to_row(integration)),
            *self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit)),
            self._scalar("expected_updated_at", expected_updated_at),
        ]
        condition = "updated_at = @expected_updated_at"
        return self._conditional_integration_write(
            condition,
            [
                self._integration_update_sql("i_", condition),
                self._credential_expiry_sql("i_"),
                self._insert_sql("a_", AUDIT_TABLE),
            ],
            parameters,
        )

    def update_settings(
        self, org_slug: str, provider: str, change: SettingsChange, audit: AuditEvent
    ) -> Integration | None:
        # The CASE is shared.domain.lifecycle.status_after_settings_change in SQL; the
        # contract suite runs the same transitions on SQLite and here.
        config_json = None if change.config is None else json.dumps(change.config, sort_keys=True)
        sql = f"""
BEGIN TRANSACTION;
UPDATE {self._table(INTEGRATIONS_TABLE)} SET
  status = CASE
    WHEN @enabled IS NOT NULL AND NOT @enabled THEN 'disabled'
    WHEN status = 'disabled' THEN IF(@enabled IS NOT NULL AND @enabled, 'pending', 'disabled')
    WHEN @config IS NOT NULL AND TO_JSON_STRING(PARSE_JSON(@config)) != TO_JSON_STRING(config)
      AND status IN ('active', 'error', 'expired') THEN 'pending'
    ELSE status
  END,
  config = COALESCE(PARSE_JSON(@config), config),
  expires_at = IF(@clear_expires_at, NULL, COALESCE(@expires_at, expires_at)),
  expiry_alert_window = IF(@clear_expires_at OR @expires_at IS NOT NULL, NULL, expiry_alert_window),
  updated_at = @a_created_at
WHERE org_slug = @org_slug AND provider = @provider;
UPDATE {self._table(CREDENTIALS_TABLE)} SET
  expires_at = IF(@clear_expires_at, NULL, COALESCE(@expires_at, expires_at)),
  updated_at = @a_created_at
WHERE (@clear_expires_at OR @expires_at IS NOT NULL) AND credential_type != 'oauth' AND credential_id IN (
  SELECT credential_id FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider
);
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {self._values("a_", AUDIT_TABLE)} FROM {self._table(INTEGRATIONS_TABLE)}
WHERE org_slug = @org_slug AND provider = @provider;
COMMIT TRANSACTION;
SELECT * FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider;
"""
        parameters = [
            self._scalar("org_slug", org_slug),
            self._scalar("provider", provider),
            scalar("enabled", "BOOL", change.enabled),
            scalar("config", "STRING", config_json),
            scalar("expires_at", "TIMESTAMP", change.expires_at),
            scalar("clear_expires_at", "BOOL", change.clear_expires_at),
            *self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit)),
        ]
        found = self._run(sql, parameters)
        return self._integration(found[0]) if found else None

    def replace_credential(
        self,
        integration: Integration,
        credential: StoredCredential,
        audit: AuditEvent,
        *,
        expected_credential_id: str,
        expected_updated_at: datetime,
    ) -> bool:
        parameters = [
            *self._row_parameters("i_", INTEGRATIONS_TABLE, rows.integration_to_row(integration)),
            *self._row_parameters("c_", CREDENTIALS_TABLE, rows.credential_to_row(credential)),
            *self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit)),
            self._scalar("expected_credential_id", expected_credential_id),
            self._scalar("expected_updated_at", expected_updated_at),
        ]
        condition = "credential_id = @expected_credential_id AND updated_at = @expected_updated_at"
        return self._conditional_integration_write(
            condition,
            [
                self._integration_update_sql("i_", condition),
                f"DELETE FROM {self._table(CREDENTIALS_TABLE)} WHERE credential_id = @expected_credential_id",
                self._insert_sql("c_", CREDENTIALS_TABLE),
                self._insert_sql("a_", AUDIT_TABLE),
            ],
            parameters,
        )

    def delete_integration(self, org_slug: str, provider: str, audit: AuditEvent) -> bool:
        audit_row = rows.audit_to_row(audit)
        sql = f"""
DECLARE existed BOOL DEFAULT FALSE;
DECLARE deleted_fingerprint STRING;
BEGIN TRANSACTION;
SET existed = EXISTS (
  SELECT 1 FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider
);
SET deleted_fingerprint = (
  SELECT MAX(fingerprint) FROM {self._table(CREDENTIALS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider
);
IF existed THEN
  DELETE FROM {self._table(CREDENTIALS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider;
  DELETE FROM {self._table(INTEGRATIONS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider;
  INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
  VALUES ({self._values("a_", AUDIT_TABLE).replace("@a_credential_fingerprint", "deleted_fingerprint")});
END IF;
COMMIT TRANSACTION;
SELECT existed, deleted_fingerprint;
"""
        parameters = [
            self._scalar("org_slug", org_slug),
            self._scalar("provider", provider),
            *[
                parameter
                for parameter in self._row_parameters("a_", AUDIT_TABLE, audit_row)
                if parameter["name"] != "a_credential_fingerprint"
            ],
        ]
        result = self._run(sql, parameters)[0]
        if result["existed"]:
            audit.credential_fingerprint = result["deleted_fingerprint"]
        return bool(result["existed"])
