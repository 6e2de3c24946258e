"""The SQLite store: org API keys (hashes only)."""

from __future__ import annotations

from shared.domain.models import ApiKeyRecord, utc_now
from shared.domain.schemas import API_KEYS_TABLE
from shared.store import rows
from shared.store.sqlite.base import SqliteBase, timestamp_text


class SqliteApiKeys(SqliteBase):
    """Org API keys."""

    def add_api_key(self, record: ApiKeyRecord) -> None:
        with self._transaction() as connection:
            self._insert(connection, API_KEYS_TABLE, rows.api_key_to_row(record))

    def find_api_key(self, key_id: str) -> ApiKeyRecord | None:
        found = self._query(f"SELECT * FROM {API_KEYS_TABLE} WHERE key_id = ?", (key_id,))
        return rows.api_key_from_row(self._from_sql(API_KEYS_TABLE, found[0])) if found else None

    def list_api_keys(self, org_slug: str | None = None) -> list[ApiKeyRecord]:
        if org_slug is None:
            found = self._query(f"SELECT * FROM {API_KEYS_TABLE} ORDER BY org_slug, created_at")
        else:
            found = self._query(f"SELECT * FROM {API_KEYS_TABLE} WHERE org_slug = ? ORDER BY created_at", (org_slug,))
        return [rows.api_key_from_row(self._from_sql(API_KEYS_TABLE, row)) for row in found]

    def revoke_api_key(self, key_id: str) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {API_KEYS_TABLE} SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (timestamp_text(utc_now()), key_id),
            )
        return cursor.rowcount == 1
