"""The store's BigQuery REST runner speaks the wire format google-cloud-bigquery speaks.

Three kinds of evidence: its parameters are byte-for-byte what the library
sends (``to_api_repr``); rows it writes read back the same through the
library, and rows the library writes read back the same through it, on the
BigQuery emulator; and the parts of the protocol the emulator never shows
(an unfinished job, a resend after a 503) against a small recording server.
Resends are the store's one retry loop (``BigQueryStore._job``): those tests
send through it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.cloud import bigquery

from shared.domain.errors import StoreUnavailable
from shared.egress.google_rest import GoogleApiError
from shared.store.bigquery import BigQueryStore
from shared.store.bigquery import jobs as bigquery_jobs
from shared.store.bigquery.base import JOB_ATTEMPTS
from shared.store.bigquery.jobs import BigQueryJobs, array, scalar, struct_array

FIELDS = [
    {"name": "id", "type": "INT64", "mode": "REQUIRED"},
    {"name": "label", "type": "STRING"},
    {"name": "enabled", "type": "BOOL"},
    {"name": "seen_at", "type": "TIMESTAMP"},
    {"name": "blob", "type": "BYTES"},
    {"name": "config", "type": "JSON"},
]
AT = datetime(2026, 11, 29, 3, 4, 5, 123456, tzinfo=UTC)
FULL: dict[str, Any] = {
    "id": 1,
    "label": "zürich ✓",
    "enabled": True,
    "seen_at": AT,
    "blob": b"\x00\xffciphertext",
    "config": {"a": [1, 2], "b": None},
}
# Result schemas name types the REST way (legacy names), as the library's SchemaField.field_type shows them.
COLUMNS_AS_REPORTED = [
    ("id", "INTEGER"),
    ("label", "STRING"),
    ("enabled", "BOOLEAN"),
    ("seen_at", "TIMESTAMP"),
    ("blob", "BYTES"),
    ("config", "JSON"),
]
EMPTY = {"id": 2, "label": None, "enabled": None, "seen_at": None, "blob": None, "config": None}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("STRING", "plain"),
        ("STRING", None),
        ("INT64", 9_007_199_254_740_993),
        ("BOOL", False),
        ("TIMESTAMP", AT),
        ("TIMESTAMP", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no microseconds
        ("TIMESTAMP", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
        ("TIMESTAMP", None),
    ],
)
def test_scalar_parameters_are_what_the_library_sends(kind, value):
    assert scalar("p", kind, value) == bigquery.ScalarQueryParameter("p", kind, value).to_api_repr()


def test_array_parameters_are_what_the_library_sends():
    assert (
        array("orgs", "STRING", ["a", "b"]) == bigquery.ArrayQueryParameter("orgs", "STRING", ["a", "b"]).to_api_repr()
    )


def test_struct_array_parameters_are_what_the_library_sends():
    rows: list[list[Any]] = [["x", 1, AT], ["y", None, None]]
    library = bigquery.ArrayQueryParameter(
        "batch",
        "STRUCT",
        [
            bigquery.StructQueryParameter(
                None,
                bigquery.ScalarQueryParameter("name", "STRING", name),
                bigquery.ScalarQueryParameter("n", "INT64", n),
                bigquery.ScalarQueryParameter("at", "TIMESTAMP", at),
            )
            for name, n, at in rows
        ],
    ).to_api_repr()
    assert struct_array("batch", [("name", "STRING"), ("n", "INT64"), ("at", "TIMESTAMP")], rows) == library


def test_a_naive_timestamp_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="time zone"):
        scalar("at", "TIMESTAMP", datetime(2026, 1, 1))


@pytest.fixture
def dataset(gcp_stack):
    jobs = gcp_stack.bigquery.jobs()
    name = f"jobs_{uuid.uuid4().hex[:10]}"
    assert jobs.create_dataset(name) is True
    assert jobs.create_dataset(name) is False  # exists: not an error
    assert jobs.create_table(name, "t", FIELDS) is True
    assert jobs.create_table(name, "t", FIELDS) is False
    return jobs, f"`{jobs.project}.{name}.t`"


def _insert_with_runner(jobs, table, row):
    jobs.query(
        f"INSERT INTO {table} (id, label, enabled, seen_at, blob, config) "
        "VALUES (@id, @label, @enabled, @at, FROM_BASE64(@blob), PARSE_JSON(@config))",
        [
            scalar("id", "INT64", row["id"]),
            scalar("label", "STRING", row["label"]),
            scalar("enabled", "BOOL", row["enabled"]),
            scalar("at", "TIMESTAMP", row["seen_at"]),
            scalar("blob", "STRING", None if row["blob"] is None else base64.b64encode(row["blob"]).decode()),
            scalar("config", "STRING", None if row["config"] is None else json.dumps(row["config"])),
        ],
    )


def test_rows_the_runner_writes_read_the_same_through_the_library(gcp_stack, dataset):
    jobs, table = dataset
    for row in (FULL, EMPTY):
        _insert_with_runner(jobs, table, row)
    library_result = gcp_stack.bigquery.client().query_and_wait(f"SELECT * FROM {table} ORDER BY id")
    library_rows = [dict(row.items()) for row in library_result]
    runner = jobs.query(f"SELECT * FROM {table} ORDER BY id")
    assert [(field.name, field.field_type) for field in library_result.schema] == COLUMNS_AS_REPORTED
    assert library_rows == [FULL, EMPTY]
    assert runner.rows == [FULL, EMPTY]
    assert runner.columns == COLUMNS_AS_REPORTED


def test_rows_the_library_writes_read_the_same_through_the_runner(gcp_stack, dataset):
    jobs, table = dataset
    client = gcp_stack.bigquery.client()
    client.query_and_wait(
        f"INSERT INTO {table} (id, label, enabled, seen_at, blob, config) "
        "VALUES (@id, @label, @enabled, @at, FROM_BASE64(@blob), PARSE_JSON(@config))",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("id", "INT64", 1),
                bigquery.ScalarQueryParameter("label", "STRING", FULL["label"]),
                bigquery.ScalarQueryParameter("enabled", "BOOL", True),
                bigquery.ScalarQueryParameter("at", "TIMESTAMP", AT),
                bigquery.ScalarQueryParameter("blob", "STRING", "AP9jaXBoZXJ0ZXh0"),
                bigquery.ScalarQueryParameter("config", "STRING", json.dumps(FULL["config"])),
            ]
        ),
    )
    library = [dict(row.items()) for row in client.query_and_wait(f"SELECT * FROM {table}")]
    assert jobs.query(f"SELECT * FROM {table}").rows == library == [FULL]


def test_struct_array_parameters_unnest_with_their_nulls(dataset):
    jobs, _ = dataset
    result = jobs.query(
        "SELECT r.name, r.n, r.at FROM UNNEST(@batch) AS r ORDER BY r.name",
        [
            struct_array(
                "batch", [("name", "STRING"), ("n", "INT64"), ("at", "TIMESTAMP")], [["x", 7, AT], ["y", None, None]]
            )
        ],
    )
    assert result.rows == [{"name": "x", "n": 7, "at": AT}, {"name": "y", "n": None, "at": None}]


def test_a_large_result_is_read_page_by_page(gcp_stack, dataset):
    jobs, table = dataset
    jobs.query(f"INSERT INTO {table} (id) SELECT n FROM UNNEST(GENERATE_ARRAY(1, 25)) AS n")
    paged = BigQueryJobs(jobs.project, api_endpoint=gcp_stack.bigquery.endpoint, page_rows=10)
    calls = _count_calls(paged)
    assert [row["id"] for row in paged.query(f"SELECT id FROM {table} ORDER BY id").rows] == list(range(1, 26))
    assert calls == ["POST", "GET", "GET"]  # the job with its first page, then two more pages


def test_a_failed_job_raises_with_bigquerys_reason(dataset):
    jobs, table = dataset
    with pytest.raises(GoogleApiError) as failed:
        jobs.query(f"SELECT no_such_column FROM {table}")
    assert failed.value.status == 400
    assert not failed.value.transient


def _count_calls(jobs: BigQueryJobs) -> list[str]:
    calls: list[str] = []
    session = jobs.session
    original = session.call

    def recording(method, path, **kwargs):
        calls.append(method)
        return original(method, path, **kwargs)

    session.call = recording  # type: ignore[method-assign]
    return calls


# --- protocol the emulator never shows -----------------------------------------------------------------


class RecordingBigQuery(BaseHTTPRequestHandler):
    """Answers from a script: each request pops the next (status, body); every request is recorded."""

    script: list[tuple[int, dict]] = []
    seen: list[tuple[str, str, dict]] = []
    delays: list[float] = []  # seconds the next requests wait before answering
    always: tuple[int, dict] | None = None  # the answer once the script is spent (a persistent outage)

    def _answer(self, body: dict) -> None:
        self.seen.append((self.command, self.path, body))
        if self.delays:
            time.sleep(self.delays.pop(0))
        status, answer = self.script.pop(0) if self.script or self.always is None else self.always
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(json.loads(self.rfile.read(length) or b"{}"))

    def do_GET(self) -> None:
        self._answer({})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recording_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingBigQuery)
    RecordingBigQuery.script, RecordingBigQuery.seen, RecordingBigQuery.delays = [], [], []
    RecordingBigQuery.always = None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SCHEMA = {"fields": [{"name": "n", "type": "INTEGER"}, {"name": "at", "type": "TIMESTAMP"}]}


BACKEND_ERROR = {"error": {"code": 503, "message": "Backend error", "errors": [{"reason": "backendError"}]}}


def _store(endpoint: str) -> BigQueryStore:
    return BigQueryStore(BigQueryJobs("p", api_endpoint=endpoint), "d", backoff_base_seconds=0.01)


def _posts() -> list[dict]:
    return [body for method, _, body in RecordingBigQuery.seen if method == "POST"]


def test_a_transient_answer_resends_the_same_request_id(recording_server):
    RecordingBigQuery.script = [
        (503, BACKEND_ERROR),
        (
            200,
            {
                "jobComplete": True,
                "jobReference": {"jobId": "j1"},
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "1"}, {"v": "1764385445123456"}]}],
            },
        ),
    ]
    result = _store(recording_server)._job("SELECT 1")
    assert result.rows == [{"n": 1, "at": datetime(2025, 11, 29, 3, 4, 5, 123456, tzinfo=UTC)}]
    (first, second) = RecordingBigQuery.seen
    assert first[2]["requestId"] == second[2]["requestId"]


def test_a_timed_out_insert_resends_the_same_request_id(recording_server, monkeypatch):
    done = {"jobComplete": True, "jobReference": {"jobId": "j1"}, "schema": SCHEMA, "rows": []}
    RecordingBigQuery.script = [(200, done), (200, done)]
    RecordingBigQuery.delays = [1.0]  # the first POST is answered only after the client gave up on it
    monkeypatch.setattr(bigquery_jobs, "HTTP_TIMEOUT_SECONDS", 0.3)
    assert _store(recording_server)._job("SELECT 1").rows == []
    (first, second) = RecordingBigQuery.seen[:2]
    assert first[2]["requestId"] == second[2]["requestId"]  # BigQuery runs the job once


def test_a_job_that_ran_and_failed_is_sent_again_as_a_new_job(recording_server):
    failed = {"jobComplete": True, "jobReference": {"jobId": "j1"}, "errors": [{"reason": "backendError"}]}
    done = {"jobComplete": True, "jobReference": {"jobId": "j2"}, "schema": SCHEMA, "rows": []}
    RecordingBigQuery.script = [(200, failed), (200, done)]
    assert _store(recording_server)._job("SELECT 1").rows == []
    (first, second) = _posts()
    assert first["requestId"] != second["requestId"]  # the same id would only return the failed job


def test_a_persistent_503_posts_each_job_exactly_the_documented_number_of_times(recording_server):
    """One retry loop: the store's JOB_ATTEMPTS sends in all, not attempts x resends."""
    RecordingBigQuery.always = (503, BACKEND_ERROR)
    store = _store(recording_server)
    with pytest.raises(StoreUnavailable):
        store.list_integrations("acme")
    posts = _posts()
    assert len(posts) == JOB_ATTEMPTS == 6
    assert len({body["requestId"] for body in posts}) == 1  # each a resend of the same job
    assert store.counters["jobs"] == JOB_ATTEMPTS and store.counters["transient_retries"] == JOB_ATTEMPTS - 1


def test_a_store_call_ends_by_its_total_deadline_whatever_bigquery_does(recording_server):
    """Every send and pause of one store call fits in ``call_seconds``: a BigQuery that takes
    longer than that to answer each send gets a 503 from the store, not six long waits."""
    RecordingBigQuery.always = (503, BACKEND_ERROR)
    RecordingBigQuery.delays = [0.6] * 20  # each send answered after 0.6 s: six would take 3.6 s
    store = BigQueryStore(BigQueryJobs("p", api_endpoint=recording_server), "d", call_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.list_integrations("acme")
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 0.3, elapsed
    assert 1 < len(_posts()) < JOB_ATTEMPTS  # retried while there was time, and no more


def test_a_store_call_cut_off_mid_answer_by_its_deadline_is_unavailable(recording_server):
    done = {"jobComplete": True, "jobReference": {"jobId": "j1"}, "schema": SCHEMA, "rows": []}
    RecordingBigQuery.script = [(200, done)]
    RecordingBigQuery.delays = [5.0]  # past the call's end, though within HTTP_TIMEOUT_SECONDS
    store = BigQueryStore(BigQueryJobs("p", api_endpoint=recording_server), "d", call_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store._job("SELECT 1")
    assert time.monotonic() - started < 1.0 + 0.3
    assert len(_posts()) == 1  # nothing was begun after the end


def test_an_unfinished_job_is_waited_for_then_paged(recording_server):
    RecordingBigQuery.script = [
        (200, {"jobComplete": False, "jobReference": {"jobId": "j2", "location": "EU"}}),
        (
            200,
            {
                "jobComplete": True,
                "jobReference": {"jobId": "j2"},
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "1"}, {"v": None}]}],
                "pageToken": "t1",
            },
        ),
        (
            200,
            {
                "jobComplete": True,
                "jobReference": {"jobId": "j2"},
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "2"}, {"v": None}]}],
            },
        ),
    ]
    result = BigQueryJobs("p", api_endpoint=recording_server).query("SELECT n")
    assert result.rows == [{"n": 1, "at": None}, {"n": 2, "at": None}]
    paths = [path for _, path, _ in RecordingBigQuery.seen]
    assert paths[0] == "/bigquery/v2/projects/p/queries"
    assert paths[1].startswith("/bigquery/v2/projects/p/queries/j2?") and "location=EU" in paths[1]
    assert "pageToken=t1" in paths[2]


def test_an_error_answer_keeps_status_reason_and_message(recording_server):
    message = "Transaction is aborted due to concurrent update against table p:d.t"
    RecordingBigQuery.script = [
        (400, {"error": {"code": 400, "message": message, "errors": [{"reason": "invalidQuery"}]}})
    ]
    with pytest.raises(GoogleApiError) as failed:
        BigQueryJobs("p", api_endpoint=recording_server).query("UPDATE t SET x = 1 WHERE TRUE")
    assert (failed.value.status, failed.value.reason, failed.value.message) == (400, "invalidQuery", message)
    assert message not in str(failed.value)  # the text stays out of logs and tracebacks


# --- short-query mode (jobCreationMode: JOB_CREATION_OPTIONAL) ------------------------------------------


@pytest.mark.parametrize(
    ("sql", "short"),
    [
        ("SELECT * FROM t WHERE org_slug = @org", True),
        ("INSERT INTO t (id) VALUES (@id)", True),  # one DML statement: BigQuery decides whether it needs a job
        ("MERGE t AS e USING (SELECT 1 AS id) AS w ON e.id = w.id WHEN NOT MATCHED THEN INSERT (id) VALUES (1);", True),
        ("SELECT ';' AS semicolon -- and a comment; with one\n", True),
        ("DECLARE n INT64 DEFAULT 1;\nBEGIN TRANSACTION;\nUPDATE t SET id = n WHERE TRUE;\nCOMMIT TRANSACTION;", False),
        ("DELETE FROM t WHERE id = 1; INSERT INTO t (id) VALUES (2);", False),
    ],
)
def test_single_statements_ask_for_short_query_mode_and_scripts_do_not(recording_server, sql, short):
    RecordingBigQuery.script = [(200, {"jobComplete": True, "queryId": "q1", "schema": SCHEMA, "rows": []})]
    BigQueryJobs("p", api_endpoint=recording_server).query(sql)
    (_, _, body) = RecordingBigQuery.seen[0]
    assert body.get("jobCreationMode") == ("JOB_CREATION_OPTIONAL" if short else None)
    assert body["requestId"]  # a resent write still runs once, with or without a job


def test_an_answer_without_a_job_is_read_inline(recording_server):
    """BigQuery's short-query answer: no jobReference, a queryId, every row in the answer."""
    RecordingBigQuery.script = [
        (
            200,
            {
                "jobComplete": True,
                "queryId": "sq_123",
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "1"}, {"v": None}]}, {"f": [{"v": "2"}, {"v": None}]}],
            },
        )
    ]
    result = BigQueryJobs("p", api_endpoint=recording_server).query("SELECT n, at FROM t")
    assert result.rows == [{"n": 1, "at": None}, {"n": 2, "at": None}]
    assert (result.job_id, result.query_id) == (None, "sq_123")
    assert len(RecordingBigQuery.seen) == 1  # no getQueryResults call


def test_a_job_bigquery_created_anyway_is_followed_page_by_page(recording_server):
    RecordingBigQuery.script = [
        (
            200,
            {
                "jobComplete": True,
                "jobReference": {"jobId": "j9"},
                "jobCreationReason": {"code": "LARGE_RESULTS"},
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "1"}, {"v": None}]}],
                "pageToken": "t1",
            },
        ),
        (
            200,
            {
                "jobComplete": True,
                "jobReference": {"jobId": "j9"},
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "2"}, {"v": None}]}],
            },
        ),
    ]
    result = BigQueryJobs("p", api_endpoint=recording_server).query("SELECT n, at FROM t")
    assert [row["n"] for row in result.rows] == [1, 2]
    assert (result.job_id, result.job_creation_reason) == ("j9", "LARGE_RESULTS")
    assert RecordingBigQuery.seen[1][1].startswith("/bigquery/v2/projects/p/queries/j9?")


def test_a_paged_answer_without_a_job_is_refused_not_truncated(recording_server):
    """More pages with no job to read them from: fail loudly rather than return the first page as the whole."""
    RecordingBigQuery.script = [
        (
            200,
            {
                "jobComplete": True,
                "queryId": "q",
                "schema": SCHEMA,
                "rows": [{"f": [{"v": "1"}, {"v": None}]}],
                "pageToken": "t",
            },
        )
    ]
    with pytest.raises(GoogleApiError) as failed:
        BigQueryJobs("p", api_endpoint=recording_server).query("SELECT n, at FROM t")
    assert (failed.value.status, failed.value.reason) == (502, "malformedResponse")


def test_the_emulator_answers_a_select_without_a_job_and_a_script_with_one(dataset):
    """The launcher answers in short-query mode as BigQuery documents it, so the store's reads take that path."""
    jobs, table = dataset
    _insert_with_runner(jobs, table, EMPTY)
    read = jobs.query(f"SELECT id FROM {table}")
    assert read.rows == [{"id": 2}] and read.job_id is None and read.query_id
    required = jobs.query(f"SELECT id FROM {table}", short_query=False)
    assert required.rows == [{"id": 2}] and required.job_id and required.query_id is None
    script = jobs.query(f"DECLARE n INT64 DEFAULT 3;\nUPDATE {table} SET id = n WHERE TRUE;\nSELECT id FROM {table};")
    assert script.rows == [{"id": 3}] and script.job_id
