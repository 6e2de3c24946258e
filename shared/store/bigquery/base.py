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
form is also correct on BigQuery). Jobs go through ``jobs``
(BigQuery's REST API through ``shared.egress.google_rest`` and the service's HTTP
client, not the generated client library, whose import alone outweighed a cold
start: docs/design/cold-start-rest-adapters.md); google-auth is imported only
when the first job is sent, so local mode never loads it.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from shared.common.retries import RetryPolicy, attempt
from shared.domain.errors import StoreUnavailable, Unauthenticated
from shared.domain.models import Integration, StoredCredential
from shared.domain.schemas import (
    API_KEYS_TABLE,
    CREDENTIALS_TABLE,
    INTEGRATIONS_TABLE,
    TABLES,
    column_names,
    column_types,
)
from shared.egress.google_rest import GoogleApiError, failure_text, is_connection_failure
from shared.store import rows
from shared.store.bigquery.jobs import (
    BigQueryJobs,
    JobFailed,
    Parameter,
    QueryResult,
    is_single_statement,
    scalar,
    struct_array,
)
from shared.store.key_check import KeyCheck, key_check_to_carry

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
# The whole of one store call, every send and pause included: no request starts, and none is waited
# for, past it. Under the functions' 60 s timeout, so a BigQuery outage is answered 503, not cut off.
STORE_CALL_SECONDS = 45.0


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


MUTABLE_INTEGRATION_COLUMNS = [
    name
    for name in column_names(INTEGRATIONS_TABLE)
    if name not in ("integration_id", "org_slug", "provider", "created_at")
]


# The message a guarded script raises for a refused API key (it reaches us in the job's error).
KEY_REFUSED = "integrations: API key refused"


# Columns a guarded read adds in front of the statement's own.
GUARD_COLUMNS = ("guard_key_ok", "guard_row")


class BigQueryBase:
    """One BigQuery job per call, retried by the service's policy, with the request's API-key check riding
    on it; the parameter and SQL helpers every aggregate's mixin uses. ``BigQueryStore``
    (``shared.store.bigquery``) is their sum."""

    def __init__(
        self,
        jobs: BigQueryJobs,
        dataset: str,
        *,
        max_attempts: int = JOB_ATTEMPTS,
        backoff_base_seconds: float = 0.5,
        backoff_cap_seconds: float = 8.0,
        call_seconds: float = STORE_CALL_SECONDS,
    ) -> None:
        self.jobs = jobs
        self.project = jobs.project
        self.dataset = dataset
        self.max_attempts = max_attempts
        self.retry_policy = RetryPolicy(max_attempts, backoff_base_seconds, backoff_cap_seconds)
        self.call_seconds = call_seconds
        self.counters: Counter[str] = Counter()
        self._types = {table: column_types(table) for table in TABLES}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        assert settings.gcp_project is not None
        # With an endpoint (the emulator on loopback) no Google credentials exist or are needed.
        jobs = BigQueryJobs(
            settings.gcp_project, api_endpoint=settings.bigquery_api_endpoint, location=settings.bigquery_location
        )
        return cls(jobs, settings.bigquery_dataset)

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

        def send(end: float) -> QueryResult:
            try:
                return self.jobs.query(sql, parameters, request_id=request_id[0], end=end)
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
        self, send: Callable[[float], Result], *, counted_as: str, new_job: Callable[[], None] | None = None
    ) -> Result:
        """``send`` (a job, or a streaming insert), at most ``max_attempts`` times in all, by the service's
        one retry policy (``shared.common.retries``; nothing below retries): again after a transaction conflict,
        a transient status or a failed transport. ``new_job`` is called before a resend that must not be
        taken for the earlier send (a lost race, a job that ran and failed). ``send`` gets the call's end
        (``call_seconds`` from now): no send or pause begins past it and each request has only the time left."""
        from google.auth.exceptions import GoogleAuthError

        end = time.monotonic() + self.call_seconds

        def once(_: int) -> Result:
            self.counters[counted_as] += 1
            return send(end)

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

        tried = attempt(once, policy=self.retry_policy, retryable=retryable, deadline=end)
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

    def _converted(self, table: str, alias: str) -> str:
        """Every column of ``table`` read from struct ``alias``, converted to its column type."""
        return ", ".join(self._value(kind, f"{alias}.{name}") for name, kind in self._types[table].items())

    def _struct_array(
        self, name: str, kinds: dict[str, str], table_rows: list[dict[str, Any]], columns: Sequence[str]
    ) -> Parameter:
        """ARRAY<STRUCT<...>> parameter: unlike arrays of scalars, struct fields may be NULL."""
        return struct_array(
            name,
            [(column, self._parameter_kind(kinds[column])) for column in columns],
            [[self._parameter_value(kinds[column], row[column]) for column in columns] for row in table_rows],
        )
