"""The SQLite store: the external IDs of cross-account roles, one per organization and provider."""

from __future__ import annotations

from shared.domain.models import utc_now
from shared.domain.schemas import EXTERNAL_IDS_TABLE
from shared.store.sqlite.base import SqliteBase, timestamp_text


class SqliteExternalIds(SqliteBase):
    """External IDs of cross-account roles."""

    def external_id(self, org_slug: str, provider: str, candidate: str) -> str:
        with self._transaction() as connection:
            connection.execute(
                f"INSERT INTO {EXTERNAL_IDS_TABLE} (org_slug, provider, external_id, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (org_slug, provider) DO NOTHING",
                (org_slug, provider, candidate, timestamp_text(utc_now())),
            )
            row = connection.execute(
                f"SELECT external_id FROM {EXTERNAL_IDS_TABLE} WHERE org_slug = ? AND provider = ?",
                (org_slug, provider),
            ).fetchone()
        return str(row["external_id"])

    def find_external_id(self, org_slug: str, provider: str) -> str | None:
        found = self._query(
            f"SELECT external_id FROM {EXTERNAL_IDS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
        )
        return str(found[0]["external_id"]) if found else None
