"""The BigQuery store: the external IDs of cross-account roles, one per organization and provider."""

from __future__ import annotations

from shared.domain.models import utc_now
from shared.domain.schemas import EXTERNAL_IDS_TABLE
from shared.store.bigquery.base import BigQueryBase


class BigQueryExternalIds(BigQueryBase):
    """External IDs of cross-account roles."""

    def external_id(self, org_slug: str, provider: str, candidate: str) -> str:
        # MERGE decides who creates the row (concurrent MERGEs conflict and the
        # loser is retried by _run, then matches the winner's row); the SELECT
        # in the same script answers whichever value was kept.
        sql = f"""
MERGE {self._table(EXTERNAL_IDS_TABLE)} AS existing
USING (SELECT @org_slug AS org_slug, @provider AS provider) AS wanted
ON existing.org_slug = wanted.org_slug AND existing.provider = wanted.provider
WHEN NOT MATCHED THEN
  INSERT (org_slug, provider, external_id, created_at) VALUES (@org_slug, @provider, @candidate, @created_at);
SELECT external_id FROM {self._table(EXTERNAL_IDS_TABLE)} WHERE org_slug = @org_slug AND provider = @provider;
"""
        found = self._run(
            sql,
            [
                self._scalar("org_slug", org_slug),
                self._scalar("provider", provider),
                self._scalar("candidate", candidate),
                self._scalar("created_at", utc_now()),
            ],
        )
        return str(found[0]["external_id"])

    def find_external_id(self, org_slug: str, provider: str) -> str | None:
        found = self._run(
            f"SELECT external_id FROM {self._table(EXTERNAL_IDS_TABLE)} "
            "WHERE org_slug = @org_slug AND provider = @provider",
            [self._scalar("org_slug", org_slug), self._scalar("provider", provider)],
        )
        return str(found[0]["external_id"]) if found else None
