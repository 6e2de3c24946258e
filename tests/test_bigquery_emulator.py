"""The BigQuery emulator as the store adapter will use it, through google-cloud-bigquery.

Proves the launcher in ``tests/emulators/bigquery_emulator.py``: offline start,
query parameters bound in multi-statement scripts (never spliced into SQL),
and the SQL shapes the store relies on (transactions, IF, MERGE, UNNEST of an
ARRAY<STRUCT> parameter, JSON).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core.exceptions import BadRequest, NotFound
from google.cloud import bigquery

from tests.emulators.bigquery_emulator import (
    PARAM_VARIABLE_PREFIX,
    EmulatorProcess,
    rewrite_named_parameters,
    start_bigquery_emulator,
)

PROJECT = "emulator-test-project"
DATASET = "emu"

Scalar = bigquery.ScalarQueryParameter
Array = bigquery.ArrayQueryParameter
Struct = bigquery.StructQueryParameter

SCHEMA = [
    bigquery.SchemaField("id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("ciphertext", "BYTES"),
    bigquery.SchemaField("created_at", "TIMESTAMP"),
    bigquery.SchemaField("version", "INT64"),
    bigquery.SchemaField("active", "BOOL"),
]

TS = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)

# No retries, so an emulator failure fails the test now, not after minutes of back-off. The client takes
# None for "no retry" (its documented way); its annotations only say Retry.
NO_RETRY: Any = None


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    running = start_bigquery_emulator(PROJECT)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(emulator: EmulatorProcess) -> Iterator[bigquery.Client]:
    bq = emulator.client()
    bq.create_dataset(DATASET)
    try:
        yield bq
    finally:
        bq.close()


@pytest.fixture
def table(client: bigquery.Client) -> str:
    """A fresh table with the test schema; returns ``dataset.table``."""
    name = f"{DATASET}.t_{uuid.uuid4().hex[:12]}"
    client.create_table(bigquery.Table(f"{PROJECT}.{name}", schema=SCHEMA))
    return name


def _query(client: bigquery.Client, sql: str, *params: bigquery.query._AbstractQueryParameter) -> bigquery.QueryJob:
    config = bigquery.QueryJobConfig(query_parameters=list(params))
    # No retries: an emulator failure must fail the test now, not after minutes of back-off.
    job = client.query(sql, job_config=config, retry=NO_RETRY, job_retry=NO_RETRY)
    job.result()
    return job


def _rows(client: bigquery.Client, sql: str, *params: bigquery.query._AbstractQueryParameter) -> list[dict]:
    return [dict(row) for row in _query(client, sql, *params).result()]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_emulator_endpoint_and_project(emulator: EmulatorProcess) -> None:
    assert emulator.endpoint.startswith("http://127.0.0.1:")
    assert emulator.project == PROJECT
    assert emulator.process.poll() is None


def test_create_dataset_and_table(client: bigquery.Client, table: str) -> None:
    assert DATASET in {d.dataset_id for d in client.list_datasets()}
    got = client.get_table(f"{PROJECT}.{table}")
    legacy = {"INT64": "INTEGER", "BOOL": "BOOLEAN"}
    assert [(f.name, legacy.get(f.field_type, f.field_type)) for f in got.schema] == [
        ("id", "STRING"),
        ("ciphertext", "BYTES"),
        ("created_at", "TIMESTAMP"),
        ("version", "INTEGER"),
        ("active", "BOOLEAN"),
    ]


def test_transaction_script_binds_parameters(client: bigquery.Client, table: str) -> None:
    ciphertext = bytes(range(256))
    job = _query(
        client,
        f"""
        BEGIN TRANSACTION;
        INSERT INTO {table} (id, ciphertext, created_at, version, active)
          VALUES (@id, FROM_BASE64(@ciphertext), @created_at, @version, TRUE);
        INSERT INTO {table} (id, ciphertext, created_at, version, active)
          VALUES (CONCAT(@id, '-next'), FROM_BASE64(@ciphertext), TIMESTAMP_ADD(@created_at, INTERVAL 1 HOUR),
                  @version + 1, FALSE);
        COMMIT TRANSACTION;
        SELECT id, ciphertext, created_at, version, active FROM {table}
        WHERE STARTS_WITH(id, @id) ORDER BY version;
        """,
        Scalar("id", "STRING", "cred-1"),
        Scalar("ciphertext", "STRING", _b64(ciphertext)),
        Scalar("created_at", "TIMESTAMP", TS),
        Scalar("version", "INT64", 7),
    )
    assert job.statement_type == "SCRIPT"
    assert [dict(r) for r in job.result()] == [
        {"id": "cred-1", "ciphertext": ciphertext, "created_at": TS, "version": 7, "active": True},
        {
            "id": "cred-1-next",
            "ciphertext": ciphertext,
            "created_at": TS + dt.timedelta(hours=1),
            "version": 8,
            "active": False,
        },
    ]


def test_parameter_values_are_bound_not_spliced(client: bigquery.Client, table: str) -> None:
    hostile = "it's @other \"q\" \\ ; -- '); DELETE FROM x; /* @@row_count"
    rows = _rows(
        client,
        f"""
        BEGIN TRANSACTION;
        INSERT INTO {table} (id, version) VALUES (@value, 1);
        INSERT INTO {table} (id, version) VALUES ('@value literal', 2);  -- @value in a comment
        COMMIT TRANSACTION;
        SELECT id FROM {table} ORDER BY version;
        """,
        Scalar("value", "STRING", hostile),
        Scalar("other", "STRING", "MUST-NOT-APPEAR"),
    )
    assert rows == [{"id": hostile}, {"id": "@value literal"}]
    # Read back through a plain (non-script) query too.
    assert _rows(client, f"SELECT COUNT(*) AS n FROM {table} WHERE id = @v", Scalar("v", "STRING", hostile)) == [
        {"n": 1}
    ]


def test_if_script_with_parameter_is_idempotent(client: bigquery.Client, table: str) -> None:
    sql = f"""
        IF NOT EXISTS (SELECT 1 FROM {table} WHERE id = @id) THEN
          INSERT INTO {table} (id, version, active) VALUES (@id, @version, @active);
        END IF;
        SELECT COUNT(*) AS n, MAX(version) AS version FROM {table} WHERE id = @id;
    """
    first = _rows(
        client, sql, Scalar("id", "STRING", "x"), Scalar("version", "INT64", 1), Scalar("active", "BOOL", True)
    )
    second = _rows(
        client, sql, Scalar("id", "STRING", "x"), Scalar("version", "INT64", 2), Scalar("active", "BOOL", True)
    )
    assert first == [{"n": 1, "version": 1}]
    assert second == [{"n": 1, "version": 1}]
    branch = "IF @flag THEN SELECT 'then' AS branch; ELSE SELECT 'else' AS branch; END IF;"
    assert _rows(client, branch, Scalar("flag", "BOOL", False)) == [{"branch": "else"}]


def test_merge_with_parameters_reports_affected_rows(client: bigquery.Client, table: str) -> None:
    merge = f"""
        MERGE {table} AS t
        USING (SELECT @id AS id, @version AS version) AS s
        ON t.id = s.id
        WHEN MATCHED AND t.version < s.version THEN UPDATE SET version = s.version
        WHEN NOT MATCHED THEN INSERT (id, version, active) VALUES (s.id, s.version, TRUE)
    """
    inserted = _query(client, merge, Scalar("id", "STRING", "m"), Scalar("version", "INT64", 1))
    assert inserted.statement_type == "MERGE"
    assert inserted.num_dml_affected_rows == 1
    updated = _query(client, merge, Scalar("id", "STRING", "m"), Scalar("version", "INT64", 5))
    assert updated.num_dml_affected_rows == 1
    stale = _query(client, merge, Scalar("id", "STRING", "m"), Scalar("version", "INT64", 3))
    assert stale.num_dml_affected_rows == 0
    assert _rows(client, f"SELECT id, version FROM {table}") == [{"id": "m", "version": 5}]


def test_query_and_wait(client: bigquery.Client, table: str) -> None:
    config = bigquery.QueryJobConfig(query_parameters=[Scalar("id", "STRING", "w"), Scalar("n", "INT64", 3)])
    plain = client.query_and_wait(
        "SELECT @id AS id, @n * 2 AS n", job_config=config, retry=NO_RETRY, job_retry=NO_RETRY
    )
    assert [dict(r) for r in plain] == [{"id": "w", "n": 6}]
    script = client.query_and_wait(
        f"BEGIN TRANSACTION; INSERT INTO {table} (id, version) VALUES (@id, @n); COMMIT TRANSACTION; "
        f"SELECT id, version FROM {table};",
        job_config=config,
        retry=NO_RETRY,
        job_retry=NO_RETRY,
    )
    assert [dict(r) for r in script] == [{"id": "w", "version": 3}]


def _batch(*rows: tuple[str, bytes, int, bool | None]) -> bigquery.ArrayQueryParameter:
    return Array(
        "rows",
        "STRUCT",
        [
            Struct(
                None,
                Scalar("id", "STRING", row_id),
                Scalar("ciphertext", "STRING", _b64(data)),
                Scalar("created_at", "TIMESTAMP", TS),
                Scalar("version", "INT64", version),
                Scalar("active", "BOOL", active),
            )
            for row_id, data, version, active in rows
        ],
    )


def test_unnest_array_of_struct_parameter(client: bigquery.Client, table: str) -> None:
    insert = f"""
        INSERT INTO {table} (id, ciphertext, created_at, version, active)
        SELECT r.id, FROM_BASE64(r.ciphertext), r.created_at, r.version, r.active FROM UNNEST(@rows) AS r
    """
    plain = _query(client, insert, _batch(("a", b"\x00a", 1, True), ("b", b"\x00b", 2, None)))
    assert plain.num_dml_affected_rows == 2
    scripted = _rows(
        client,
        f"BEGIN TRANSACTION; {insert}; COMMIT TRANSACTION; SELECT id, ciphertext, version, active FROM {table} "
        "WHERE id IN (SELECT r.id FROM UNNEST(@rows) AS r) ORDER BY id;",
        _batch(("c", b"\x00c", 3, False)),
    )
    assert scripted == [{"id": "c", "ciphertext": b"\x00c", "version": 3, "active": False}]
    ids = _rows(
        client,
        f"SELECT id FROM {table} WHERE id IN UNNEST(@ids) ORDER BY id",
        Array("ids", "STRING", ["a", "b", "zz"]),
    )
    assert ids == [{"id": "a"}, {"id": "b"}]


def test_json_text_and_json_type(client: bigquery.Client) -> None:
    name = f"{DATASET}.j_{uuid.uuid4().hex[:12]}"
    client.create_table(
        bigquery.Table(
            f"{PROJECT}.{name}",
            schema=[
                bigquery.SchemaField("id", "STRING"),
                bigquery.SchemaField("meta", "JSON"),
                bigquery.SchemaField("meta_text", "STRING"),
            ],
        )
    )
    doc = {"scopes": ["read", "write"], "note": 'it\'s "quoted"'}
    text = json.dumps(doc)
    rows = _rows(
        client,
        f"""
        BEGIN TRANSACTION;
        INSERT INTO {name} (id, meta, meta_text) VALUES (@id, PARSE_JSON(@doc), @doc);
        COMMIT TRANSACTION;
        SELECT meta, meta_text, JSON_VALUE(meta, '$.note') AS note, JSON_VALUE(meta_text, '$.scopes[1]') AS scope
        FROM {name} WHERE id = @id;
        """,
        Scalar("id", "STRING", "j1"),
        Scalar("doc", "STRING", text),
    )
    assert rows == [{"meta": doc, "meta_text": text, "note": doc["note"], "scope": "write"}]


def test_uncaught_raise_is_a_query_error(client: bigquery.Client) -> None:
    sql = "IF @n > 2 THEN RAISE USING MESSAGE = CONCAT('version conflict: ', CAST(@n AS STRING)); END IF;"
    config = bigquery.QueryJobConfig(query_parameters=[Scalar("n", "INT64", 3)])
    with pytest.raises(BadRequest, match="version conflict: 3"):
        _query(client, sql, *config.query_parameters)
    with pytest.raises(BadRequest, match="version conflict: 3"):
        client.query_and_wait(sql, job_config=config, retry=NO_RETRY, job_retry=NO_RETRY)


def test_query_and_wait_raises_when_the_query_fails(client: bigquery.Client) -> None:
    # bqemulator alone answers a failed jobs.query with HTTP 200 and no rows; the launcher restores the error.
    with pytest.raises(BadRequest, match="boom"):
        client.query_and_wait("SELECT ERROR('boom') AS x", retry=NO_RETRY, job_retry=NO_RETRY)
    with pytest.raises(NotFound):
        client.query_and_wait(f"SELECT * FROM {DATASET}.missing_table", retry=NO_RETRY, job_retry=NO_RETRY)


def test_unknown_parameter_in_script_is_rejected(client: bigquery.Client) -> None:
    with pytest.raises(BadRequest, match="Query parameter 'missing' not found"):
        _query(client, "SELECT 1 AS one; SELECT @missing AS m;", Scalar("present", "STRING", "x"))


def test_rewrite_named_parameters_skips_literals_identifiers_and_comments() -> None:
    variables = {"a": "va", "b_2": "vb"}
    sql = (
        "SELECT @a, @A, @b_2, '@a', \"@a\", '''x @a''', r'\\' @a', `@a`, @@row_count, 'it\\'s @a' -- @a\n"
        "/* @a */ # @a\n, @a"
    )
    assert rewrite_named_parameters(sql, variables) == (
        "SELECT va, va, vb, '@a', \"@a\", '''x @a''', r'\\' @a', `@a`, @@row_count, 'it\\'s @a' -- @a\n"
        "/* @a */ # @a\n, va"
    )
    assert PARAM_VARIABLE_PREFIX.startswith("__")
