"""The SQLite store under load and at scale: every lookup it makes uses an index,
and concurrent writers queue without errors."""

from __future__ import annotations

import re
import sqlite3
import threading
from datetime import timedelta
from unittest.mock import patch

import pytest

from shared.domain.caller import Caller
from shared.domain.errors import StoreUnavailable
from shared.domain.models import SettingsChange, utc_now
from shared.jobs.revalidation import revalidate_all
from shared.store.sqlite import SqliteStore
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, key_with, make_service, with_settings

SCHEDULER = Caller(key_id="scheduler", org_slug="*", is_admin=True, request_id="r")
# Statements that read every row by design: the CLI's list of every key, and the
# idempotent backfills on open. (Revalidation reads one index range per page.)
WHOLE_TABLE_READS = ("FROM org_api_keys ORDER BY org_slug",)


def _every_store_call(service) -> None:
    """Each store method at least once, through the service as the API and the scheduler use it."""
    store = service.adapters.store
    record, key = service.create_api_key("acme")
    caller = service.authenticate(key, "acme", "r")
    service.setup(caller, "openai", {"api_key": OPENAI_KEY}, None, utc_now() + timedelta(days=3))
    service.setup(caller, "anthropic", {"api_key": ANTHROPIC_KEY}, None, None)
    service.validate(caller, "openai")
    service.list_integrations(caller)
    service.get(caller, "openai")
    service.update(caller, "anthropic", SettingsChange(expires_at=utc_now() + timedelta(days=90)))
    service.rotate(caller, "anthropic", {"api_key": key_with("rot", ANTHROPIC_KEY)}, None)
    service.set_webhook("acme", "http://127.0.0.1:9/acme", caller)  # nothing listens: delivery fails fast
    service.get_webhook(caller)
    summary = revalidate_all(service, SCHEDULER)  # the expiring OpenAI key raises an alert
    assert summary["alerts"] >= 1
    service.list_alerts(caller)
    store.list_audit("acme")
    store.list_audit("acme", "openai")
    store.list_api_keys("acme")
    store.list_api_keys()
    service.delete_webhook(caller)
    service.delete(caller, "openai")
    store.revoke_api_key(record.key_id)


def test_every_lookup_uses_an_index(settings, tmp_path):
    statements: list[str] = []
    settings = with_settings(
        settings, revalidation_min_interval_seconds=0, webhook_insecure_hosts=("127.0.0.1",), webhook_max_attempts=1
    )
    service = make_service(settings)
    service.adapters.__dict__["store"] = SqliteStore(tmp_path / "traced.sqlite3", trace=statements.append)
    service.adapters.store.counters.clear()
    _every_store_call(service)

    lookups = [s for s in statements if re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT .* SELECT)", s, re.I | re.S)]
    assert len(lookups) > 20
    plans = sqlite3.connect(tmp_path / "traced.sqlite3")
    scans = {}
    for statement in lookups:
        if any(marker in statement for marker in WHOLE_TABLE_READS):
            continue
        rows = plans.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
        # A SCAN of "(subquery-N)" walks a subquery's own result (a page's rows), not a table.
        tables = [
            detail.split()[1]
            for *_, detail in rows
            if detail.startswith("SCAN ") and "USING" not in detail and not detail.startswith("SCAN (subquery")
        ]
        if tables:
            scans[statement[:160]] = tables
    # Backfills on open may walk their own table once (idempotent, start-up only), never a second one per row.
    from shared.store.sqlite.base import BACKFILLS

    per_row_scans = {s: t for s, t in scans.items() if not any(s == b[:160] for b in BACKFILLS) or len(t) > 1}
    assert per_row_scans == {}


def test_revalidation_write_probes_by_index_not_by_scan(settings, tmp_path):
    """The batch write's UPDATE ... WHERE integration_id = ? is an index search (it was a scan per row)."""
    store = SqliteStore(tmp_path / "plan.sqlite3")
    with sqlite3.connect(store.path) as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN UPDATE org_integrations SET status = 'active' WHERE integration_id = 'x'"
        ).fetchall()
    assert any("USING INDEX uq_integration_id" in row[3] for row in plan), plan


def test_a_store_from_before_the_indexes_gets_them_on_open(tmp_path):
    path = tmp_path / "old.sqlite3"
    SqliteStore(path)
    with sqlite3.connect(path) as connection:
        connection.execute("DROP INDEX uq_integration_id")
        connection.execute("DROP INDEX ix_alert_org")
        connection.execute("PRAGMA user_version = 0")  # as every store written before the schema fingerprint
    SqliteStore(path)
    with sqlite3.connect(path) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        fingerprint = connection.execute("PRAGMA user_version").fetchone()[0]
    assert {"uq_integration_id", "ix_alert_org"} <= names
    assert fingerprint != 0


def test_a_store_built_by_this_schema_opens_without_writing(tmp_path):
    """The next process start only reads user_version: it does not wait for a writer holding the lock."""
    path = tmp_path / "built.sqlite3"
    SqliteStore(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a CLI mid-write
    try:
        with patch("shared.store.sqlite.base.BUSY_TIMEOUT_MS", 50):
            reopened = SqliteStore(path)
        assert reopened.counters["jobs"] == 0 and reopened.counters["schema_changes"] == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 0")  # schema unknown: the open builds (and checks) it again
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with patch("shared.store.sqlite.base.BUSY_TIMEOUT_MS", 50), pytest.raises(StoreUnavailable):
            SqliteStore(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("writers", [32])
def test_concurrent_writers_all_succeed(settings, writers):
    """32 threads setting up at once (each its own org): no StoreUnavailable, every row there, one job each."""
    service = make_service(settings)
    orgs = [f"org{index:02d}" for index in range(writers)]
    callers = [service.authenticate(service.create_api_key(org)[1], org, "r") for org in orgs]
    service.adapters.store.counters.clear()
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def set_up(caller: Caller) -> None:
        barrier.wait()
        try:
            service.setup(caller, "openai", {"api_key": OPENAI_KEY}, None, None)
        except BaseException as error:  # any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=set_up, args=(caller,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.adapters.store.counters["jobs"] == writers
    assert sum(len(service.adapters.store.list_integrations(c.org_slug)) for c in callers) == writers
