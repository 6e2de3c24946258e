"""Bulk import over HTTP (POST /api/v1/integrations/{org}/import), on both
backends: exact per-item results, constant store jobs, one encrypt per new
item, a crypto failure on one item, dry run, validation on the bounded pool.

An organization has one integration per provider, so a 100-item file needs
many providers: the registry here adds 60 YAML-only SaaS providers (as
tests/test_registry_extension.py does) answered by a who-am-I stand-in.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.app.wiring import Adapters
from shared.domain.errors import EncryptionFailed
from shared.domain.providers import load_registry
from shared.inbound import http
from shared.jobs.bulk_import import MAX_IMPORT_ITEMS
from shared.usecases.credential_checks import MAX_SECRET_CHARS
from shared.usecases.integrations import IntegrationService
from tests.conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY
from tests.fakes.fleet_registry import write_fleet_registry

SAAS = [f"saas{number:02d}" for number in range(60)]
IMPORT = "/api/v1/integrations/acme/import"


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


class WhoAmI:
    """``GET /<provider>/me``: 200 for a token containing "good", else 401; counts concurrency."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.calls: Counter[str] = Counter()
        self.base = ""  # http://127.0.0.1:<port>, once served

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.calls[request.path.split("/")[1]] += 1
        try:
            time.sleep(self.latency)
            good = "good" in request.headers.get("Authorization", "")
            response = Response('{"id": "me"}', 200) if good else Response("{}", 401)
        finally:
            with self.lock:
                self.in_flight -= 1
        return response(environ, start_response)


@pytest.fixture
def who_am_i():
    app = WhoAmI()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app.base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield app
    finally:
        server.shutdown()


@pytest.fixture
def fleet_service(tmp_path, settings, who_am_i):
    path = write_fleet_registry(tmp_path, SAAS)
    settings.provider_base_urls.update({name: f"{who_am_i.base}/{name}" for name in SAAS})
    return IntegrationService(Adapters(settings), load_registry(path))


@pytest.fixture
def fleet(fleet_service):
    from shared.commands.local_server import create_app

    http.use_service(fleet_service)
    key = fleet_service.create_api_key("acme")[1]
    client = create_app().test_client()
    client.get("/api/v1/integrations/acme", headers={"X-API-Key": key})  # the key is cached, as in a warm instance
    try:
        yield fleet_service, client, {"X-API-Key": key}
    finally:
        http.use_service(None)


def good(name: str) -> dict:
    return {"provider": name, "credentials": {"api_key": f"tok_good{name}"}}


def mixed_items() -> tuple[list[dict], list[tuple[str, str | None]]]:
    """100 items and the (result, code) each must get, in order."""
    items: list[dict] = []
    expected: list[tuple[str, str | None]] = []

    def add(item, result, code=None):
        items.append(item)
        expected.append((result, code))

    add({"provider": "openai", "credentials": {"api_key": OPENAI_KEY}}, "exists", "integration_exists")
    add(
        {"provider": "anthropic", "credentials": {"api_key": ANTHROPIC_KEY}, "expires_at": "2031-01-01T00:00:00Z"},
        "created",
    )
    add(
        {"provider": "gemini", "credentials": {"api_key": GEMINI_KEY}, "config": {"project_id": "acme-prod"}}, "created"
    )
    for number, name in enumerate(SAAS[:50]):
        add(good(name), "created")
        if number % 5 == 0:  # the same provider again: one integration per provider
            add(good(name), "invalid", "duplicate_in_import")
    for name in SAAS[50:58]:  # bad format
        add({"provider": name, "credentials": {"api_key": "not-a-token"}}, "invalid", "invalid_credential_format")
    for number in range(8):
        add({"provider": f"nosuch{number}", "credentials": {"api_key": "tok_good123"}}, "invalid", "unknown_provider")
    for name in SAAS[58:60]:  # oversized secret
        add({"provider": name, "credentials": {"api_key": "tok_" + "a" * MAX_SECRET_CHARS}}, "invalid", "bad_request")
    add(
        {"provider": "gemini", "credentials": {"api_key": GEMINI_KEY}, "config": {"nope": "x"}},
        "invalid",
        "bad_request",
    )
    add({"provider": SAAS[0], "credentials": {"api_key": "tok_x"}, "extra": 1}, "invalid", "bad_request")
    add("not an object", "invalid", "bad_request")
    add({"provider": SAAS[1]}, "invalid", "bad_request")
    add(
        {"provider": SAAS[2], "credentials": {"api_key": "tok_goodagain"}, "expires_at": "tomorrow"},
        "invalid",
        "bad_request",
    )
    while len(items) < 100:
        add({"credentials": {"api_key": "tok_good"}}, "invalid", "bad_request")
    return items, expected


def test_hundred_mixed_items_get_exact_results_in_order(fleet):
    service, client, headers = fleet
    store = service.adapters.store
    setup = client.post(
        "/api/v1/integrations/acme/openai/setup", json={"credentials": {"api_key": OPENAI_KEY}}, headers=headers
    )
    assert setup.status_code == 201
    before = store.get_integration_with_credential("acme", "openai")
    items, expected = mixed_items()
    assert len(items) == 100
    store.counters.clear()
    service.adapters.cipher.counters.clear()

    response = client.post(IMPORT, json={"items": items}, headers=headers)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(100))
    assert [(r["result"], r.get("code")) for r in results] == expected
    created = [r for r in results if r["result"] == "created"]
    assert len(created) == 52 and body["summary"] == {
        "created": 52,
        "exists": 1,
        "invalid": 47,
        "failed": 0,
        "would_create": 0,
    }
    assert all(r["status"] == "pending" and r["integration_id"] for r in created)
    assert all(r["error"] for r in results if r["result"] != "created")
    assert "more than once" in results[4]["error"] and results[4]["provider"] == SAAS[0]
    # one encrypt per new item; one read and one write for the whole batch
    assert service.adapters.cipher.counters["encrypt"] == 52
    assert store.counters["jobs"] == 2 + store.counters["conflict_retries"] + store.counters["transient_retries"]

    listed = {i.provider: i for i in store.list_integrations("acme")}
    assert set(listed) == {"openai", "anthropic", "gemini", *SAAS[:50]}
    assert store.get_integration_with_credential("acme", "openai") == before  # "exists" left untouched
    for result in created:
        integration, credential = store.get_integration_with_credential("acme", result["provider"])
        assert integration.integration_id == result["integration_id"] and integration.created_by
        assert service.decrypt_credential(integration, credential).startswith(("tok_good", "sk-ant", "AIza"))
    assert listed["gemini"].config == {"project_id": "acme-prod"}
    assert listed["anthropic"].expires_at.year == 2031
    audit = Counter((a.action, a.outcome) for a in store.list_audit("acme", limit=500))
    assert audit == {("setup", "success"): 1, ("import", "success"): 52, ("import", "rejected"): 8}


def test_store_jobs_are_the_same_for_ten_and_a_hundred_items(fleet):
    service, client, headers = fleet
    store = service.adapters.store
    jobs = {}
    for count in (10, 100):
        items = [good(SAAS[n % len(SAAS)]) if n < len(SAAS) else {"provider": "nosuch"} for n in range(count)]
        store.counters.clear()
        response = client.post(IMPORT, json={"items": items, "validate": True}, headers=headers)
        assert response.status_code == 200
        assert all(r["status"] == "active" for r in response.get_json()["results"] if r["result"] == "created")
        jobs[count] = store.counters["jobs"] - store.counters["conflict_retries"] - store.counters["transient_retries"]
    assert jobs == {10: 3, 100: 3}  # read, write, validation results


def test_crypto_failure_on_one_item_leaves_the_others_as_reported(fleet):
    service, client, headers = fleet
    real = service.adapters.cipher
    victim = good(SAAS[7])

    class FailsOnOneSecret:
        """The real cipher, except KMS refuses one item's plaintext."""

        counters = real.counters

        def encrypt(self, plaintext, associated_data):
            if plaintext == victim["credentials"]["api_key"].encode():
                raise EncryptionFailed()
            return real.encrypt(plaintext, associated_data)

        def decrypt(self, ciphertext, associated_data):
            return real.decrypt(ciphertext, associated_data)

    service.adapters.__dict__["cipher"] = FailsOnOneSecret()
    items = [good(name) for name in SAAS[:15]]
    body = client.post(IMPORT, json={"items": items}, headers=headers).get_json()
    results = body["results"]
    assert results[7] == {
        "index": 7,
        "provider": SAAS[7],
        "result": "failed",
        "code": "encryption_failed",
        "error": "Credential encryption failed",
    }
    assert [r["result"] for i, r in enumerate(results) if i != 7] == ["created"] * 14
    store = service.adapters.store
    assert store.get_integration("acme", SAAS[7]) is None
    assert {i.provider for i in store.list_integrations("acme")} == set(SAAS[:15]) - {SAAS[7]}
    assert [(a.outcome, a.detail) for a in store.list_audit("acme", SAAS[7])] == [
        ("failure", "Credential encryption failed")
    ]
    # The failed item imports on a second try; the others now exist.
    service.adapters.__dict__["cipher"] = real
    again = client.post(IMPORT, json={"items": items}, headers=headers).get_json()["results"]
    assert [r["result"] for r in again] == ["exists"] * 7 + ["created"] + ["exists"] * 7


def test_dry_run_writes_and_encrypts_nothing(fleet, who_am_i):
    service, client, headers = fleet
    store = service.adapters.store
    items, expected = mixed_items()
    store.counters.clear()
    service.adapters.cipher.counters.clear()
    body = client.post(IMPORT, json={"items": items, "dry_run": True, "validate": True}, headers=headers).get_json()
    wanted = [("would_create" if result == "created" else result, code) for result, code in expected]
    wanted[0] = ("would_create", None)  # openai does not exist here
    assert [(r["result"], r.get("code")) for r in body["results"]] == wanted
    assert body["dry_run"] is True and body["summary"]["would_create"] == 53
    assert {r["status"] for r in body["results"] if r["result"] == "would_create"} == {"active"}
    assert sum(who_am_i.calls.values()) == 50  # validated against the providers, nothing stored
    assert store.counters["jobs"] == 1 and service.adapters.cipher.counters["encrypt"] == 0
    assert store.list_integrations("acme") == [] and store.list_audit("acme") == []


def test_validation_runs_on_the_bounded_pool(fleet, who_am_i, settings):
    service, client, headers = fleet
    who_am_i.latency = 0.05
    service.adapters.settings = replace(settings, revalidation_concurrency=4, revalidation_per_provider=1)
    revoked = {"provider": SAAS[20], "credentials": {"api_key": "tok_revokedtoken"}}
    items = [good(name) for name in SAAS[:20]] + [revoked]
    body = client.post(IMPORT, json={"items": items, "validate": True}, headers=headers).get_json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["active"] * 20 + ["error"]
    assert body["results"][20]["error"] == f"{SAAS[20].upper()} API key is invalid or expired"
    assert 1 < who_am_i.peak <= 4
    stored = service.adapters.store.get_integration("acme", SAAS[0])
    assert stored.status == "active" and stored.validated_at is not None


def test_validating_an_import_alerts_each_change_to_error_or_expired_as_validate_does(fleet, who_am_i):
    """Every change to error or expired alerts the org, whoever caused it; an import that validates is one.
    An item whose expires_at has passed is expired, as a validate of it is, without asking the provider."""
    service, client, headers = fleet
    store = service.adapters.store
    items = [
        good(SAAS[0]),
        {"provider": SAAS[1], "credentials": {"api_key": "tok_revokedtoken"}},
        {**good(SAAS[2]), "expires_at": "2020-01-01T00:00:00Z"},
    ]
    body = client.post(IMPORT, json={"items": items, "validate": True}, headers=headers).get_json()
    assert [r["status"] for r in body["results"]] == ["active", "error", "expired"]
    assert SAAS[2] not in who_am_i.calls  # an expired credential is not sent anywhere
    alerts = {(alert.provider, alert.kind) for alert in store.list_alerts("acme")}
    assert alerts == {(SAAS[1], "error"), (SAAS[2], "expired")}
    assert {alert.delivery_status for alert in store.list_alerts("acme")} == {"no_webhook"}
    # A dry run stores nothing, so it alerts nothing.
    client.post(
        IMPORT,
        json={"items": [{**good(SAAS[3]), "expires_at": "2020-01-01T00:00:00Z"}], "dry_run": True, "validate": True},
        headers=headers,
    )
    assert len(store.list_alerts("acme")) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": []}, "empty"),
        ({"items": {"provider": "openai"}}, "must be a list"),
        ({"items": [good("saas00")] * (MAX_IMPORT_ITEMS + 1)}, "At most 100 items"),
        ({"items": [good("saas00")], "dry_run": "yes"}, "'dry_run' must be true or false"),
        ({"items": [good("saas00")], "force": True}, "Unknown field"),
        ({}, "Missing required field"),
    ],
)
def test_bad_batches_are_refused_whole_with_400(fleet, body, message):
    service, client, headers = fleet
    response = client.post(IMPORT, json=body, headers=headers)
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert service.adapters.store.list_integrations("acme") == []


def test_import_needs_the_orgs_key(fleet):
    service, client, _ = fleet
    other = service.create_api_key("globex")[1]
    response = client.post(IMPORT, json={"items": [good("saas00")]}, headers={"X-API-Key": other})
    assert response.status_code == 403 and service.adapters.store.list_integrations("acme") == []


def test_a_lost_validation_write_keeps_the_created_items_pending(fleet, backend):
    if backend != "local":
        pytest.skip("the failure is injected with a SQLite trigger")
    import sqlite3

    service, client, headers = fleet
    with sqlite3.connect(service.adapters.store.path) as connection:
        connection.execute(
            "CREATE TRIGGER lose_validation BEFORE INSERT ON integration_audit_log WHEN NEW.action = 'validate' "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    body = client.post(IMPORT, json={"items": [good(SAAS[0])], "validate": True}, headers=headers).get_json()
    (result,) = body["results"]
    assert (result["result"], result["status"], result["code"]) == ("created", "pending", "store_unavailable")
    assert "validate it again" in result["error"]
    assert service.adapters.store.get_integration("acme", SAAS[0]).status == "pending"


# --- setup's rules, item by item -----------------------------------------------------------------


def test_toggle_only_providers_are_refused_as_setup_refuses_them(fleet):
    service, client, headers = fleet
    items = [
        {"provider": "chatgpt_plus", "credentials": {"api_key": "tok_good123"}},
        {"provider": "railway", "credentials": {"api_key": "tok_good123"}},
        good(SAAS[0]),
    ]
    body = client.post(IMPORT, json={"items": items}, headers=headers).get_json()
    refused = body["results"][:2]
    assert [(r["result"], r["code"], r["provider"]) for r in refused] == [
        ("invalid", "provider_not_connectable", "chatgpt_plus"),
        ("invalid", "provider_not_connectable", "railway"),
    ]
    assert body["results"][2]["result"] == "created"
    setup = client.post(
        "/api/v1/integrations/acme/railway/setup", json={"credentials": {"api_key": "tok_x"}}, headers=headers
    )
    assert setup.status_code == 400 and setup.get_json()["error"] == refused[1]["error"]  # the same rule, word for word
    assert {i.provider for i in service.adapters.store.list_integrations("acme")} == {SAAS[0]}


# A secret pasted into the wrong place: no answer may carry it back.
CANARY = "sk-CANARY-9f2b7c1e5d3a4b6c8d0e1f2a3b4c5d6e7f8a9b0c"


def canary_items() -> list:
    c = CANARY
    aws_config = {"export_bucket": "acme-cur", "export_prefix": "cur", "region": "us-east-1"}
    service_account = {
        "type": "service_account",
        "project_id": "acme",
        "private_key_id": c,
        "private_key": c,
        "client_email": c,
        "token_uri": f"https://{c}.example/token",
    }
    return [
        c,  # the item itself
        {"provider": c, "credentials": {"api_key": "tok_good123"}},  # the provider's name
        {"provider": {c: c}, "credentials": {"api_key": "tok_good123"}},  # a provider that is not a name
        {c: c, "provider": SAAS[0], "credentials": {"api_key": "tok_good123"}},  # an item field, its value
        {"provider": SAAS[1], "credentials": {c: "tok_good123"}},  # a credential field's name
        {"provider": SAAS[2], "credentials": {"api_key": c}},  # the secret, in the wrong format
        {"provider": SAAS[3], "credentials": {"api_key": {c: c}}},  # a secret that is not a string
        {"provider": SAAS[4], "credentials": c},  # credentials that are not an object
        {"provider": SAAS[5], "credentials": {"api_key": "tok_good5aaa"}, "config": {c: c}},  # a config field
        {"provider": "gemini", "credentials": {"api_key": GEMINI_KEY}, "config": {"project_id": c}},  # its value
        {"provider": SAAS[6], "credentials": {"api_key": "tok_good6aaa"}, "config": c},  # config not an object
        {"provider": SAAS[7], "credentials": {"api_key": "tok_good7aaa"}, "expires_at": c},  # the expiry
        {"provider": "gcp", "credentials": {"service_account_json": c}},  # a key that is not JSON
        {"provider": "gcp", "credentials": {"service_account_json": service_account}},  # every field of a key
        {"provider": "gcp", "credentials": {"service_account_json": {c: c}}},
        {"provider": "aws", "credentials": {"role_arn": c}, "config": aws_config},  # not an ARN
        {"provider": "aws", "credentials": {"role_arn": f"arn:{c}:iam::123456789012:role/r"}, "config": aws_config},
        {"provider": "azure", "credentials": {"tenant_id": c, "client_id": c, "client_secret": c + "\x00"}},
        {"provider": "azure", "credentials": {c: c, "tenant_id": c}},
        {"provider": "canva", "credentials": {"oauth_token": c}},  # an OAuth provider takes no pasted token
        {"provider": "chatgpt_plus", "credentials": {"api_key": c}},  # a toggle-only tool
    ]


def test_no_answer_quotes_what_the_caller_sent(fleet, caplog):
    service, client, headers = fleet
    items = canary_items()
    for dry_run in (False, True):
        response = client.post(IMPORT, json={"items": items, "dry_run": dry_run}, headers=headers)
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        assert CANARY not in text and CANARY[3:20] not in text
        results = response.get_json()["results"]
        assert [r["result"] for r in results] == ["invalid"] * len(items), results
        assert all(r["error"] and r["code"] for r in results)
        assert results[1]["provider"] is None and results[2]["provider"] is None  # only registry names come back
    # The same places through setup itself, one request each.
    for item in items[3:]:
        path = f"/api/v1/integrations/acme/{item['provider'] if isinstance(item['provider'], str) else 'x'}/setup"
        answer = client.post(path, json={k: v for k, v in item.items() if k != "provider"}, headers=headers)
        assert answer.status_code in (400, 404) and CANARY not in answer.get_data(as_text=True), path
    stored = [a.detail or "" for a in service.adapters.store.list_audit("acme", limit=500)]
    assert CANARY not in "".join(stored) and CANARY not in caplog.text
    assert service.adapters.store.list_integrations("acme") == []


def _store_bytes(service) -> dict[str, bytes]:
    """Every file of the data dir: the database, its write-ahead log, the keyring, the pepper.

    Not SQLite's ``-shm``: a shared-memory index of the log that readers update
    too (their read marks), rebuilt from the log whenever it is lost; no data.
    """
    data_dir = service.adapters.settings.data_dir
    files = sorted(path for path in data_dir.rglob("*") if path.is_file() and not path.name.endswith("-shm"))
    return {str(path): path.read_bytes() for path in files}


def test_a_dry_run_leaves_the_store_byte_identical(fleet, backend):
    """An AWS item included: a dry run must not create the org's external ID (setup-instructions' job)."""
    service, client, headers = fleet
    aws_item = {
        "provider": "aws",
        "credentials": {"role_arn": "arn:aws:iam::222222222222:role/cost-export-reader"},
        "config": {"export_bucket": "acme-cur", "export_prefix": "cur", "region": "us-east-1"},
    }
    items = [aws_item, *mixed_items()[0][:40]]
    store = service.adapters.store
    before = _store_bytes(service)
    jobs = store.counters["jobs"]
    body = client.post(IMPORT, json={"items": items, "dry_run": True}, headers=headers).get_json()
    assert body["results"][0]["result"] == "would_create" and body["summary"]["would_create"] > 30
    assert store.counters["jobs"] - jobs == 2  # the org's integrations, the external ID looked up: reads only
    assert store.find_external_id("acme", "aws") is None
    if backend == "local":
        assert _store_bytes(service) == before
    assert store.list_integrations("acme") == [] and store.list_audit("acme") == []
    # With an external ID made by setup-instructions, the dry run reads it and still writes nothing.
    made = store.external_id("acme", "aws", "pi-made-by-setup-instructions")
    before = _store_bytes(service)
    client.post(IMPORT, json={"items": [aws_item], "dry_run": True}, headers=headers)
    assert store.find_external_id("acme", "aws") == made
    if backend == "local":
        assert _store_bytes(service) == before
