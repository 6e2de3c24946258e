"""BigQuery adapter of the store port: production.

Each port call is exactly one BigQuery job (``counters["jobs"]`` counts every
job sent, retries included; ``counters["short_queries"]`` those BigQuery
answered without creating a job), which is what the budget in
docs/architecture.md asks: setup = 1 job (one multi-statement transaction
with the audit row), validate = 1 read + 1 write, list/get/update/delete = 1,
a revalidation page = 1 read + 1 write.

A pending API-key check rides on the first job of a request (no job of its
own): a read becomes one guarded SELECT that returns the key's verdict and,
only for a good key, the rows; a write script (or a single DML statement,
which becomes one) starts with a statement that raises before anything is
written when the key is not on file, revoked, or not of that org and role.

BigQuery has no unique constraints, so ``create_integration`` lets a MERGE
decide: MERGE is mutating DML, and two concurrent transactions that both
MERGE into ``org_integrations`` cannot both commit - the loser is aborted
("Transaction is aborted due to concurrent update", "Could not serialize
access ...") and retried here with backoff, and then finds the winner's row.

Every value is a query parameter. Ciphertext travels as a base64 STRING and
is written with ``FROM_BASE64`` (the emulator mangles BYTES parameters; this
form is also correct on BigQuery). Jobs go through ``bigquery_jobs``
(BigQuery's REST API through ``shared.egress.google_rest`` and the service's HTTP
client, not the generated client library, whose import alone outweighed a cold
start: docs/design/cold-start-rest-adapters.md); google-auth is imported only
when the first job is sent, so local mode never loads it.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.common.retries import RetryPolicy, attempt
from shared.domain.errors import StoreUnavailable, Unauthenticated
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
from shared.egress.google_rest import GoogleApiError, failure_text, is_connection_failure
from shared.store import KeyCheck, key_check_to_carry, rows
from shared.store.bigquery_jobs import (
    BigQueryJobs,
    JobFailed,
    Parameter,
    QueryResult,
    array,
    is_single_statement,
    scalar,
    struct_array,
)

if TYPE_CHECKING:
    from shared.common.config import Settings

logger = logging.getLogger("integrations.store.bigquery")

Result = TypeVar("Result")

# Messages of the errors BigQuery raises when concurrent transactions or DML
# collide, or its DML queue is full: all worth a retry after a pause.
RETRYABLE_MESSAGES = (
    "could not serialize access",
    "transaction is aborted due to concurrent update",
    "concurrent update",
    "too many dml statements outstanding",
    "exceeded rate limits",
)

# Sends of one job at most, whatever fails (a 503, a dropped connection, a lost race);
# docs/design/bigquery-dml-limits.md says why.
JOB_ATTEMPTS = 6


class _KeyRefused(Exception):
    """A guarded job refused the request's API key (its first statement raised ``KEY_REFUSED``)."""


def _is_conflict(error: Exception | None) -> bool:
    """A lost transaction race or a full DML queue: BigQuery says so with 400 (or 403) and tells
    them apart only by the message."""
    return (
        isinstance(error, GoogleApiError)
        and error.status in (400, 403)
        and any(message in error.message.lower() for message in RETRYABLE_MESSAGES)
    )


# Columns renamed since the first schema, per table: (old name, new name).
MIGRATED_RENAMES = {
    CREDENTIALS_TABLE: (("encrypted_credential", "encrypted_value"),),
    INTEGRATIONS_TABLE: (("validation_details", "details"),),
}

MUTABLE_INTEGRATION_COLUMNS = [
    name
    for name in column_names(INTEGRATIONS_TABLE)
    if name not in ("integration_id", "org_slug", "provider", "created_at")
]

# The message a guarded script raises for a refused API key (it reaches us in the job's error).
KEY_REFUSED = "integrations: API key refused"
# The revalidation pages' keyset stands in this instant for "never checked" (before any real check).
NEVER_CHECKED_AT = datetime(1970, 1, 1, tzinfo=UTC)
NEVER_CHECKED = "TIMESTAMP '1970-01-01 00:00:00+00'"
# Columns a guarded read adds in front of the statement's own.
GUARD_COLUMNS = ("guard_key_ok", "guard_row")


class BigQueryStore:
    def __init__(
        self,
        jobs: BigQueryJobs,
        dataset: str,
        *,
        max_attempts: int = JOB_ATTEMPTS,
        backoff_base_seconds: float = 0.5,
        backoff_cap_seconds: float = 8.0,
    ) -> None:
        self.jobs = jobs
        self.project = jobs.project
        self.dataset = dataset
        self.max_attempts = max_attempts
        self.retry_policy = RetryPolicy(max_attempts, backoff_base_seconds, backoff_cap_seconds)
        self.counters: Counter[str] = Counter()
        self._types = {table: column_types(table) for table in TABLES}

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryStore:
        assert settings.gcp_project is not None
        # With an endpoint (the emulator on loopback) no Google credentials exist or are needed.
        jobs = BigQueryJobs(
            settings.gcp_project, api_endpoint=settings.bigquery_api_endpoint, location=settings.bigquery_location
        )
        return cls(jobs, settings.bigquery_dataset)

    # --- plumbing -------------------------------------------------------------------------

    def _table(self, table: str) -> str:
        return f"`{self.project}.{self.dataset}.{table}`"

    @staticmethod
    def _parameter_kind(kind: str) -> str:
        # BYTES travel as base64 text (FROM_BASE64 in the statement; the emulator
        # mangles BYTES parameters), JSON as text (PARSE_JSON in the statement).
        return "STRING" if kind in ("BYTES", "JSON") else kind

    @staticmethod
    def _parameter_value(kind: str, value: Any) -> Any:
        if kind == "BYTES" and value is not None:
            return base64.b64encode(value).decode()
        return value

    def _parameter(self, name: str, kind: str, value: Any) -> Parameter:
        return scalar(name, self._parameter_kind(kind), self._parameter_value(kind, value))

    @staticmethod
    def _value(kind: str, reference: str) -> str:
        """SQL for a value passed as a parameter or struct field, converted to its column type."""
        if kind == "BYTES":
            return f"FROM_BASE64({reference})"
        if kind == "JSON":
            return f"PARSE_JSON({reference})"
        return reference

    def _row_parameters(self, prefix: str, table: str, row: dict[str, Any]) -> list[Any]:
        return [self._parameter(prefix + name, kind, row[name]) for name, kind in self._types[table].items()]

    def _values(self, prefix: str, table: str) -> str:
        return ", ".join(self._value(kind, f"@{prefix}{name}") for name, kind in self._types[table].items())

    def _columns(self, table: str) -> str:
        return ", ".join(column_names(table))

    def _insert_sql(self, prefix: str, table: str) -> str:
        return f"INSERT INTO {self._table(table)} ({self._columns(table)}) VALUES ({self._values(prefix, table)})"

    def _run(
        self, sql: str, parameters: Sequence[Parameter] = (), *, order_by: str | None = None
    ) -> list[dict[str, Any]]:
        """One job, retried on transaction conflicts and transient errors; its rows.

        ``order_by`` repeats a SELECT's ORDER BY in terms of its output columns
        (a guarded read re-sorts the rows it wraps; see ``_guarded``).
        """
        return self._job(sql, parameters, order_by=order_by).rows

    def _job(self, sql: str, parameters: Sequence[Parameter] = (), *, order_by: str | None = None) -> QueryResult:
        """One job, sent at most ``max_attempts`` times in all (``_retrying``): again with the same
        ``requestId`` after a transient status or a failed transport (BigQuery answers the job that
        send may have started), with a new one after a lost transaction race or a job that ran and
        failed. Its result, or ``StoreUnavailable``.

        A pending API-key check rides on it (``_guarded``): its verdict is
        recorded, and a refused key raises ``Unauthenticated``."""
        check = key_check_to_carry()
        guarded_read = False
        if check is not None:
            sql, parameters, guarded_read = self._guarded(sql, parameters, check, order_by)
        request_id = [str(uuid.uuid4())]

        def new_job() -> None:
            request_id[0] = str(uuid.uuid4())

        def send() -> QueryResult:
            try:
                return self.jobs.query(sql, parameters, request_id=request_id[0])
            except GoogleApiError as error:
                if check is not None and KEY_REFUSED in error.message:
                    raise _KeyRefused() from None  # an answer, not a failure: neither retried nor logged
                raise

        try:
            result = self._retrying(send, counted_as="jobs", new_job=new_job)
        except _KeyRefused:
            assert check is not None
            check.confirmed = False
            raise Unauthenticated("Invalid API key") from None
        if result.job_id is None:
            self.counters["short_queries"] += 1  # BigQuery answered without creating a job
        return result if check is None else self._answer_key_check(result, check, guarded_read)

    def _retrying(
        self, send: Callable[[], Result], *, counted_as: str, new_job: Callable[[], None] | None = None
    ) -> Result:
        """``send`` (a job, or a streaming insert), at most ``max_attempts`` times in all, by the service's
        one retry policy (``shared.common.retries``; nothing below retries): again after a transaction conflict,
        a transient status or a failed transport. ``new_job`` is called before a resend that must not be
        taken for the earlier send (a lost race, a job that ran and failed)."""
        from google.auth.exceptions import GoogleAuthError

        def once(_: int) -> Result:
            self.counters[counted_as] += 1
            return send()

        def retryable(_: Result | None, error: Exception | None) -> bool:
            if isinstance(error, GoogleApiError) and error.transient:
                self.counters["transient_retries"] += 1
            elif _is_conflict(error):
                self.counters["conflict_retries"] += 1
            elif error is None or not is_connection_failure(error):
                return False
            if new_job is not None and (isinstance(error, JobFailed) or _is_conflict(error)):
                new_job()
            return True

        tried = attempt(once, policy=self.retry_policy, retryable=retryable)
        error = tried.error
        if error is None:
            return cast(Result, tried.result)
        if isinstance(error, GoogleApiError):
            logger.error("bigquery job failed", extra={"error": failure_text(error), "attempts": tried.attempts})
        elif isinstance(error, GoogleAuthError | OSError):
            logger.error("bigquery unavailable", extra={"error": type(error).__name__, "attempts": tried.attempts})
        else:
            raise error  # a bug, not an outage: let it show
        raise StoreUnavailable() from error

    # --- the API-key check that rides on a request's first job ---------------------------------------

    def _key_on_file(self) -> str:
        """SQL true when the checked key is on file with its hash, org and role, and not revoked."""
        return (
            f"EXISTS (SELECT 1 FROM {self._table(API_KEYS_TABLE)} WHERE key_id = @guard_key_id "
            "AND key_hash = @guard_key_hash AND org_slug = @guard_org_slug AND is_admin = @guard_is_admin "
            "AND revoked_at IS NULL)"
        )

    def _guarded(
        self, sql: str, parameters: Sequence[Parameter], check: KeyCheck, order_by: str | None
    ) -> tuple[str, list[Parameter], bool]:
        """``sql`` made to carry ``check``: (statement, parameters, whether it is a guarded read).

        A single SELECT stays one statement (short-query mode still applies):
        one row for a refused key (``guard_key_ok`` false, no data), else the
        statement's rows behind ``guard_key_ok``/``guard_row`` (one all-NULL
        row when there are none). The join does not keep the inner order, so
        ``order_by`` sorts again. Anything else becomes a script whose first
        statement after its DECLAREs raises ``KEY_REFUSED``.
        """
        guarded = [
            *parameters,
            scalar("guard_key_id", "STRING", check.key_id),
            scalar("guard_key_hash", "STRING", check.key_hash),
            scalar("guard_org_slug", "STRING", check.org_slug),
            scalar("guard_is_admin", "BOOL", check.is_admin),
        ]
        statement = sql.strip().rstrip(";").strip()
        if is_single_statement(statement) and statement.upper().startswith("SELECT"):
            if order_by is None and "ORDER BY" in " ".join(statement.upper().split()):
                raise ValueError("an ordered read must say its order_by, or a guarded read would lose the order")
            terms = [f"answer.{term.strip()}" for term in order_by.split(",")] if order_by else []
            resort = "ORDER BY " + ", ".join(terms) if terms else ""
            wrapped = (
                "SELECT guard.key_ok AS guard_key_ok, answer.* "
                f"FROM (SELECT {self._key_on_file()} AS key_ok) AS guard "
                f"LEFT JOIN (SELECT TRUE AS guard_row, original.* FROM ({statement}) AS original) AS answer "
                f"ON guard.key_ok {resort}"
            )
            return wrapped, guarded, True
        lines = statement.splitlines()
        declarations = 0
        while declarations < len(lines) and lines[declarations].lstrip().upper().startswith("DECLARE "):
            declarations += 1
        refuse = f"IF NOT {self._key_on_file()} THEN\n  RAISE USING MESSAGE = '{KEY_REFUSED}';\nEND IF;"
        script = "\n".join([*lines[:declarations], refuse, *lines[declarations:]]) + ";"
        return script, guarded, False

    @staticmethod
    def _answer_key_check(result: QueryResult, check: KeyCheck, guarded_read: bool) -> QueryResult:
        """Record the check's verdict; a guarded read's own rows and columns, or Unauthenticated."""
        if not guarded_read:
            check.confirmed = True  # the script's guard did not raise
            return result
        check.confirmed = bool(result.rows) and bool(result.rows[0]["guard_key_ok"])
        if not check.confirmed:
            raise Unauthenticated("Invalid API key")
        return replace(
            result,
            rows=[
                {name: value for name, value in row.items() if name not in GUARD_COLUMNS}
                for row in result.rows
                if row["guard_row"]
            ],
            columns=[column for column in result.columns if column[0] not in GUARD_COLUMNS],
        )

    def _integration(self, row: dict[str, Any]) -> Integration:
        return rows.integration_from_row({name: row[name] for name in column_names(INTEGRATIONS_TABLE)})

    def _credential(self, row: dict[str, Any]) -> StoredCredential:
        return rows.credential_from_row({name: row[name] for name in column_names(CREDENTIALS_TABLE)})

    def _scalar(self, name: str, value: Any) -> Parameter:
        kind = {bool: "BOOL", int: "INT64", str: "STRING", datetime: "TIMESTAMP"}[type(value)]
        return scalar(name, kind, value)

    def _integration_update_sql(self, prefix: str, condition: str) -> str:
        kinds = self._types[INTEGRATIONS_TABLE]
        assignments = ", ".join(
            f"{name} = {self._value(kinds[name], f'@{prefix}{name}')}" for name in MUTABLE_INTEGRATION_COLUMNS
        )
        return (
            f"UPDATE {self._table(INTEGRATIONS_TABLE)} SET {assignments} "
            f"WHERE integration_id = @{prefix}integration_id AND {condition}"
        )

    def _credential_expiry_sql(self, prefix: str) -> str:
        """Keep org_credentials.expires_at (the spec's copy of the expiry) equal to the integration's."""
        return (
            f"UPDATE {self._table(CREDENTIALS_TABLE)} SET expires_at = @{prefix}expires_at, "
            f"updated_at = @{prefix}updated_at WHERE credential_id = @{prefix}credential_id "
            f"AND expires_at IS DISTINCT FROM @{prefix}expires_at AND credential_type != 'oauth'"
        )

    def _conditional_integration_write(self, condition: str, statements: Sequence[str], parameters: list[Any]) -> bool:
        """Run ``statements`` if the integration row ``@i_integration_id`` still meets ``condition``."""
        return self._conditional_write(
            INTEGRATIONS_TABLE, f"integration_id = @i_integration_id AND {condition}", statements, parameters
        )

    def _conditional_write(self, table: str, where: str, statements: Sequence[str], parameters: list[Any]) -> bool:
        """Run ``statements`` in one transaction if a row of ``table`` still meets ``where``; whether it did.

        The check and the writes share the transaction's snapshot; a concurrent
        writer makes one of the two transactions abort, and ``_run`` retries it.
        """
        body = "\n".join(f"  {statement};" for statement in statements)
        sql = f"""
DECLARE matched BOOL DEFAULT FALSE;
BEGIN TRANSACTION;
SET matched = EXISTS (SELECT 1 FROM {self._table(table)} WHERE {where});
IF matched THEN
{body}
END IF;
COMMIT TRANSACTION;
SELECT matched;
"""
        return bool(self._run(sql, parameters)[0]["matched"])

    # --- bootstrap -------------------------------------------------------------------------------

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

    # --- integrations + credentials ----------------------------------------------------------------

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

    def _pairs_sql(self, where: str, tail: str = "") -> str:
        # Each side comes back as one whole-row STRUCT instead of 31 prefixed columns:
        # the same bytes on BigQuery, and the emulator spends per projected column
        # (a pair read took 38 ms as columns, 15 ms as two structs).
        return (
            "SELECT i AS integration, c AS credential "
            f"FROM {self._table(INTEGRATIONS_TABLE)} AS i "
            f"JOIN {self._table(CREDENTIALS_TABLE)} AS c ON c.credential_id = i.credential_id "
            f"WHERE {where} {tail}"
        )

    def _pair(self, row: dict[str, Any]) -> tuple[Integration, StoredCredential]:
        return self._integration(row["integration"]), self._credential(row["credential"])

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

    def record_audit(self, audit: AuditEvent) -> None:
        self._run(
            self._insert_sql("a_", AUDIT_TABLE), self._row_parameters("a_", AUDIT_TABLE, rows.audit_to_row(audit))
        )

    def append_audit(self, audit: AuditEvent) -> None:
        # Streamed, not DML: no job, no slot in the table's DML queue; the audit id lets
        # BigQuery drop a resent copy of the row.
        if key_check_to_carry() is not None:
            # A streaming insert cannot carry a pending API-key check: answer it first (a guarded read).
            self._run("SELECT 1 AS key_confirmed")
        row = rows.audit_to_row(audit)
        self._retrying(
            lambda: self.jobs.insert_rows(self.dataset, AUDIT_TABLE, [row], insert_ids=[audit.audit_id]),
            counted_as="appends",
        )

    def list_audit(self, org_slug: str, provider: str | None = None, limit: int = 100) -> list[AuditEvent]:
        found = self._run(
            f"SELECT * FROM {self._table(AUDIT_TABLE)} WHERE org_slug = @org_slug "
            "AND (@provider IS NULL OR provider = @provider) ORDER BY created_at DESC LIMIT @limit",
            [
                self._scalar("org_slug", org_slug),
                scalar("provider", "STRING", provider),
                self._scalar("limit", limit),
            ],
            order_by="created_at DESC",
        )
        return [rows.audit_from_row(row) for row in found]

    # --- bulk import ------------------------------------------------------------------------------

    def _converted(self, table: str, alias: str) -> str:
        """Every column of ``table`` read from struct ``alias``, converted to its column type."""
        return ", ".join(self._value(kind, f"{alias}.{name}") for name, kind in self._types[table].items())

    def import_integrations(
        self,
        entries: Sequence[tuple[Integration, StoredCredential, AuditEvent]],
        audits: Sequence[AuditEvent] = (),
    ) -> set[str]:
        """One job: a MERGE inserts the integrations no org+provider holds yet, then their credentials and audits.

        The candidates are filtered and merged inside one transaction; a
        concurrent setup of the same org+provider makes one of the two
        transactions abort (MERGE is mutating DML) and ``_run`` retries this
        one, which then leaves that entry out.
        """
        if not entries and not audits:
            return set()
        suffix = uuid.uuid4().hex[:12]
        fresh, outcome = f"fresh_{suffix}", f"import_outcome_{suffix}"
        parameters: list[Any] = []
        refused_sql = ""
        if audits:
            parameters.append(
                self._struct_array(
                    "refused_rows",
                    self._types[AUDIT_TABLE],
                    [rows.audit_to_row(audit) for audit in audits],
                    column_names(AUDIT_TABLE),
                )
            )
            refused_sql = (
                f"INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)}) "
                f"SELECT {self._converted(AUDIT_TABLE, 'refused')} FROM UNNEST(@refused_rows) AS refused;"
            )
        if not entries:
            self._run(refused_sql, parameters)
            return set()
        parameters += [
            self._struct_array(
                "integration_rows",
                self._types[INTEGRATIONS_TABLE],
                [rows.integration_to_row(integration) for integration, _, _ in entries],
                column_names(INTEGRATIONS_TABLE),
            ),
            self._struct_array(
                "credential_rows",
                self._types[CREDENTIALS_TABLE],
                [rows.credential_to_row(credential) for _, credential, _ in entries],
                column_names(CREDENTIALS_TABLE),
            ),
            self._struct_array(
                "audit_rows",
                self._types[AUDIT_TABLE],
                [rows.audit_to_row(audit) for _, _, audit in entries],
                column_names(AUDIT_TABLE),
            ),
        ]
        integrations = self._table(INTEGRATIONS_TABLE)
        sql = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {fresh} AS
SELECT candidate.* FROM UNNEST(@integration_rows) AS candidate
WHERE NOT EXISTS (
  SELECT 1 FROM {integrations} AS current
  WHERE current.org_slug = candidate.org_slug AND current.provider = candidate.provider
);
MERGE {integrations} AS existing
USING {fresh} AS wanted
ON existing.org_slug = wanted.org_slug AND existing.provider = wanted.provider
WHEN NOT MATCHED THEN
  INSERT ({self._columns(INTEGRATIONS_TABLE)}) VALUES ({self._converted(INTEGRATIONS_TABLE, "wanted")});
INSERT INTO {self._table(CREDENTIALS_TABLE)} ({self._columns(CREDENTIALS_TABLE)})
SELECT {self._converted(CREDENTIALS_TABLE, "credential")} FROM UNNEST(@credential_rows) AS credential
JOIN {fresh} AS fresh ON fresh.credential_id = credential.credential_id;
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {self._converted(AUDIT_TABLE, "audit")} FROM UNNEST(@audit_rows) AS audit
JOIN {fresh} AS fresh ON fresh.org_slug = audit.org_slug AND fresh.provider = audit.provider;
{refused_sql}
COMMIT TRANSACTION;
CREATE TEMP TABLE {outcome} AS SELECT integration_id FROM {fresh};
DROP TABLE {fresh};
SELECT integration_id FROM {outcome};
"""
        return {row["integration_id"] for row in self._run(sql, parameters)}

    # --- key rotation ------------------------------------------------------------------------------

    def count_credentials_by_key_version(self) -> dict[str, int]:
        found = self._run(
            f"SELECT key_version, COUNT(*) AS credentials FROM {self._table(CREDENTIALS_TABLE)} GROUP BY key_version"
        )
        return {str(row["key_version"]): int(row["credentials"]) for row in found}

    def list_credentials_for_rewrap(
        self, *, primary_version: str, after_credential_id: str | None, limit: int
    ) -> list[StoredCredential]:
        found = self._run(
            f"SELECT * FROM {self._table(CREDENTIALS_TABLE)} "
            "WHERE key_version IS DISTINCT FROM @primary_version "
            "AND (@after IS NULL OR credential_id > @after) ORDER BY credential_id LIMIT @limit",
            [
                self._scalar("primary_version", primary_version),
                scalar("after", "STRING", after_credential_id),
                self._scalar("limit", limit),
            ],
            order_by="credential_id",
        )
        return [self._credential(row) for row in found]

    def save_rewrapped_credentials(
        self, rewrapped: Sequence[tuple[StoredCredential, StoredCredential, AuditEvent]]
    ) -> set[str]:
        """One job: update the rows still as they were read, audit exactly those."""
        if not rewrapped:
            return set()
        suffix = uuid.uuid4().hex[:12]
        done, outcome = f"rewrapped_{suffix}", f"rewrap_outcome_{suffix}"
        kinds = dict(self._types[CREDENTIALS_TABLE], expected_key_version="STRING", expected_updated_at="TIMESTAMP")
        candidates = [
            {
                **rows.credential_to_row(new),
                "expected_key_version": old.key_version,
                "expected_updated_at": old.updated_at,
            }
            for old, new, _ in rewrapped
        ]
        audit_kinds = dict(self._types[AUDIT_TABLE], credential_id="STRING")
        audit_rows = [{**rows.audit_to_row(audit), "credential_id": old.credential_id} for old, _, audit in rewrapped]
        parameters = [
            self._struct_array(
                "candidates",
                kinds,
                candidates,
                (
                    "credential_id",
                    "encrypted_value",
                    "key_version",
                    "updated_at",
                    "expected_key_version",
                    "expected_updated_at",
                ),
            ),
            self._struct_array("audit_rows", audit_kinds, audit_rows, (*column_names(AUDIT_TABLE), "credential_id")),
        ]
        credentials = self._table(CREDENTIALS_TABLE)
        sql = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {done} AS
SELECT candidate.* FROM UNNEST(@candidates) AS candidate
WHERE EXISTS (
  SELECT 1 FROM {credentials} AS current
  WHERE current.credential_id = candidate.credential_id
    AND current.key_version = candidate.expected_key_version
    AND current.updated_at = candidate.expected_updated_at
);
UPDATE {credentials} AS target
SET encrypted_value = FROM_BASE64(done.encrypted_value), key_version = done.key_version, updated_at = done.updated_at
FROM {done} AS done
WHERE target.credential_id = done.credential_id AND target.key_version = done.expected_key_version
  AND target.updated_at = done.expected_updated_at;
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {self._converted(AUDIT_TABLE, "audit")} FROM UNNEST(@audit_rows) AS audit
JOIN {done} AS done ON done.credential_id = audit.credential_id;
COMMIT TRANSACTION;
CREATE TEMP TABLE {outcome} AS SELECT credential_id FROM {done};
DROP TABLE {done};
SELECT credential_id FROM {outcome};
"""
        return {row["credential_id"] for row in self._run(sql, parameters)}

    # --- revalidation ------------------------------------------------------------------------------

    def list_integrations_for_revalidation(
        self, *, checked_before: datetime, limit: int, after: tuple[datetime | None, str] | None = None
    ) -> list[tuple[Integration, StoredCredential]]:
        where = "i.status != 'disabled' AND (i.last_checked_at IS NULL OR i.last_checked_at < @checked_before)"
        parameters = [self._scalar("checked_before", checked_before), self._scalar("limit", limit)]
        if after is not None:
            # Past the previous page's last (last_checked_at, integration_id); never checked sorts first.
            checked = f"IFNULL(i.last_checked_at, {NEVER_CHECKED})"
            where += (
                f" AND ({checked} > @after_checked OR ({checked} = @after_checked AND i.integration_id > @after_id))"
            )
            parameters += [
                scalar("after_checked", "TIMESTAMP", after[0] or NEVER_CHECKED_AT),
                self._scalar("after_id", after[1]),
            ]
        found = self._run(
            # ASC puts NULLs (never checked) first, as IFNULL above does.
            self._pairs_sql(where, "ORDER BY i.last_checked_at, i.integration_id LIMIT @limit"),
            parameters,
            order_by="integration.last_checked_at, integration.integration_id",
        )
        return [self._pair(row) for row in found]

    def _struct_array(
        self, name: str, kinds: dict[str, str], table_rows: list[dict[str, Any]], columns: Sequence[str]
    ) -> Parameter:
        """ARRAY<STRUCT<...>> parameter: unlike arrays of scalars, struct fields may be NULL."""
        return struct_array(
            name,
            [(column, self._parameter_kind(kinds[column])) for column in columns],
            [[self._parameter_value(kinds[column], row[column]) for column in columns] for row in table_rows],
        )

    def save_revalidation_results(
        self, results: Sequence[tuple[Integration, AuditEvent, datetime]], alerts: Sequence[Alert] = ()
    ) -> tuple[int, list[str]]:
        """One job for the whole batch, passed as ARRAY<STRUCT> parameters.

        A row is written only where ``updated_at`` still equals what the run
        read, so a user's change during the run is never overwritten; audit rows
        and alerts are inserted for exactly the rows written, and an alert whose
        ``dedupe_key`` exists already is not inserted twice.
        """
        if not results:
            return 0, []
        integration_columns = ("integration_id", *MUTABLE_INTEGRATION_COLUMNS)
        batch_rows = []
        for integration, _, expected in results:
            row = rows.integration_to_row(integration)
            row["expected_updated_at"] = expected
            batch_rows.append(row)
        batch_kinds = dict(self._types[INTEGRATIONS_TABLE], expected_updated_at="TIMESTAMP")
        audit_rows = [rows.audit_to_row(audit) for _, audit, _ in results]
        parameters = [
            self._struct_array(
                "batch_rows",
                batch_kinds,
                batch_rows,
                (*integration_columns, "org_slug", "provider", "expected_updated_at"),
            ),
            self._struct_array("audit_rows", self._types[AUDIT_TABLE], audit_rows, column_names(AUDIT_TABLE)),
        ]
        # Temp tables are script-scoped on BigQuery; the emulator keeps them in
        # the dataset, so they get unique names and are dropped explicitly.
        suffix = uuid.uuid4().hex[:12]
        batch, new_alerts, outcome = f"batch_{suffix}", f"new_alerts_{suffix}", f"outcome_{suffix}"
        alert_sql = alert_outcome = drop_alerts = ""
        if alerts:
            parameters.append(
                self._struct_array(
                    "alert_rows",
                    self._types[ALERTS_TABLE],
                    [rows.alert_to_row(alert) for alert in alerts],
                    column_names(ALERTS_TABLE),
                )
            )
            alert_sql = f"""
CREATE TEMP TABLE {new_alerts} AS
SELECT alert.* FROM UNNEST(@alert_rows) AS alert
JOIN {batch} AS batch ON batch.integration_id = alert.integration_id
WHERE NOT EXISTS (SELECT 1 FROM {self._table(ALERTS_TABLE)} AS sent WHERE sent.dedupe_key = alert.dedupe_key);
INSERT INTO {self._table(ALERTS_TABLE)} ({self._columns(ALERTS_TABLE)})
SELECT {self._columns(ALERTS_TABLE)} FROM {new_alerts};
"""
            alert_outcome = f"UNION ALL SELECT 'alert' AS kind, alert_id AS value FROM {new_alerts}"
            drop_alerts = f"DROP TABLE {new_alerts};"
        kinds = self._types[INTEGRATIONS_TABLE]
        assignments = ", ".join(
            f"{name} = {self._value(kinds[name], f'batch.{name}')}" for name in MUTABLE_INTEGRATION_COLUMNS
        )
        sql = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {batch} AS
SELECT candidate.* FROM UNNEST(@batch_rows) AS candidate
WHERE EXISTS (
  SELECT 1 FROM {self._table(INTEGRATIONS_TABLE)} AS current
  WHERE current.integration_id = candidate.integration_id AND current.updated_at = candidate.expected_updated_at
);
UPDATE {self._table(INTEGRATIONS_TABLE)} AS target SET {assignments}
FROM {batch} AS batch
WHERE target.integration_id = batch.integration_id AND target.updated_at = batch.expected_updated_at;
UPDATE {self._table(CREDENTIALS_TABLE)} AS credential SET expires_at = batch.expires_at, updated_at = batch.updated_at
FROM {batch} AS batch
WHERE credential.credential_id = batch.credential_id AND credential.expires_at IS DISTINCT FROM batch.expires_at
  AND credential.credential_type != 'oauth';
INSERT INTO {self._table(AUDIT_TABLE)} ({self._columns(AUDIT_TABLE)})
SELECT {", ".join("audit." + c for c in column_names(AUDIT_TABLE))} FROM UNNEST(@audit_rows) AS audit
JOIN {batch} AS batch ON batch.org_slug = audit.org_slug AND batch.provider = audit.provider;
{alert_sql}
COMMIT TRANSACTION;
CREATE TEMP TABLE {outcome} AS
SELECT 'written' AS kind, CAST(COUNT(*) AS STRING) AS value FROM {batch} {alert_outcome};
DROP TABLE {batch};
{drop_alerts}
SELECT kind, value FROM {outcome};
"""
        found = self._run(sql, parameters)
        written = next(int(row["value"]) for row in found if row["kind"] == "written")
        return written, [row["value"] for row in found if row["kind"] == "alert"]

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

    # --- OAuth -------------------------------------------------------------------------------------

    def create_oauth_state(self, state: OAuthState) -> None:
        sql = f"""
DELETE FROM {self._table(OAUTH_STATES_TABLE)}
WHERE GREATEST(expires_at, COALESCE(completion_expires_at, expires_at)) < @stale_before;
{self._insert_sql("s_", OAUTH_STATES_TABLE)};
"""
        parameters = [
            self._scalar("stale_before", state.created_at - timedelta(days=1)),
            *self._row_parameters("s_", OAUTH_STATES_TABLE, rows.oauth_state_to_row(state)),
        ]
        self._run(sql, parameters)

    def consume_oauth_state(self, state_hash: str, now: datetime) -> tuple[str, OAuthState | None]:
        states = self._table(OAUTH_STATES_TABLE)
        sql = f"""
DECLARE outcome STRING DEFAULT NULL;
BEGIN TRANSACTION;
SET outcome = (
  SELECT CASE WHEN used_at IS NOT NULL THEN 'used' WHEN expires_at <= @now THEN 'expired' ELSE 'consumed' END
  FROM {states} WHERE state_hash = @state_hash
);
IF outcome = 'consumed' THEN
  UPDATE {states} SET used_at = @now WHERE state_hash = @state_hash AND used_at IS NULL;
END IF;
COMMIT TRANSACTION;
SELECT outcome AS consume_outcome, * FROM {states} WHERE state_hash = @state_hash;
"""
        found = self._run(sql, [self._scalar("state_hash", state_hash), self._scalar("now", now)])
        if not found:
            return "unknown", None
        row = found[0]
        state = rows.oauth_state_from_row({name: row[name] for name in self._types[OAUTH_STATES_TABLE]})
        return str(row["consume_outcome"]), state

    def hold_oauth_tokens(
        self,
        state_hash: str,
        *,
        encrypted_tokens: bytes,
        tokens_key_version: str,
        completion_code_hash: str,
        completion_expires_at: datetime,
    ) -> bool:
        where = "state_hash = @state_hash AND used_at IS NOT NULL AND completion_code_hash IS NULL"
        hold = (
            f"UPDATE {self._table(OAUTH_STATES_TABLE)} SET encrypted_tokens = FROM_BASE64(@encrypted_tokens), "
            "tokens_key_version = @tokens_key_version, completion_code_hash = @completion_code_hash, "
            f"completion_expires_at = @completion_expires_at WHERE {where}"
        )
        parameters = [
            self._scalar("state_hash", state_hash),
            self._parameter("encrypted_tokens", "BYTES", encrypted_tokens),
            self._scalar("tokens_key_version", tokens_key_version),
            self._scalar("completion_code_hash", completion_code_hash),
            self._scalar("completion_expires_at", completion_expires_at),
        ]
        return self._conditional_write(OAUTH_STATES_TABLE, where, [hold], parameters)

    def complete_oauth_flow(
        self, completion_code_hash: str, org_slug: str, provider: str, now: datetime
    ) -> tuple[str, OAuthState | None]:
        states = self._table(OAUTH_STATES_TABLE)
        flow = "completion_code_hash = @code_hash AND org_slug = @org_slug AND provider = @provider"
        # The held tokens are read into a variable first: completing clears them from the row.
        sql = f"""
DECLARE outcome STRING DEFAULT NULL;
DECLARE held BYTES DEFAULT NULL;
BEGIN TRANSACTION;
SET outcome = (
  SELECT CASE WHEN completed_at IS NOT NULL THEN 'used'
              WHEN completion_expires_at IS NULL OR completion_expires_at <= @now THEN 'expired'
              ELSE 'completed' END
  FROM {states} WHERE {flow}
);
SET held = (SELECT encrypted_tokens FROM {states} WHERE {flow});
IF outcome = 'completed' THEN
  UPDATE {states} SET completed_at = @now, encrypted_tokens = NULL WHERE {flow} AND completed_at IS NULL;
END IF;
COMMIT TRANSACTION;
SELECT outcome AS complete_outcome, held AS held_tokens, * FROM {states} WHERE {flow};
"""
        found = self._run(
            sql,
            [
                self._scalar("code_hash", completion_code_hash),
                self._scalar("org_slug", org_slug),
                self._scalar("provider", provider),
                self._scalar("now", now),
            ],
        )
        if not found:
            return "unknown", None
        row = found[0]
        values = {name: row[name] for name in self._types[OAUTH_STATES_TABLE]}
        values["encrypted_tokens"] = row["held_tokens"]
        return str(row["complete_outcome"]), rows.oauth_state_from_row(values)

    def claim_credential_refresh(
        self,
        credential_id: str,
        *,
        expected_updated_at: datetime,
        lease_id: str,
        lease_expires_at: datetime,
        version: datetime,
    ) -> bool:
        where = "credential_id = @credential_id AND updated_at = @expected_updated_at"
        claim = (
            f"UPDATE {self._table(CREDENTIALS_TABLE)} SET refresh_lease_id = @lease_id, "
            f"refresh_lease_expires_at = @lease_expires_at, updated_at = @version WHERE {where}"
        )
        parameters = [
            self._scalar("credential_id", credential_id),
            self._scalar("expected_updated_at", expected_updated_at),
            self._scalar("lease_id", lease_id),
            self._scalar("lease_expires_at", lease_expires_at),
            self._scalar("version", version),
        ]
        return self._conditional_write(CREDENTIALS_TABLE, where, [claim], parameters)

    def finish_credential_refresh(self, credential: StoredCredential, *, lease_id: str) -> bool:
        where = "credential_id = @c_credential_id AND refresh_lease_id = @lease_id"
        finish = (
            f"UPDATE {self._table(CREDENTIALS_TABLE)} "
            "SET encrypted_value = FROM_BASE64(@c_encrypted_value), key_version = @c_key_version, "
            "fingerprint = @c_fingerprint, expires_at = @c_expires_at, updated_at = @c_updated_at, "
            "refresh_error = @c_refresh_error, refresh_lease_id = NULL, refresh_lease_expires_at = NULL "
            f"WHERE {where}"
        )
        parameters = [
            *self._row_parameters("c_", CREDENTIALS_TABLE, rows.credential_to_row(credential)),
            self._scalar("lease_id", lease_id),
        ]
        return self._conditional_write(CREDENTIALS_TABLE, where, [finish], parameters)

    # --- org webhooks ------------------------------------------------------------------------------

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

    # --- external IDs ------------------------------------------------------------------------------------

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

    # --- SaaS subscription toggles ------------------------------------------------------------------

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

    # --- org API keys ------------------------------------------------------------------------------------

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
