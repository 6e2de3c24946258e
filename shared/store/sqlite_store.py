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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain.errors import StoreUnavailable, Unauthenticated
from shared.domain.lifecycle import status_after_settings_change
from shared.domain.models import (
    Alert,
    ApiKeyRecord,
    AuditEvent,
    Integration,
    OAuthState,
    SettingsChange,
    StoredCredential,
    SubscriptionToggle,
    Webhook,
    utc_now,
)
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
from shared.store import KeyCheck, key_check_to_carry, rows

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


class _DuplicateIntegration(Exception):
    """An integration for this org+provider exists (rolled back, reported as False)."""


def _timestamp_text(value: datetime) -> str:
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


class SqliteStore:
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

    # --- plumbing -------------------------------------------------------------------

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
                converted[column] = _timestamp_text(converted[column])
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

    # --- integrations + credentials ------------------------------------------------------

    def create_integration(self, integration: Integration, credential: StoredCredential, audit: AuditEvent) -> bool:
        try:
            with self._transaction() as connection:
                try:
                    self._insert(connection, INTEGRATIONS_TABLE, rows.integration_to_row(integration))
                except sqlite3.IntegrityError as exc:
                    # Only the unique (org_slug, provider) index can refuse this insert.
                    raise _DuplicateIntegration() from exc
                self._insert(connection, CREDENTIALS_TABLE, rows.credential_to_row(credential))
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        except _DuplicateIntegration:
            return False
        return True

    def get_integration(self, org_slug: str, provider: str) -> Integration | None:
        found = self._query(
            f"SELECT * FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
        )
        return rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, found[0])) if found else None

    def get_integration_with_credential(
        self, org_slug: str, provider: str
    ) -> tuple[Integration, StoredCredential] | None:
        found = self._query(
            f"SELECT {self._integration_columns('i')}, {self._credential_columns('c')} "
            f"FROM {INTEGRATIONS_TABLE} i JOIN {CREDENTIALS_TABLE} c ON c.credential_id = i.credential_id "
            "WHERE i.org_slug = ? AND i.provider = ?",
            (org_slug, provider),
        )
        return self._pair(found[0]) if found else None

    def list_integrations(self, org_slug: str) -> list[Integration]:
        found = self._query(f"SELECT * FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? ORDER BY provider", (org_slug,))
        return [rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, row)) for row in found]

    def save_integration(self, integration: Integration, audit: AuditEvent, *, expected_updated_at: datetime) -> bool:
        with self._transaction() as connection:
            saved = self._update_integration(
                connection, integration, "updated_at = :expected", {"expected": _timestamp_text(expected_updated_at)}
            )
            if saved:
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return saved

    def update_settings(
        self, org_slug: str, provider: str, change: SettingsChange, audit: AuditEvent
    ) -> Integration | None:
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            ).fetchall()
            if not found:
                return None
            integration = rows.integration_from_row(self._from_sql(INTEGRATIONS_TABLE, found[0]))
            previous_updated_at = integration.updated_at
            config_changed = change.config is not None and change.config != integration.config
            integration.status = status_after_settings_change(
                integration.status, config_changed=config_changed, enabled=change.enabled
            )
            if change.config is not None:
                integration.config = change.config
            if change.clear_expires_at:
                integration.expires_at = None
            elif change.expires_at is not None:
                integration.expires_at = change.expires_at
            if change.clear_expires_at or change.expires_at is not None:
                integration.expiry_alert_window = None  # a new expiry gets its warnings anew
            integration.updated_at = audit.created_at
            self._update_integration(
                connection, integration, "updated_at = :expected", {"expected": _timestamp_text(previous_updated_at)}
            )
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return integration

    def replace_credential(
        self,
        integration: Integration,
        credential: StoredCredential,
        audit: AuditEvent,
        *,
        expected_credential_id: str,
        expected_updated_at: datetime,
    ) -> bool:
        with self._transaction() as connection:
            saved = self._update_integration(
                connection,
                integration,
                "credential_id = :expected AND updated_at = :expected_updated_at",
                {"expected": expected_credential_id, "expected_updated_at": _timestamp_text(expected_updated_at)},
            )
            if saved:
                connection.execute(
                    f"DELETE FROM {CREDENTIALS_TABLE} WHERE credential_id = ?", (expected_credential_id,)
                )
                self._insert(connection, CREDENTIALS_TABLE, rows.credential_to_row(credential))
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return saved

    def delete_integration(self, org_slug: str, provider: str, audit: AuditEvent) -> bool:
        with self._transaction() as connection:
            fingerprints = connection.execute(
                f"SELECT fingerprint FROM {CREDENTIALS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            ).fetchall()
            if fingerprints:
                audit.credential_fingerprint = fingerprints[0]["fingerprint"]
            connection.execute(
                f"DELETE FROM {CREDENTIALS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            )
            deleted = connection.execute(
                f"DELETE FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", (org_slug, provider)
            ).rowcount
            if deleted:
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
        return bool(deleted)

    def record_audit(self, audit: AuditEvent) -> None:
        with self._transaction() as connection:
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))

    def append_audit(self, audit: AuditEvent) -> None:
        with self._transaction(counted_as="appends") as connection:
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))

    def list_audit(self, org_slug: str, provider: str | None = None, limit: int = 100) -> list[AuditEvent]:
        sql = f"SELECT * FROM {AUDIT_TABLE} WHERE org_slug = ?"
        parameters: list[Any] = [org_slug]
        if provider is not None:
            sql += " AND provider = ?"
            parameters.append(provider)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        parameters.append(limit)
        return [rows.audit_from_row(self._from_sql(AUDIT_TABLE, row)) for row in self._query(sql, parameters)]

    # --- bulk import -----------------------------------------------------------------------

    def import_integrations(
        self,
        entries: Sequence[tuple[Integration, StoredCredential, AuditEvent]],
        audits: Sequence[AuditEvent] = (),
    ) -> set[str]:
        if not entries and not audits:
            return set()
        created: set[str] = set()
        with self._transaction() as connection:
            for integration, credential, audit in entries:
                # The unique (org_slug, provider) index decides, as for one setup.
                if not self._insert_if_absent(connection, INTEGRATIONS_TABLE, rows.integration_to_row(integration)):
                    continue
                self._insert(connection, CREDENTIALS_TABLE, rows.credential_to_row(credential))
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
                created.add(integration.integration_id)
            for refused in audits:
                self._insert(connection, AUDIT_TABLE, rows.audit_to_row(refused))
        return created

    # --- key rotation ----------------------------------------------------------------------

    def count_credentials_by_key_version(self) -> dict[str, int]:
        found = self._query(f"SELECT key_version, COUNT(*) AS n FROM {CREDENTIALS_TABLE} GROUP BY key_version")
        return {str(row["key_version"]): int(row["n"]) for row in found}

    def list_credentials_for_rewrap(
        self, *, primary_version: str, after_credential_id: str | None, limit: int
    ) -> list[StoredCredential]:
        found = self._query(
            f"SELECT * FROM {CREDENTIALS_TABLE} WHERE key_version IS NOT ? AND (? IS NULL OR credential_id > ?) "
            "ORDER BY credential_id LIMIT ?",
            (primary_version, after_credential_id, after_credential_id, limit),
        )
        return [rows.credential_from_row(self._from_sql(CREDENTIALS_TABLE, row)) for row in found]

    def save_rewrapped_credentials(
        self, rewrapped: Sequence[tuple[StoredCredential, StoredCredential, AuditEvent]]
    ) -> set[str]:
        if not rewrapped:
            return set()
        written: set[str] = set()
        with self._transaction() as connection:
            for old, new, audit in rewrapped:
                cursor = connection.execute(
                    f"UPDATE {CREDENTIALS_TABLE} SET encrypted_value = ?, key_version = ?, updated_at = ? "
                    "WHERE credential_id = ? AND key_version = ? AND updated_at = ?",
                    (
                        new.encrypted_value,
                        new.key_version,
                        _timestamp_text(new.updated_at),
                        old.credential_id,
                        old.key_version,
                        _timestamp_text(old.updated_at),
                    ),
                )
                if cursor.rowcount == 1:
                    self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
                    written.add(old.credential_id)
        return written

    # --- revalidation ----------------------------------------------------------------------

    def list_integrations_for_revalidation(
        self, *, checked_before: datetime, limit: int, after: tuple[datetime | None, str] | None = None
    ) -> list[tuple[Integration, StoredCredential]]:
        # Two index ranges on ix_integration_due, so a page costs its own rows wherever it starts:
        # the never-checked rows (last_checked_at IS NULL) by id past the cursor, then the checked
        # ones from the cursor's (last_checked_at, id) on. A ranged row-value comparison would not
        # use the index, and NULLs compare to nothing.
        in_never_checked = after is None or after[0] is None
        after_id = "" if after is None else after[1]
        after_checked = "" if after is None or after[0] is None else _timestamp_text(after[0])
        pair = f"{self._integration_columns('i')}, {self._credential_columns('c')}"
        join = f"FROM {INTEGRATIONS_TABLE} i JOIN {CREDENTIALS_TABLE} c ON c.credential_id = i.credential_id"
        never_checked = (
            f"SELECT 0 AS phase, {pair} {join} WHERE ? AND i.last_checked_at IS NULL AND i.integration_id > ? "
            "AND i.status != 'disabled' ORDER BY i.integration_id LIMIT ?"
        )
        checked = (
            f"SELECT 1 AS phase, {pair} {join} WHERE i.last_checked_at >= ? AND i.last_checked_at < ? "
            "AND (i.last_checked_at > ? OR i.integration_id > ?) AND i.status != 'disabled' "
            "ORDER BY i.last_checked_at, i.integration_id LIMIT ?"
        )
        found = self._query(
            f"SELECT * FROM ({never_checked}) UNION ALL SELECT * FROM ({checked}) "
            "ORDER BY phase, i_last_checked_at, i_integration_id LIMIT ?",
            (
                int(in_never_checked),
                after_id,
                limit,
                after_checked,
                _timestamp_text(checked_before),
                after_checked,
                "" if in_never_checked else after_id,
                limit,
                limit,
            ),
        )
        return [self._pair(row) for row in found]

    def save_revalidation_results(
        self, results: Sequence[tuple[Integration, AuditEvent, datetime]], alerts: Sequence[Alert] = ()
    ) -> tuple[int, list[str]]:
        if not results:
            return 0, []
        written_ids = set()
        inserted: list[str] = []
        with self._transaction() as connection:
            for integration, audit, expected_updated_at in results:
                if self._update_integration(
                    connection,
                    integration,
                    "updated_at = :expected",
                    {"expected": _timestamp_text(expected_updated_at)},
                ):
                    self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
                    written_ids.add(integration.integration_id)
            for alert in alerts:
                if alert.integration_id not in written_ids:
                    continue
                values = self._to_sql(ALERTS_TABLE, rows.alert_to_row(alert))
                names = column_names(ALERTS_TABLE)
                cursor = connection.execute(
                    f"INSERT OR IGNORE INTO {ALERTS_TABLE} ({', '.join(names)}) "
                    f"VALUES ({', '.join(':' + name for name in names)})",
                    values,
                )
                if cursor.rowcount == 1:
                    inserted.append(alert.alert_id)
        return len(written_ids), inserted

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
                        None if alert.delivered_at is None else _timestamp_text(alert.delivered_at),
                        alert.alert_id,
                    ),
                )

    def list_alerts(self, org_slug: str, limit: int = 100) -> list[Alert]:
        found = self._query(
            f"SELECT * FROM {ALERTS_TABLE} WHERE org_slug = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (org_slug, limit),
        )
        return [rows.alert_from_row(self._from_sql(ALERTS_TABLE, row)) for row in found]

    # --- OAuth -------------------------------------------------------------------------------------

    def create_oauth_state(self, state: OAuthState) -> None:
        with self._transaction() as connection:
            # Flows nobody finished go a day after they expired (their completion code too; held tokens with them).
            connection.execute(
                f"DELETE FROM {OAUTH_STATES_TABLE} "
                "WHERE MAX(expires_at, COALESCE(completion_expires_at, expires_at)) < ?",
                (_timestamp_text(state.created_at - timedelta(days=1)),),
            )
            self._insert(connection, OAUTH_STATES_TABLE, rows.oauth_state_to_row(state))

    def consume_oauth_state(self, state_hash: str, now: datetime) -> tuple[str, OAuthState | None]:
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {OAUTH_STATES_TABLE} WHERE state_hash = ?", (state_hash,)
            ).fetchall()
            if not found:
                return "unknown", None
            state = rows.oauth_state_from_row(self._from_sql(OAUTH_STATES_TABLE, found[0]))
            if state.used_at is not None:
                return "used", state
            if state.expires_at <= now:
                return "expired", state
            connection.execute(
                f"UPDATE {OAUTH_STATES_TABLE} SET used_at = ? WHERE state_hash = ? AND used_at IS NULL",
                (_timestamp_text(now), state_hash),
            )
            state.used_at = now
            return "consumed", state

    def hold_oauth_tokens(
        self,
        state_hash: str,
        *,
        encrypted_tokens: bytes,
        tokens_key_version: str,
        completion_code_hash: str,
        completion_expires_at: datetime,
    ) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {OAUTH_STATES_TABLE} SET encrypted_tokens = ?, tokens_key_version = ?, "
                "completion_code_hash = ?, completion_expires_at = ? "
                "WHERE state_hash = ? AND used_at IS NOT NULL AND completion_code_hash IS NULL",
                (
                    encrypted_tokens,
                    tokens_key_version,
                    completion_code_hash,
                    _timestamp_text(completion_expires_at),
                    state_hash,
                ),
            )
            return cursor.rowcount == 1

    def complete_oauth_flow(
        self, completion_code_hash: str, org_slug: str, provider: str, now: datetime
    ) -> tuple[str, OAuthState | None]:
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {OAUTH_STATES_TABLE} WHERE completion_code_hash = ? AND org_slug = ? AND provider = ?",
                (completion_code_hash, org_slug, provider),
            ).fetchall()
            if not found:
                return "unknown", None
            flow = rows.oauth_state_from_row(self._from_sql(OAUTH_STATES_TABLE, found[0]))
            if flow.completed_at is not None:
                return "used", flow
            if flow.completion_expires_at is None or flow.completion_expires_at <= now:
                return "expired", flow
            connection.execute(
                f"UPDATE {OAUTH_STATES_TABLE} SET completed_at = ?, encrypted_tokens = NULL "
                "WHERE completion_code_hash = ? AND completed_at IS NULL",
                (_timestamp_text(now), completion_code_hash),
            )
            flow.completed_at = now
            return "completed", flow

    def claim_credential_refresh(
        self,
        credential_id: str,
        *,
        expected_updated_at: datetime,
        lease_id: str,
        lease_expires_at: datetime,
        version: datetime,
    ) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {CREDENTIALS_TABLE} SET refresh_lease_id = ?, refresh_lease_expires_at = ?, updated_at = ? "
                "WHERE credential_id = ? AND updated_at = ?",
                (
                    lease_id,
                    _timestamp_text(lease_expires_at),
                    _timestamp_text(version),
                    credential_id,
                    _timestamp_text(expected_updated_at),
                ),
            )
        return cursor.rowcount == 1

    def finish_credential_refresh(self, credential: StoredCredential, *, lease_id: str) -> bool:
        values = self._to_sql(CREDENTIALS_TABLE, rows.credential_to_row(credential))
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {CREDENTIALS_TABLE} SET encrypted_value = :encrypted_value, key_version = :key_version, "
                "fingerprint = :fingerprint, expires_at = :expires_at, updated_at = :updated_at, "
                "refresh_error = :refresh_error, refresh_lease_id = NULL, refresh_lease_expires_at = NULL "
                "WHERE credential_id = :credential_id AND refresh_lease_id = :lease_id",
                {**values, "lease_id": lease_id},
            )
        return cursor.rowcount == 1

    # --- org webhooks ------------------------------------------------------------------------------

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

    # --- external IDs ------------------------------------------------------------------------------

    def external_id(self, org_slug: str, provider: str, candidate: str) -> str:
        with self._transaction() as connection:
            connection.execute(
                f"INSERT INTO {EXTERNAL_IDS_TABLE} (org_slug, provider, external_id, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (org_slug, provider) DO NOTHING",
                (org_slug, provider, candidate, _timestamp_text(utc_now())),
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

    # --- SaaS subscription toggles --------------------------------------------------------------

    def list_subscription_toggles(self, org_slug: str) -> tuple[list[SubscriptionToggle], dict[str, str]]:
        toggle_columns = column_names(SAAS_TOGGLES_TABLE)
        # Same columns in the same order: integration rows carry only provider and status.
        blanks = ", ".join(name if name == "provider" else f"NULL AS {name}" for name in toggle_columns)
        found = self._query(
            f"SELECT 'toggle' AS kind, {', '.join(toggle_columns)}, NULL AS status "
            f"FROM {SAAS_TOGGLES_TABLE} WHERE org_slug = ? "
            f"UNION ALL SELECT 'integration' AS kind, {blanks}, status "
            f"FROM {INTEGRATIONS_TABLE} WHERE org_slug = ?",
            (org_slug, org_slug),
        )
        toggles = [
            rows.toggle_from_row(self._from_sql(SAAS_TOGGLES_TABLE, row)) for row in found if row["kind"] == "toggle"
        ]
        statuses = {row["provider"]: row["status"] for row in found if row["kind"] == "integration"}
        return toggles, statuses

    def set_subscription_toggle(
        self, toggle: SubscriptionToggle, audit: AuditEvent
    ) -> tuple[SubscriptionToggle, bool, str | None]:
        key = (toggle.org_slug, toggle.provider)
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {SAAS_TOGGLES_TABLE} WHERE org_slug = ? AND provider = ?", key
            ).fetchall()
            current = rows.toggle_from_row(self._from_sql(SAAS_TOGGLES_TABLE, found[0])) if found else None
            changed = current is None or current.enabled != toggle.enabled
            if current is None:
                self._insert(connection, SAAS_TOGGLES_TABLE, rows.toggle_to_row(toggle))
            elif changed:
                connection.execute(
                    f"UPDATE {SAAS_TOGGLES_TABLE} SET enabled = :enabled, updated_at = :updated_at, "
                    "updated_by = :updated_by, updated_by_key_id = :updated_by_key_id "
                    "WHERE org_slug = :org_slug AND provider = :provider",
                    self._to_sql(SAAS_TOGGLES_TABLE, rows.toggle_to_row(toggle)),
                )
                toggle.created_at, toggle.created_by = current.created_at, current.created_by
            else:
                toggle = current
                audit.detail = "unchanged"
            self._insert(connection, AUDIT_TABLE, rows.audit_to_row(audit))
            status = connection.execute(
                f"SELECT status FROM {INTEGRATIONS_TABLE} WHERE org_slug = ? AND provider = ?", key
            ).fetchall()
        return toggle, changed, status[0]["status"] if status else None

    # --- org API keys ------------------------------------------------------------------------------

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
                (_timestamp_text(utc_now()), key_id),
            )
        return cursor.rowcount == 1
