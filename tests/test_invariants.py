"""Invariants of a credential service: atomic writes, AAD binding, one winner
under concurrency, no plaintext in logs, and the per-operation store/KMS budget."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter

import pytest

from shared.crypto import EncryptedSecret
from shared.domain.errors import EncryptionFailed, IntegrationAlreadyExists
from tests.conftest import OPENAI_KEY, key_with

BASE = "/api/v1/integrations/acme"
WEBHOOK = "/api/v1/organizations/acme/webhook"


class FailingCipher:
    """A cipher port whose backend is down (what a KMS outage looks like to the service)."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> EncryptedSecret:
        self.counters["encrypt"] += 1
        raise EncryptionFailed()

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        self.counters["decrypt"] += 1
        raise EncryptionFailed()


def _rows(service, table):
    with sqlite3.connect(service.adapters.store.path) as connection:
        return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _fail_inserts_into(service, table):
    with sqlite3.connect(service.adapters.store.path) as connection:
        connection.execute(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )


def _setup(client, key, secret=OPENAI_KEY):
    return client.post(BASE + "/openai/setup", json={"credentials": {"api_key": secret}}, headers={"X-API-Key": key})


def test_kms_failure_during_setup_stores_nothing(client, org_key, service):
    service.adapters.__dict__["cipher"] = FailingCipher()
    response = _setup(client, org_key)
    assert response.status_code == 503 and response.get_json()["error"] == "Credential encryption failed"
    assert _rows(service, "org_integrations") == 0 and _rows(service, "org_credentials") == 0
    assert [(a.action, a.outcome) for a in service.adapters.store.list_audit("acme")] == [("setup", "failure")]


def test_store_failure_mid_setup_leaves_nothing_behind(client, org_key, service):
    _fail_inserts_into(service, "integration_audit_log")  # the last of the three inserts
    response = _setup(client, org_key)
    assert response.status_code == 503 and response.get_json()["success"] is False
    assert _rows(service, "org_integrations") == 0 and _rows(service, "org_credentials") == 0


def test_store_failure_mid_rotation_keeps_the_old_credential(client, org_key, service):
    _setup(client, org_key)
    before = service.adapters.store.get_integration_with_credential("acme", "openai")
    _fail_inserts_into(service, "org_credentials")
    response = client.post(
        BASE + "/openai/rotate", json={"new_credentials": {"api_key": key_with("new")}}, headers={"X-API-Key": org_key}
    )
    assert response.status_code == 503
    assert service.adapters.store.get_integration_with_credential("acme", "openai") == before


def test_ciphertext_moved_to_another_row_does_not_decrypt(client, org_key, other_org_key, service):
    _setup(client, org_key)
    client.post(
        "/api/v1/integrations/globex/openai/setup",
        json={"credentials": {"api_key": key_with("globex")}},
        headers={"X-API-Key": other_org_key},
    )
    with sqlite3.connect(service.adapters.store.path) as connection:
        connection.execute(
            "UPDATE org_credentials SET encrypted_value = "
            "(SELECT encrypted_value FROM org_credentials WHERE org_slug = 'acme') WHERE org_slug = 'globex'"
        )
    response = client.post("/api/v1/integrations/globex/openai/validate", headers={"X-API-Key": other_org_key})
    assert response.status_code == 503 and response.get_json()["error"] == "Credential encryption failed"
    assert service.adapters.store.get_integration("globex", "openai").status == "pending"


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_parallel_setups_have_exactly_one_winner(service, backend):
    caller = service.authenticate(service.create_api_key("acme")[1], "acme", "req")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            service.setup(caller, "openai", {"api_key": key_with(f"n{index}")}, None, None)
            outcomes.append("created")
        except IntegrationAlreadyExists as error:
            assert error.message == "Integration already exists for OpenAI"
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]
    assert len(service.adapters.store.list_integrations("acme")) == 1
    winner = service.adapters.store.get_integration_with_credential("acme", "openai")
    assert winner is not None  # the winner's credential row is there, joined to its integration
    if backend == "local":
        assert _rows(service, "org_credentials") == 1  # the losers left no credential behind


def test_no_secret_in_logs_even_when_provider_echoes_it(client, org_key, caplog):
    secret = key_with("bad")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="integrations")  # whatever level an earlier test configured
    _setup(client, org_key, secret)
    client.post(BASE + "/openai/validate", headers={"X-API-Key": org_key})
    client.post(BASE + "/openai/rotate", json={"new_credentials": {"api_key": secret}}, headers={"X-API-Key": org_key})
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert caplog.records and secret not in logged and secret[8:-4] not in logged and org_key not in logged


@pytest.mark.parametrize("backend", ["local", "gcp"])
@pytest.mark.parametrize("instance", ["cold", "warm"])
@pytest.mark.parametrize(
    ("operation", "jobs", "encrypts", "decrypts"),
    [
        ("setup", 1, 1, 0),
        ("validate", 2, 0, 1),
        ("list", 1, 0, 0),
        ("get", 1, 0, 0),
        ("update", 1, 0, 0),
        ("rotate", 2, 1, 0),
        ("delete", 1, 0, 0),
        ("webhook_set", 1, 0, 0),
        ("webhook_get", 1, 0, 0),
        ("webhook_delete", 1, 0, 0),
        ("alerts", 1, 0, 0),
    ],
)
def test_store_and_crypto_budget_per_operation(
    client, org_key, service, settings, instance, operation, jobs, encrypts, decrypts
):
    """Store jobs (BigQuery jobs in gcp mode) and KMS calls per operation, as docs/architecture.md budgets
    them, the same cold and warm.

    Cold is a fresh service instance (nothing cached; in gcp mode a new BigQuery
    client): the API key is confirmed inside the operation's own first job.
    Warm is the instance after a request with the same key.
    """
    headers = {"X-API-Key": org_key}
    if operation not in ("setup", "webhook_set", "webhook_get", "webhook_delete", "alerts"):
        _setup(client, org_key)
    if operation in ("webhook_get", "webhook_delete"):
        client.put(WEBHOOK, json={"url": "https://hooks.example.com/acme"}, headers=headers)
    if instance == "cold":
        from shared.inbound import http
        from tests.conftest import make_service

        service = make_service(settings)
        http.use_service(service)
    else:
        client.get(BASE, headers=headers)  # warm the auth cache, as a warm instance would be
    store, cipher = service.adapters.store, service.adapters.cipher
    store.counters.clear()
    cipher.counters.clear()
    requests = {
        "setup": lambda: _setup(client, org_key),
        "validate": lambda: client.post(BASE + "/openai/validate", headers=headers),
        "list": lambda: client.get(BASE, headers=headers),
        "get": lambda: client.get(BASE + "/openai", headers=headers),
        "update": lambda: client.put(BASE + "/openai", json={"enabled": False}, headers=headers),
        "rotate": lambda: client.post(
            BASE + "/openai/rotate", json={"new_credentials": {"api_key": key_with("r")}}, headers=headers
        ),
        "delete": lambda: client.delete(BASE + "/openai", headers=headers),
        "webhook_set": lambda: client.put(WEBHOOK, json={"url": "https://hooks.example.com/acme"}, headers=headers),
        "webhook_get": lambda: client.get(WEBHOOK, headers=headers),
        "webhook_delete": lambda: client.delete(WEBHOOK, headers=headers),
        "alerts": lambda: client.get("/api/v1/organizations/acme/alerts", headers=headers),
    }
    response = requests[operation]()
    assert response.status_code in (200, 201), response.get_json()
    assert store.counters["jobs"] == jobs
    assert cipher.counters["encrypt"] == encrypts and cipher.counters["decrypt"] == decrypts


def test_unexpected_failure_is_a_generic_json_500_without_trace(client, org_key, service, caplog):
    _setup(client, org_key)
    with sqlite3.connect(service.adapters.store.path) as connection:
        connection.execute("UPDATE org_integrations SET config = '{broken sk-proj-LEAKY'")
    caplog.set_level(logging.ERROR)
    response = client.get(BASE + "/openai", headers={"X-API-Key": org_key})
    body = response.get_json()
    assert response.status_code == 500 and body["success"] is False
    assert body["error"] == "Internal error; the request id identifies it in the logs"
    assert "Traceback" not in response.get_data(as_text=True)
    record = next(r for r in caplog.records if r.getMessage().startswith("unhandled"))
    assert record.frames and "LEAKY" not in record.getMessage() + str(record.frames)


def test_sqlite_store_files_are_private(tmp_path):
    import os
    import stat

    from shared.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "data" / "integrations.sqlite3")
    store.list_integrations("acme")
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
    for path in (tmp_path / "data").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path.name
