"""BigQuery query jobs over the REST API: what the BigQuery store needs and nothing more.

The store sends every statement as one query job (``jobs.query``, waiting
for it with ``jobs.getQueryResults`` and paging through its rows the same
way) and creates its dataset and tables (``datasets.insert``,
``tables.insert``). Those four calls are plain JSON, so they go through
``shared.egress.google_rest`` instead of ``google-cloud-bigquery``, whose import
alone outweighs a whole functions-framework cold start (the figures are in
``bench/operations.py``'s output and docs/design/cold-start-rest-adapters.md). The wire format is the one
``google-cloud-bigquery`` 3.x uses for ``Client.query_and_wait``: named
parameters as ``{"name", "parameterType", "parameterValue"}``, lossless
``useInt64Timestamp`` timestamps, and a ``requestId`` so a resent request
cannot run the job twice. Nothing here retries: the store's one retry loop
(``BigQueryStore._job``) decides whether to send again, with the same
``requestId`` or a new one. ``tests/test_bigquery_jobs.py`` checks rows written
here read back through that library and the other way round.

Short-query mode: a single statement is sent with ``jobCreationMode:
JOB_CREATION_OPTIONAL``, so BigQuery may run it without creating a job and
answer with its rows inline, a ``queryId`` and no ``jobReference`` (it still
creates one when it must, saying why in ``jobCreationReason``: the query ran
long, the rows do not fit the answer, or it needs a job). A script
(several statements: the store's transactions) is always sent as a job. The
``requestId`` keeps a resent write from running twice in both modes.
docs/design/bigquery-short-queries.md has the reasons and the sources.

Values come back as Python types: INT64 -> int, FLOAT64 -> float, BOOL ->
bool, TIMESTAMP -> aware UTC datetime, BYTES -> bytes, JSON -> the decoded
value, STRING -> str; repeated and RECORD columns as lists and dicts.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.egress.google_rest import GoogleApiError, GoogleRestSession

BIGQUERY_BASE_URL = "https://bigquery.googleapis.com"
API_PATH = "/bigquery/v2"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How long one jobs.query / getQueryResults call waits for the job server-side
# before answering "not complete yet" (we then ask again).
WAIT_MILLISECONDS = 10_000
# One HTTP call: the server holds it up to WAIT_MILLISECONDS; the answer gets time to arrive on top.
HTTP_TIMEOUT_SECONDS = WAIT_MILLISECONDS / 1000 + 20.0


def _time_left(end: float | None) -> float:
    """One request's whole time: ``HTTP_TIMEOUT_SECONDS``, or less when the store call's ``end`` is nearer."""
    if end is None:
        return HTTP_TIMEOUT_SECONDS
    left = end - time.monotonic()
    if left <= 0:
        raise GoogleApiError(504, "timeout", "the store call ran out of time")
    return min(HTTP_TIMEOUT_SECONDS, left)


# jobs.query's short-query mode: BigQuery creates a job only when it decides the statement needs one.
JOB_CREATION_OPTIONAL = "JOB_CREATION_OPTIONAL"
# HTTP status BigQuery uses for an error ``reason`` (its troubleshooting table), for a
# failure reported inside a job's answer rather than as the answer's status.
REASON_STATUS = {
    "notFound": 404,
    "duplicate": 409,
    "accessDenied": 403,
    "rateLimitExceeded": 403,
    "quotaExceeded": 403,
    "backendError": 503,
    "internalError": 500,
}

Parameter = dict[str, Any]


# --- parameters -------------------------------------------------------------------------------------


def scalar(name: str | None, kind: str, value: Any) -> Parameter:
    """A named parameter of type ``kind`` (STRING, INT64, BOOL, TIMESTAMP, ...); ``None`` is SQL NULL."""
    parameter: Parameter = {"parameterType": {"type": kind}, "parameterValue": {"value": _to_parameter_text(value)}}
    if name is not None:
        parameter["name"] = name
    return parameter


def array(name: str, kind: str, values: Sequence[Any]) -> Parameter:
    """ARRAY<kind> of scalars."""
    return {
        "name": name,
        "parameterType": {"type": "ARRAY", "arrayType": {"type": kind}},
        "parameterValue": {"arrayValues": [{"value": _to_parameter_text(value)} for value in values]},
    }


def struct_array(name: str, fields: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> Parameter:
    """ARRAY<STRUCT<field kind, ...>>: one struct per row, fields in ``fields`` order (NULLs allowed)."""
    return {
        "name": name,
        "parameterType": {
            "type": "ARRAY",
            "arrayType": {
                "type": "STRUCT",
                "structTypes": [{"name": field, "type": {"type": kind}} for field, kind in fields],
            },
        },
        "parameterValue": {
            "arrayValues": [
                {
                    "structValues": {
                        field: {"value": _to_parameter_text(value)}
                        for (field, _), value in zip(fields, row, strict=True)
                    }
                }
                for row in rows
            ]
        },
    }


def _to_parameter_text(value: Any) -> Any:
    """Query parameter values travel as text, as google-cloud-bigquery writes them."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("TIMESTAMP parameters must carry a time zone")
        utc = value.astimezone(UTC)
        return f"{utc.date().isoformat()} {utc.time().isoformat()}+00:00"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"unsupported query parameter type: {type(value).__name__}")


def _to_insert_value(value: Any) -> Any:
    """A row value as ``tabledata.insertAll`` takes it (JSON: timestamps as RFC 3339 text, bytes as base64)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("TIMESTAMP values must carry a time zone")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    rows: list[dict[str, Any]]
    # (column, type) as BigQuery reports the result's schema.
    columns: list[tuple[str, str]]
    # The job BigQuery created, or None when it answered in short-query mode without one
    # (then ``query_id`` names the query, e.g. for INFORMATION_SCHEMA.JOBS).
    job_id: str | None = None
    query_id: str | None = None
    # Why BigQuery created a job although asked not to (LONG_RUNNING, LARGE_RESULTS, OTHER), if it said.
    job_creation_reason: str | None = None


def is_single_statement(sql: str) -> bool:
    """True when ``sql`` is one statement (a trailing ``;`` allowed), False for a script.

    Semicolons inside string literals, quoted identifiers and comments do not
    count; a statement that follows the first one makes it a script.
    """
    index, length, ended = 0, len(sql), False
    while index < length:
        char = sql[index]
        if char.isspace():
            index += 1
            continue
        if sql.startswith("--", index) or char == "#":
            newline = sql.find("\n", index)
            index = length if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", index):
            close = sql.find("*/", index + 2)
            index = length if close < 0 else close + 2
            continue
        if ended:
            return False  # text after the first statement's ';'
        if char == ";":
            ended = True
            index += 1
        elif char in "'\"":
            index = _literal_end(sql, index)
        elif char == "`":
            close = sql.find("`", index + 1)
            index = length if close < 0 else close + 1
        else:
            index += 1
    return True


def _literal_end(sql: str, start: int) -> int:
    """The index just past the string literal opening at ``start`` ('', "", or their triple-quoted forms)."""
    quote = sql[start] * 3 if sql.startswith(sql[start] * 3, start) else sql[start]
    index = start + len(quote)
    while index < len(sql):
        if sql[index] == "\\":
            index += 2
        elif sql.startswith(quote, index):
            return index + len(quote)
        else:
            index += 1
    return len(sql)


def _from_cell(field: dict[str, Any], cell: Any) -> Any:
    value = cell.get("v") if isinstance(cell, dict) else cell
    if value is None:
        return None
    if field.get("mode") == "REPEATED":
        element = {**field, "mode": "NULLABLE"}
        return [_from_cell(element, item) for item in value]
    kind = field.get("type", "STRING")
    if kind in ("RECORD", "STRUCT"):
        return _record(field.get("fields", []), value)
    if kind in ("INTEGER", "INT64"):
        return int(value)
    if kind in ("FLOAT", "FLOAT64"):
        return float(value)
    if kind in ("BOOLEAN", "BOOL"):
        return value in (True, "true", "TRUE", "True")
    if kind == "TIMESTAMP":
        return _timestamp(value)
    if kind == "BYTES":
        return base64.b64decode(value)
    if kind == "JSON":
        return json.loads(value)
    return value


def _timestamp(value: str) -> datetime:
    # useInt64Timestamp: microseconds since the epoch; an older server may still send float seconds.
    if value.lstrip("-").isdigit():
        return EPOCH + timedelta(microseconds=int(value))
    return EPOCH + timedelta(seconds=float(value))


class JobFailed(GoogleApiError):
    """The job ran and failed (its answer lists errors): sending the same ``requestId`` again
    would only return this failed job, so a retry needs a new one."""


def _raise_job_errors(answer: dict[str, Any]) -> None:
    """A finished job that reports errors failed.

    BigQuery answers a failed ``jobs.query`` with an error status, but may
    also list errors in a 200 answer (the emulator reports every SQL failure
    that way); a store write must never pass for done when it was not, so
    any listed error fails the job.
    """
    errors = answer.get("errors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        reason = str(first.get("reason") or "jobFailed")
        raise JobFailed(REASON_STATUS.get(reason, 400), reason, str(first.get("message") or ""))


def _record(fields: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    return {field["name"]: _from_cell(field, cell) for field, cell in zip(fields, row.get("f", []), strict=True)}


# --- the runner -------------------------------------------------------------------------------------


class BigQueryJobs:
    """Runs query jobs in ``project`` (and creates datasets/tables there) over REST.

    ``api_endpoint`` points it at a stand-in on loopback (the BigQuery
    emulator) with anonymous credentials; without it, Google's endpoint with
    the application default credentials. The HTTP session is created on first
    use and reused. Failures raise ``GoogleApiError`` (an error status),
    an OSError (the transport's) or google-auth's errors; the store decides
    what to retry.
    """

    def __init__(
        self,
        project: str,
        *,
        api_endpoint: str | None = None,
        location: str | None = None,
        credentials: Any = None,
        timeout_seconds: float = 60.0,
        page_rows: int | None = None,
        session: GoogleRestSession | None = None,
    ) -> None:
        self.project = project
        # Rows per answer; None = BigQuery's own limit (10 MB per page).
        self.page_rows = page_rows
        self.location = location
        self.timeout_seconds = timeout_seconds
        self._api_endpoint = api_endpoint
        self._credentials = credentials
        self._session = session

    @property
    def session(self) -> GoogleRestSession:
        if self._session is None:
            self._session = GoogleRestSession(
                BIGQUERY_BASE_URL, api_endpoint=self._api_endpoint, credentials=self._credentials
            )
        return self._session

    def query(
        self,
        sql: str,
        parameters: Sequence[Parameter] = (),
        *,
        request_id: str | None = None,
        short_query: bool | None = None,
        end: float | None = None,
    ) -> QueryResult:
        """Run ``sql`` (one statement or a script); its rows once BigQuery is done.

        Sent once. ``request_id``: the same id as an earlier send of this job, so that
        BigQuery answers the job that send may have started instead of running it twice.
        ``short_query`` (default: whether ``sql`` is a single statement) asks for
        short-query mode; BigQuery then answers without a job when it can. ``end`` (a
        ``time.monotonic()`` instant): every request of the job gets only the time left.
        """
        if short_query is None:
            short_query = is_single_statement(sql)
        body: dict[str, Any] = {
            "query": sql,
            "useLegacySql": False,
            "formatOptions": {"useInt64Timestamp": True},
            "timeoutMs": WAIT_MILLISECONDS,
            "requestId": request_id or str(uuid.uuid4()),
        }
        if parameters:
            body["parameterMode"] = "NAMED"
            body["queryParameters"] = list(parameters)
        if self.location:
            body["location"] = self.location
        if self.page_rows:
            body["maxResults"] = self.page_rows
        if short_query:
            body["jobCreationMode"] = JOB_CREATION_OPTIONAL
        deadline = time.monotonic() + self.timeout_seconds
        end = deadline if end is None else min(end, deadline)
        answer = self._send_job(body, end)
        # Absent when BigQuery answered without a job; then the answer is complete and has every row.
        reference = answer.get("jobReference") or {}
        reason = (answer.get("jobCreationReason") or {}).get("code")
        while not answer.get("jobComplete", False):
            if time.monotonic() > end:
                raise GoogleApiError(504, "timeout", "the query job did not finish in time")
            # Once the job is done this answer carries the first page, as jobs.query's would have.
            answer = self._results(reference, {"timeoutMs": WAIT_MILLISECONDS} | self._page_size(), end)
        _raise_job_errors(answer)
        fields = (answer.get("schema") or {}).get("fields") or []
        rows = [_record(fields, row) for row in answer.get("rows") or []]
        page_token = answer.get("pageToken")
        while page_token:
            page = self._results(reference, {"pageToken": page_token} | self._page_size(), end)
            rows += [_record(fields, row) for row in page.get("rows") or []]
            page_token = page.get("pageToken")
        return QueryResult(
            rows=rows,
            columns=[(field["name"], field.get("type", "STRING")) for field in fields],
            job_id=reference.get("jobId"),
            query_id=answer.get("queryId"),
            job_creation_reason=reason,
        )

    def insert_rows(
        self,
        dataset: str,
        table: str,
        rows: Sequence[dict[str, Any]],
        *,
        insert_ids: Sequence[str],
        end: float | None = None,
    ) -> None:
        """Stream ``rows`` into ``table`` (``tabledata.insertAll``): no query job and no DML quota.

        ``insert_ids`` let BigQuery drop a resent row (best effort). A row it
        refuses fails the call (``insertErrors``), never passes for written.
        """
        body = {
            "rows": [
                {"insertId": insert_id, "json": {name: _to_insert_value(value) for name, value in row.items()}}
                for insert_id, row in zip(insert_ids, rows, strict=True)
            ],
            "skipInvalidRows": False,
            "ignoreUnknownValues": False,
        }
        answer = self.session.call(
            "POST",
            f"{API_PATH}/projects/{self.project}/datasets/{dataset}/tables/{table}/insertAll",
            body=body,
            timeout=_time_left(end),
        )
        refused = answer.get("insertErrors") or []
        if refused:
            first = (refused[0].get("errors") or [{}])[0] if isinstance(refused[0], dict) else {}
            reason = str(first.get("reason") or "invalid")
            raise GoogleApiError(REASON_STATUS.get(reason, 400), reason, f"{len(refused)} row(s) refused")

    def create_dataset(self, dataset: str) -> bool:
        """Create ``dataset`` if missing; whether it was created."""
        body: dict[str, Any] = {"datasetReference": {"projectId": self.project, "datasetId": dataset}}
        if self.location:
            body["location"] = self.location
        return self._create(f"/projects/{self.project}/datasets", body)

    def create_table(self, dataset: str, table: str, fields: Sequence[dict[str, Any]]) -> bool:
        """Create ``table`` with the schema ``fields`` (BigQuery's JSON form) if missing; whether it was."""
        body = {
            "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": list(fields)},
        }
        return self._create(f"/projects/{self.project}/datasets/{dataset}/tables", body)

    # --- internals ---------------------------------------------------------------------------

    def _send_job(self, body: dict[str, Any], end: float) -> dict[str, Any]:
        return self.session.call(
            "POST", f"{API_PATH}/projects/{self.project}/queries", body=body, timeout=_time_left(end)
        )

    def _results(self, reference: dict[str, Any], params: dict[str, Any], end: float) -> dict[str, Any]:
        job_id = reference.get("jobId")
        if not job_id:
            # Short-query mode: BigQuery creates a job whenever the rows do not fit or the query runs long,
            # so an answer that needs getQueryResults without naming a job is one we cannot follow.
            raise GoogleApiError(502, "malformedResponse", "an unfinished or paged answer came back without a job id")
        location = reference.get("location") or self.location
        if location:
            params = {**params, "location": location}
        return self.session.call(
            "GET", f"{API_PATH}/projects/{self.project}/queries/{job_id}", params=params, timeout=_time_left(end)
        )

    def _create(self, path: str, body: dict[str, Any]) -> bool:
        try:
            self.session.call("POST", API_PATH + path, body=body, timeout=HTTP_TIMEOUT_SECONDS)
        except GoogleApiError as error:
            if error.status == 409:  # already exists
                return False
            raise
        return True

    def _page_size(self) -> dict[str, Any]:
        return {"maxResults": self.page_rows} if self.page_rows else {}
