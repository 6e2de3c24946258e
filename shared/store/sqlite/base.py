"""SQLite adapter of the store port: the embedded default.

Tables are created from ``configs/schemas/*.json`` (the same files BigQuery
uses); a unique index on (org_slug, provider) makes concurrent setups safe,
and every other lookup the store does has its index (``INDEXES``), so a
revalidation batch of N rows costs N index probes, not N table scans.

Concurrency (the local server answers each request on its own thread):

- connections are pooled and reused across threads (opening one and setting
  its pragmas costs more than most statements);
- WAL journal: readers never wait for the writer, nor the writer for them;
- writes run in ``BEGIN IMMEDIATE`` transactions (integration, credential and
  audit change together), one at a time per process behind a lock, so
  concurrent writers queue in order instead of polling SQLite's busy handler
  (which sleeps up to 100 ms between tries and made p99 grow with the queue);
  ``busy_timeout`` covers other processes (the CLI) writing the same file.
- ``synchronous=NORMAL``: in WAL mode a commit is durable against a crash of
  the process and consistent after a power loss (the last commits may be
  lost then, never half-applied), at no fsync per commit. The local mode's
  write ceiling is in docs/design/two-runtimes.md.

A pending API-key check (``shared.store.pending_key_check``) is answered on
the connection of the first query or transaction it rides on, before that
statement runs, and counts in the same job.
"""

from __future__ import annotations

import hashlib
import os
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.domain.errors import StoreUnavailable, Unauthenticated
from shared.domain.models import Integration, StoredCredential
from shared.domain.schemas import (
    ALERTS_TABLE,
    API_KEYS_TABLE,
    AUDIT_TABLE,
    CREDENTIALS_TABLE,
    EXTERNAL_IDS_TABLE,
    INTEGRATIONS_TABLE,
    OAUTH_STATES_TABLE,
    SAAS_TOGGLES_TABLE,
    TABLES,
    WEBHOOKS_TABLE,
    column_names,
    column_types,
    table_schema,
)
from shared.store import rows
from shared.store.key_check import KeyCheck, key_check_to_carry

SQLITE_TYPES = {
    "STRING": "TEXT",
    "JSON": "TEXT",
    "BYTES": "BLOB",
    "TIMESTAMP": "TEXT",
    "INT64": "INTEGER",
    "BOOL": "INTEGER",
}


# Columns renamed since the first schema: (table, old name, new name). A store
# created before the rename is upgraded in place on open.
RENAMED_COLUMNS = (
    (CREDENTIALS_TABLE, "encrypted_credential", "encrypted_value"),
    (INTEGRATIONS_TABLE, "validation_details", "details"),
)


# Values for columns added by the spec alignment, derived from what the store
# already holds; each statement is a no-op once applied (idempotent).
BACKFILLS = (
    f"UPDATE {CREDENTIALS_TABLE} SET credential_type = 'service_account' "
    "WHERE credential_type = 'service_account_json'",
    f"UPDATE {CREDENTIALS_TABLE} SET updated_at = created_at WHERE updated_at IS NULL",
    f"UPDATE {CREDENTIALS_TABLE} SET expires_at = (SELECT i.expires_at FROM {INTEGRATIONS_TABLE} i "
    f"WHERE i.credential_id = {CREDENTIALS_TABLE}.credential_id) WHERE expires_at IS NULL",
    # Who created it: the key that ran the successful setup, as the audit log says.
    f"UPDATE {INTEGRATIONS_TABLE} SET created_by = COALESCE((SELECT a.actor_key_id FROM {AUDIT_TABLE} a "
    f"WHERE a.org_slug = {INTEGRATIONS_TABLE}.org_slug AND a.provider = {INTEGRATIONS_TABLE}.provider "
    "AND a.action = 'setup' AND a.outcome = 'success' ORDER BY a.created_at DESC LIMIT 1), 'unknown') "
    "WHERE created_by IS NULL",
    f"UPDATE {CREDENTIALS_TABLE} SET created_by = COALESCE((SELECT i.created_by FROM {INTEGRATIONS_TABLE} i "
    f"WHERE i.credential_id = {CREDENTIALS_TABLE}.credential_id), 'unknown') WHERE created_by IS NULL",
    f"UPDATE {AUDIT_TABLE} SET actor = actor_key_id WHERE actor IS NULL",
    # validated_at used to move on failed validations too; last_success_at never did.
    f"UPDATE {INTEGRATIONS_TABLE} SET validated_at = last_success_at WHERE validated_at IS NOT last_success_at",
)


# One index per lookup the store does (tests/test_sqlite_store.py checks every
# statement's query plan): writes by integration_id and credential_id, joins on
# credential_id, the revalidation read by last_checked_at, alert dedupe and
# delivery updates, per-org reads.
INDEXES = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_integration_org_provider ON {INTEGRATIONS_TABLE} (org_slug, provider)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_integration_id ON {INTEGRATIONS_TABLE} (integration_id)",
    f"CREATE INDEX IF NOT EXISTS ix_integration_credential ON {INTEGRATIONS_TABLE} (credential_id)",
    f"CREATE INDEX IF NOT EXISTS ix_integration_due ON {INTEGRATIONS_TABLE} (last_checked_at, integration_id)",
    "DROP INDEX IF EXISTS ix_integration_last_checked",  # the revalidation read's index before it was paged
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_credential_id ON {CREDENTIALS_TABLE} (credential_id)",
    f"CREATE INDEX IF NOT EXISTS ix_credential_org_provider ON {CREDENTIALS_TABLE} (org_slug, provider)",
    f"CREATE INDEX IF NOT EXISTS ix_audit_org ON {AUDIT_TABLE} (org_slug, provider, created_at)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_api_key_id ON {API_KEYS_TABLE} (key_id)",
    f"CREATE INDEX IF NOT EXISTS ix_api_key_org ON {API_KEYS_TABLE} (org_slug, created_at)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_alert_dedupe ON {ALERTS_TABLE} (dedupe_key)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_alert_id ON {ALERTS_TABLE} (alert_id)",
    f"CREATE INDEX IF NOT EXISTS ix_alert_org ON {ALERTS_TABLE} (org_slug, created_at)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_webhook_org ON {WEBHOOKS_TABLE} (org_slug)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_external_id_org_provider ON {EXTERNAL_IDS_TABLE} (org_slug, provider)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_oauth_state ON {OAUTH_STATES_TABLE} (state_hash)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_saas_toggle_org_provider ON {SAAS_TOGGLES_TABLE} (org_slug, provider)",
)


def _schema_fingerprint() -> int:
    """What the schema statements below would build, as a positive 31-bit number for ``PRAGMA user_version``."""
    statements = [_create_table_sql(table) for table in TABLES] + [" ".join(r) for r in RENAMED_COLUMNS]
    digest = hashlib.sha256("\n".join([*statements, *BACKFILLS, *INDEXES]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1


# Another process (the CLI) may hold the write lock; within this process the
# writers queue on ``_write_lock`` and never see it busy.
BUSY_TIMEOUT_MS = 10_000


# An OAuth credential's expires_at is its access token's expiry, which refreshes
# move; only other credentials copy the integration's expiry.
NOT_OAUTH = "credential_type != 'oauth'"


MUTABLE_INTEGRATION_COLUMNS = [
    name
    for name in column_names(INTEGRATIONS_TABLE)
    if name not in ("integration_id", "org_slug", "provider", "created_at")
]


def timestamp_text(value: datetime) -> str:
    # Fixed-width UTC text: sorts and compares like the instant it names.
    return value.isoformat(timespec="microseconds")


def _create_table_sql(table: str) -> str:
    columns = []
    for column in table_schema(table):
        not_null = " NOT NULL" if column.get("mode") == "REQUIRED" else ""
        columns.append(f"{column['name']} {SQLITE_TYPES[column['type']]}{not_null}")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})"


def _upgrade(connection: sqlite3.Connection) -> int:
    """Bring tables created by an older schema to ``configs/schemas`` (idempotent).

    Renames columns, adds the missing ones (nullable: SQLite cannot add a NOT
    NULL column without a default; the service always writes them) and
    backfills them. Returns how many columns it renamed or added.
    """
    changes = 0
    existing = {table: {row[1] for row in connection.execute(f"PRAGMA table_info({table})")} for table in TABLES}
    for table, old, new in RENAMED_COLUMNS:
        if old in existing[table] and new not in existing[table]:
            connection.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
            existing[table] = (existing[table] - {old}) | {new}
            changes += 1
    for table in TABLES:
        for column in table_schema(table):
            if column["name"] not in existing[table]:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column['name']} {SQLITE_TYPES[column['type']]}")
                changes += 1
    for statement in BACKFILLS:
        connection.execute(statement)
    return changes


class SqliteBase:
    """The connection pool, the transactions and the SQL helpers every aggregate's mixin uses;
    ``SqliteStore`` (``shared.store.sqlite``) is their sum."""

    def __init__(self, path: Path | str, *, trace: Callable[[str], None] | None = None) -> None:
        """``trace`` receives every SQL statement run, values bound (diagnostics and the query-plan test)."""
        self.path = str(path)
        self._trace = trace
        if self.path != ":memory:":
            # Ciphertexts and key hashes: readable by the service's user only
            # (SQLite gives its -wal/-shm files the database file's mode).
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self.counters: Counter[str] = Counter()
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._timestamp_columns = {
            table: {name for name, kind in column_types(table).items() if kind == "TIMESTAMP"} for table in TABLES
        }
        # A database already built by these very statements (its user_version says so) is
        # only read: no write transaction at every process start, which would wait on a CLI
        # or another process holding the write lock.
        fingerprint = _schema_fingerprint()
        with self._connection() as connection:
            built = connection.execute("PRAGMA user_version").fetchone()[0] == fingerprint
        if not built:
            with self._transaction() as connection:
                for table in TABLES:
                    connection.execute(_create_table_sql(table))
                self.counters["schema_changes"] += _upgrade(connection)
                for statement in INDEXES:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {fingerprint}")  # committed with the schema

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if self._trace is not None:
            connection.set_trace_callback(self._trace)
        return connection

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection, this thread's alone until the block ends."""
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = self._open()
        try:
            yield connection
        finally:
            if connection.in_transaction:  # a failed ROLLBACK: never hand out a connection mid-transaction
                connection.close()
            else:
                self._idle.put(connection)

    @contextmanager
    def _transaction(self, *, counted_as: str = "jobs") -> Iterator[sqlite3.Connection]:
        self.counters[counted_as] += 1
        check = key_check_to_carry()
        with self._write_lock, self._connection() as connection:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable() from exc
            try:
                if check is not None:
                    self._answer_key_check(connection, check)  # a refused key rolls back before any write
                yield connection
            except sqlite3.Error as exc:
                connection.execute("ROLLBACK")
                raise StoreUnavailable() from exc
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise StoreUnavailable() from exc

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        self.counters["jobs"] += 1
        check = key_check_to_carry()
        try:
            with self._connection() as connection:
                if check is not None:
                    self._answer_key_check(connection, check)  # nothing is read for a refused key
                return connection.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable() from exc

    @staticmethod
    def _answer_key_check(connection: sqlite3.Connection, check: KeyCheck) -> None:
        """The pending API-key check, answered in the same round trip as the statement it rides on."""
        found = connection.execute(
            f"SELECT 1 FROM {API_KEYS_TABLE} WHERE key_id = ? AND key_hash = ? AND org_slug = ? AND is_admin = ? "
            "AND revoked_at IS NULL",
            (check.key_id, check.key_hash, check.org_slug, int(check.is_admin)),
        ).fetchone()
        check.confirmed = found is not None
        if not check.confirmed:
            raise Unauthenticated("Invalid API key")

    def _to_sql(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        converted = dict(row)
        for column in self._timestamp_columns[table]:
            if converted.get(column) is not None:
                converted[column] = timestamp_text(converted[column])
        return converted

    def _from_sql(self, table: str, row: sqlite3.Row | dict[str, Any], prefix: str = "") -> dict[str, Any]:
        values = {name: row[prefix + name] for name in column_names(table)}
        for column in self._timestamp_columns[table]:
            if values.get(column) is not None:
                values[column] = datetime.fromisoformat(values[column])
        return values

    def _insert(self, connection: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        names = column_names(table)
        values = self._to_sql(table, row)
        placeholders = ", ".join(f":{name}" for name in names)
        connection.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders})", values)

    def _insert_if_absent(self, connection: sqlite3.Connection, table: str, row: dict[str, Any]) -> bool:
        """INSERT unless a unique index already holds the key; True if the row went in."""
        names = column_names(table)
        placeholders = ", ".join(f":{name}" for name in names)
        cursor = connection.execute(
            f"INSERT OR IGNORE INTO {table} ({', '.join(names)}) VALUES ({placeholders})", self._to_sql(table, row)
        )
        return cursor.rowcount == 1

    def _update_integration(
        self, connection: sqlite3.Connection, integration: Integration, condition: str, parameters: dict[str, Any]
    ) -> bool:
        values = self._to_sql(INTEGRATIONS_TABLE, rows.integration_to_row(integration))
        assignments = ", ".join(f"{name} = :{name}" for name in MUTABLE_INTEGRATION_COLUMNS)
        cursor = connection.execute(
            f"UPDATE {INTEGRATIONS_TABLE} SET {assignments} WHERE integration_id = :integration_id AND {condition}",
            {**values, **parameters},
        )
        if cursor.rowcount != 1:
            return False
        # org_credentials.expires_at is the spec's copy of the expiry; keep it equal.
        connection.execute(
            f"UPDATE {CREDENTIALS_TABLE} SET expires_at = :expires_at, updated_at = :updated_at "
            f"WHERE credential_id = :credential_id AND expires_at IS NOT :expires_at AND {NOT_OAUTH}",
            values,
        )
        return True

    def _integration_columns(self, alias: str) -> str:
        return ", ".join(f"{alias}.{name} AS i_{name}" for name in column_names(INTEGRATIONS_TABLE))

    def _credential_columns(self, alias: str) -> str:
        return ", ".join(f"{alias}.{name} AS c_{name}" for name in column_names(CREDENTIALS_TABLE))

    def _pair(self, row: sqlite3.Row) -> tuple[Integration, StoredCredential]:
        integration = rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, row, "i_"))
        credential = rows.credential_from_row(self._from_sql(CREDENTIALS_TABLE, row, "c_"))
        return integration, credential
