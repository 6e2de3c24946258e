"""Store and crypto adapters for the contract suites: every test runs on each."""

from __future__ import annotations

import uuid

import pytest

from shared.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "bigquery"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "store.sqlite3")
    from shared.store.bigquery import BigQueryStore

    emulator = request.getfixturevalue("gcp_stack").bigquery
    # A dataset per test keeps tests independent on one emulator.
    bigquery_store = BigQueryStore(emulator.jobs(), f"contract_{uuid.uuid4().hex[:12]}", backoff_base_seconds=0.05)
    bigquery_store.bootstrap()
    return bigquery_store
