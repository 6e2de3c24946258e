"""The BigQuery store: org API keys (hashes only)."""

from __future__ import annotations

from shared.domain.models import ApiKeyRecord, utc_now
from shared.domain.schemas import API_KEYS_TABLE
from shared.store import rows
from shared.store.bigquery.base import BigQueryBase
from shared.store.bigquery.jobs import scalar


class BigQueryApiKeys(BigQueryBase):
    """Org API keys."""

    def add_api_key(self, record: ApiKeyRecord) -> None:
        self._run(
            self._insert_sql("k_", API_KEYS_TABLE),
            self._row_parameters("k_", API_KEYS_TABLE, rows.api_key_to_row(record)),
        )

    def find_api_key(self, key_id: str) -> ApiKeyRecord | None:
        found = self._run(
            f"SELECT * FROM {self._table(API_KEYS_TABLE)} WHERE key_id = @key_id", [self._scalar("key_id", key_id)]
        )
        return rows.api_key_from_row(found[0]) if found else None

    def list_api_keys(self, org_slug: str | None = None) -> list[ApiKeyRecord]:
        found = self._run(
            f"SELECT * FROM {self._table(API_KEYS_TABLE)} WHERE @org_slug IS NULL OR org_slug = @org_slug "
            "ORDER BY org_slug, created_at",
            [scalar("org_slug", "STRING", org_slug)],
            order_by="org_slug, created_at",
        )
        return [rows.api_key_from_row(row) for row in found]

    def revoke_api_key(self, key_id: str) -> bool:
        sql = f"""
DECLARE matched BOOL DEFAULT FALSE;
BEGIN TRANSACTION;
SET matched = EXISTS (
  SELECT 1 FROM {self._table(API_KEYS_TABLE)} WHERE key_id = @key_id AND revoked_at IS NULL
);
UPDATE {self._table(API_KEYS_TABLE)} SET revoked_at = @now WHERE key_id = @key_id AND revoked_at IS NULL;
COMMIT TRANSACTION;
SELECT matched;
"""
        return bool(self._run(sql, [self._scalar("key_id", key_id), self._scalar("now", utc_now())])[0]["matched"])
