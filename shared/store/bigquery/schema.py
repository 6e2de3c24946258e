"""The BigQuery store: the dataset and tables: created, and brought up to the current schema in place."""

from __future__ import annotations

from typing import Any

from shared.domain.schemas import AUDIT_TABLE, CREDENTIALS_TABLE, INTEGRATIONS_TABLE, TABLES, table_schema
from shared.store.bigquery.base import BigQueryBase

# Columns renamed since the first schema, per table: (old name, new name).
MIGRATED_RENAMES = {
    CREDENTIALS_TABLE: (("encrypted_credential", "encrypted_value"),),
    INTEGRATIONS_TABLE: (("validation_details", "details"),),
}


class BigQuerySchema(BigQueryBase):
    """The dataset's bootstrap and in-place upgrade."""

    def bootstrap(self) -> dict[str, Any]:
        """Create the dataset and every table from configs/schemas, and upgrade older tables (idempotent).

        A table created by an earlier schema is brought to the current one in
        place: renamed columns (``encrypted_credential`` -> ``encrypted_value``,
        ``validation_details`` -> ``details``), ``config`` from STRING to JSON,
        the spec's new columns added and backfilled. Nothing is dropped but the
        STRING ``config`` once its JSON copy is written.
        """
        self.jobs.create_dataset(self.dataset)
        for table in TABLES:
            self.jobs.create_table(self.dataset, table, table_schema(table))
        changes = self._upgrade()
        return {"dataset": f"{self.project}.{self.dataset}", "tables": list(TABLES), "schema_changes": changes}

    def _live_columns(self, table: str) -> dict[str, str]:
        """Column -> type as the table is now (a zero-row query: what the engine sees, free)."""
        return dict(self._job(f"SELECT * FROM {self._table(table)} LIMIT 0").columns)

    def _upgrade(self) -> list[str]:
        statements: list[str] = []
        for table in TABLES:
            live = self._live_columns(table)
            wanted = self._types[table]
            for old, new in MIGRATED_RENAMES.get(table, ()):
                if old in live and new not in live:
                    statements.append(f"ALTER TABLE {self._table(table)} RENAME COLUMN {old} TO {new}")
                    live[new] = live.pop(old)
            for name, kind in wanted.items():
                if kind == "JSON" and live.get(name) == "STRING":
                    # BigQuery cannot change STRING to JSON in place: copy, drop, rename.
                    statements += [
                        f"ALTER TABLE {self._table(table)} ADD COLUMN {name}_json JSON",
                        f"UPDATE {self._table(table)} SET {name}_json = PARSE_JSON({name}) WHERE TRUE",
                        f"ALTER TABLE {self._table(table)} DROP COLUMN {name}",
                        f"ALTER TABLE {self._table(table)} RENAME COLUMN {name}_json TO {name}",
                    ]
                    live[name] = "JSON"
                elif name not in live:
                    statements.append(f"ALTER TABLE {self._table(table)} ADD COLUMN {name} {kind}")
                    live[name] = kind
        for statement in statements:
            self._run(statement)
        if statements:
            for backfill in self._backfills():
                self._run(backfill)
        return statements

    def _backfills(self) -> list[str]:
        """Values for the columns the upgrade added, from what the dataset already holds."""
        integrations, credentials, audit = (
            self._table(INTEGRATIONS_TABLE),
            self._table(CREDENTIALS_TABLE),
            self._table(AUDIT_TABLE),
        )
        return [
            f"UPDATE {credentials} SET credential_type = 'service_account' "
            "WHERE credential_type = 'service_account_json'",
            f"UPDATE {credentials} SET updated_at = created_at WHERE updated_at IS NULL",
            f"UPDATE {credentials} AS c SET expires_at = i.expires_at FROM {integrations} AS i "
            "WHERE i.credential_id = c.credential_id AND c.expires_at IS NULL AND i.expires_at IS NOT NULL",
            f"UPDATE {integrations} AS i SET created_by = s.actor_key_id FROM ("
            f"SELECT org_slug, provider, actor_key_id FROM {audit} WHERE action = 'setup' AND outcome = 'success' "
            "QUALIFY ROW_NUMBER() OVER (PARTITION BY org_slug, provider ORDER BY created_at DESC) = 1) AS s "
            "WHERE i.org_slug = s.org_slug AND i.provider = s.provider AND i.created_by IS NULL",
            f"UPDATE {integrations} SET created_by = 'unknown' WHERE created_by IS NULL",
            f"UPDATE {credentials} AS c SET created_by = i.created_by FROM {integrations} AS i "
            "WHERE i.credential_id = c.credential_id AND c.created_by IS NULL",
            f"UPDATE {credentials} SET created_by = 'unknown' WHERE created_by IS NULL",
            f"UPDATE {audit} SET actor = actor_key_id WHERE actor IS NULL",
            f"UPDATE {integrations} SET validated_at = last_success_at "
            "WHERE validated_at IS DISTINCT FROM last_success_at",
        ]
