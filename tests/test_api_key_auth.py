"""Org API keys: signed keys confirmed inside the request's own store job, on both backends.

A cold request (a fresh service instance) pays no store round trip for its
key; a key of another org or role is refused before anything is read; a
revoked key stops working within AUTH_CACHE_SECONDS; a refused key reads and
writes nothing; keys issued before signatures keep working.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

import pytest

from shared.domain.models import ApiKeyRecord
from shared.inbound import http
from tests.conftest import OPENAI_KEY, key_parts, make_service

BASE = "/api/v1/integrations"


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


def cold(settings):
    """A fresh instance over the same store, serving the WSGI client: nothing cached."""
    service = make_service(settings)
    http.use_service(service)
    return service


def jobs_of(service, client, method, path, key, body=None):
    """(status, store jobs) of one request to ``service`` (which serves ``client``)."""
    service.adapters.store.counters.clear()
    response = client.open(
        path if path.startswith("/api/v1/admin") else BASE + path, method=method, json=body, headers={"X-API-Key": key}
    )
    return response.status_code, service.adapters.store.counters["jobs"]


def setup(client, key):
    return client.post(
        f"{BASE}/acme/openai/setup", json={"credentials": {"api_key": OPENAI_KEY}}, headers=key_header(key)
    )


def key_header(key):
    return {"X-API-Key": key}


def unsigned_key(service, org_slug):
    """A key as they were issued before signatures: ik_<key id>_<secret>, stored as its peppered hash."""
    key_id = secrets.token_hex(8)
    api_key = f"ik_{key_id}_{secrets.token_urlsafe(32)}"
    service.adapters.store.add_api_key(
        ApiKeyRecord(key_id=key_id, org_slug=org_slug, key_hash=service._hash_api_key(api_key))
    )
    return api_key


def test_keys_are_signed_for_their_org_and_role(service):
    record, api_key = service.create_api_key("acme-corp_eu")
    org, key_id, role, _ = key_parts(api_key)
    assert (org, key_id, role) == ("acme-corp_eu", record.key_id, "o")
    admin_record, admin_key = service.create_api_key("ops", is_admin=True)
    assert key_parts(admin_key)[2] == "a" and admin_record.is_admin
    assert api_key not in str(record)  # only its peppered hash is kept


def test_a_cold_request_pays_no_round_trip_for_its_key(client, org_key, settings, backend):
    setup(client, org_key)
    fresh = cold(settings)
    assert jobs_of(fresh, client, "GET", "/acme", org_key) == (200, 1)
    assert jobs_of(fresh, client, "GET", "/acme", org_key) == (200, 1)
    if backend == "gcp":
        # The guarded read is still one SELECT: BigQuery answers it in short-query mode, without a job.
        assert fresh.adapters.store.counters["short_queries"] == 1


def test_another_orgs_key_is_refused_before_anything_is_read(client, org_key, other_org_key, settings):
    setup(client, org_key)
    fresh = cold(settings)
    for method, path in (
        ("GET", "/acme"),
        ("GET", "/acme/openai"),
        ("POST", "/acme/openai/validate"),
        ("DELETE", "/acme/openai"),
        ("PUT", "/acme/openai"),
    ):
        assert jobs_of(fresh, client, method, path, other_org_key) == (403, 0), path
    _, admin_key = fresh.create_api_key("ops", is_admin=True)
    assert jobs_of(fresh, client, "GET", "/acme", admin_key) == (403, 0)


def test_a_forged_signature_costs_nothing(client, org_key, settings):
    fresh = cold(settings)
    org, key_id, role, signature = key_parts(org_key)
    other = "A" if signature[0] != "A" else "B"
    for forged in (
        f"ik_v2_{org}_{key_id}_{role}_{other}{signature[1:]}",  # tampered signature
        f"ik_v2_{org}_{key_id}_a_{signature}",  # claims admin
        f"ik_v2_{org}_{secrets.token_hex(8)}_{role}_{signature}",  # another key id
    ):
        assert jobs_of(fresh, client, "GET", "/acme", forged) == (401, 0)


def test_a_key_that_is_not_on_file_reads_and_writes_nothing(client, org_key, service, settings):
    """Signed with the right pepper but never stored: the guard in the request's first job refuses it."""
    setup(client, org_key)
    key_id = secrets.token_hex(8)
    ghost = f"ik_v2_acme_{key_id}_o_{service._key_signature('acme', key_id, 'o')}"
    assert jobs_of(cold(settings), client, "GET", "/acme", ghost) == (401, 1)
    audit_before = len(service.adapters.store.list_audit("acme"))
    anthropic = {"credentials": {"api_key": "sk-ant-admin01-TestKeyAbcdefghijklmnop0123456789"}}
    for method, path, body in (
        ("PUT", "/acme/openai", {"enabled": False}),
        ("DELETE", "/acme/openai", None),
        ("POST", "/acme/anthropic/setup", anthropic),
    ):
        assert jobs_of(cold(settings), client, method, path, ghost, body) == (401, 1), path
    assert service.adapters.store.get_integration("acme", "openai").status == "pending"
    assert service.adapters.store.get_integration("acme", "anthropic") is None
    assert len(service.adapters.store.list_audit("acme")) == audit_before


def test_a_revoked_key_stops_working_within_the_cache_window(client, service, settings):
    window = 1.0
    settings = replace(settings, auth_cache_seconds=window)
    warm = cold(settings)
    record, api_key = warm.create_api_key("acme")
    assert jobs_of(warm, client, "GET", "/acme", api_key) == (200, 1)
    revoked_at = time.monotonic()
    assert service.adapters.store.revoke_api_key(record.key_id)
    # A fresh instance refuses it at once, still in one job.
    assert jobs_of(cold(settings), client, "GET", "/acme", api_key) == (401, 1)
    # The warm instance trusts its confirmation for the window at most, then asks again inside the request's job.
    http.use_service(warm)
    while time.monotonic() - revoked_at < window:
        time.sleep(0.05)
    assert jobs_of(warm, client, "GET", "/acme", api_key) == (401, 1)


def test_a_request_without_a_store_job_still_confirms_its_key(client, org_key, service, settings):
    """An answer the operation reaches without the store (an unknown provider) waits for the lookup."""
    record, revoked_key = service.create_api_key("acme")
    service.adapters.store.revoke_api_key(record.key_id)
    fresh = cold(settings)
    assert jobs_of(fresh, client, "GET", "/acme/no-such-provider", org_key) == (404, 1)
    assert jobs_of(fresh, client, "GET", "/acme/no-such-provider", org_key) == (404, 0)  # confirmed, cached
    assert jobs_of(cold(settings), client, "GET", "/acme/no-such-provider", revoked_key) == (401, 1)


def test_keys_issued_before_signatures_keep_working(client, service, settings):
    api_key = unsigned_key(service, "acme")
    setup(client, api_key)
    fresh = cold(settings)
    # Looked up first, as before (the key does not say its org), then cached.
    assert jobs_of(fresh, client, "GET", "/acme", api_key) == (200, 2)
    assert jobs_of(fresh, client, "GET", "/acme", api_key) == (200, 1)
    assert jobs_of(cold(settings), client, "GET", "/globex", api_key) == (403, 1)


def test_unknown_and_known_unsigned_key_ids_cost_the_same(client, service, settings):
    """Timing must not tell key ids apart: a wrong secret for a real id and an unknown id take one lookup each."""
    real = unsigned_key(service, "acme")
    wrong_secret = f"ik_{real.split('_')[1]}_{secrets.token_urlsafe(32)}"
    unknown = f"ik_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    for api_key in (wrong_secret, unknown):
        assert jobs_of(cold(settings), client, "GET", "/acme", api_key) == (401, 1)


def test_admin_operations_confirm_their_key_before_they_start(client, service, settings):
    """Revalidation and key rotation reach beyond the store (KMS, providers): a lookup first, then cached."""
    record, admin_key = service.create_api_key("ops", is_admin=True)
    fresh = cold(settings)
    assert jobs_of(fresh, client, "POST", "/api/v1/admin/keys", admin_key)[0] == 405
    assert jobs_of(fresh, client, "GET", "/api/v1/admin/keys", admin_key) == (200, 2)  # lookup + the report's read
    assert jobs_of(fresh, client, "GET", "/api/v1/admin/keys", admin_key) == (200, 1)
    service.adapters.store.revoke_api_key(record.key_id)
    assert jobs_of(cold(settings), client, "GET", "/api/v1/admin/keys", admin_key) == (401, 1)
