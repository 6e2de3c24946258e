"""Key rotation and re-encryption onto the primary version, on both backends
(local keyring + SQLite; Cloud KMS fake through the REST adapter + BigQuery
emulator): 1,000 credentials over three versions, an interrupted run resumed
without double work, a user's rotation during the run, the key report."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from shared.crypto import credential_aad
from shared.domain.caller import Caller
from shared.domain.errors import KeyRotationFailed
from shared.domain.models import AuditEvent, Integration, Status, StoredCredential, new_id
from shared.jobs.key_rotation import key_report, rewrap_all, rotate_key
from tests.conftest import OPENAI_KEY, key_with, make_service

OPERATOR = Caller(key_id="ops", org_slug="*", is_admin=True, request_id="test-rewrap")
USER = Caller(key_id="user", org_slug="acme", is_admin=False, request_id="test-user")


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


@pytest.fixture
def service(settings, backend, request):
    """A service on its own key: rotations here must not move other tests' key."""
    if backend == "gcp":
        stack = request.getfixturevalue("gcp_stack")
        key_name = f"{stack.key_name.rsplit('/', 1)[0]}/rotation-{uuid.uuid4().hex[:10]}"
        stack.kms.create_key(key_name)
        settings = replace(settings, kms_key_name=key_name)
    return make_service(settings)


def seed(service, count: int, versions: int = 3) -> dict[str, str]:
    """``count`` credentials of org "acme", spread over ``versions`` key versions, then one more rotation.

    Set-up, not the code under test: rows go in through the store port in one
    call, each encrypted with its own row's associated data.
    """
    cipher, store = service.adapters.cipher, service.adapters.store
    secrets: dict[str, str] = {}
    entries = []

    def make(number: int):
        provider = f"p{number:04d}"
        secret = f"sk-seed-{number:04d}-{uuid.uuid4().hex}"
        credential_id = new_id()
        sealed = cipher.encrypt(secret.encode(), credential_aad("acme", provider, credential_id))
        integration = Integration(new_id(), "acme", provider, Status.ACTIVE, credential_id)
        credential = StoredCredential(
            credential_id, "acme", provider, "api_key", sealed.ciphertext, sealed.key_version, secret[-8:]
        )
        audit = AuditEvent("acme", provider, "setup", "success", "seed", "seed")
        return secret, (integration, credential, audit)

    per_version = -(-count // versions)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for version in range(versions):
            if version:
                cipher.rotate_key()
            chunk = range(version * per_version, min(count, (version + 1) * per_version))
            for secret, entry in pool.map(make, chunk):
                secrets[entry[1].credential_id] = secret
                entries.append(entry)
    assert len(store.import_integrations(entries)) == count
    cipher.rotate_key()  # a new primary that nothing is on yet
    return secrets


def all_credentials(store) -> list[StoredCredential]:
    return store.list_credentials_for_rewrap(primary_version="none", after_credential_id=None, limit=100_000)


def rewrap_audit(store) -> Counter[str]:
    """credential fingerprint -> number of rewrap audit rows."""
    return Counter(a.credential_fingerprint for a in store.list_audit("acme", limit=100_000) if a.action == "rewrap")


def test_thousand_credentials_over_three_versions_all_move_to_the_primary(service):
    secrets = seed(service, 1000)
    store, cipher = service.adapters.store, service.adapters.cipher
    before = key_report(service)
    assert before["primary_version"] == "4" and before["on_primary"] == 0 and before["share_on_primary"] == 0
    assert [(v["version"], v["credentials"], v["unused"]) for v in before["versions"]] == [
        ("1", 334, False),
        ("2", 334, False),
        ("3", 332, False),
        ("4", 0, True),
    ]
    store.counters.clear()
    cipher.counters.clear()

    summary = rewrap_all(service, OPERATOR, batch_size=250)

    assert summary["rewrapped"] == 1000 and summary["skipped"] == 0 and summary["failed"] == 0
    assert summary["more"] is False and summary["batches"] == 4
    # one read + one write per batch, whatever its size, and the read that finds nothing left
    assert summary["store_jobs"] == 2 * 4 + 1
    assert cipher.counters["decrypt"] == 1000 and cipher.counters["encrypt"] == 1000
    after = key_report(service)
    assert after["on_primary"] == 1000 and after["share_on_primary"] == 1.0
    assert [(v["version"], v["credentials"], v["unused"]) for v in after["versions"]] == [
        ("1", 0, True),
        ("2", 0, True),
        ("3", 0, True),
        ("4", 1000, False),
    ]
    rows = all_credentials(store)
    assert len(rows) == 1000 and {row.key_version for row in rows} == {"4"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        plaintexts = list(
            pool.map(
                lambda row: cipher.decrypt(
                    row.encrypted_value, credential_aad(row.org_slug, row.provider, row.credential_id)
                ).decode(),
                rows,
            )
        )
    assert plaintexts == [secrets[row.credential_id] for row in rows]
    assert rewrap_audit(store) == Counter({row.fingerprint: 1 for row in rows})
    # Nothing left: a second run reads once and writes nothing.
    again = rewrap_all(service, OPERATOR, batch_size=250)
    assert (again["rewrapped"], again["batches"], again["store_jobs"], again["kms_calls"]) == (0, 0, 1, 0)


class Killed(BaseException):
    """The process dies (a deploy, an OOM) in the middle of a batch."""


class CipherThatDies:
    """The real cipher until decrypt number ``at``; then the run is killed."""

    def __init__(self, real, at: int) -> None:
        self.real, self.at, self.counters = real, at, real.counters
        self.lock = threading.Lock()
        self.decrypts = 0

    def decrypt(self, ciphertext, associated_data):
        with self.lock:
            self.decrypts += 1
            if self.decrypts >= self.at:
                raise Killed()
        return self.real.decrypt(ciphertext, associated_data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_interrupted_run_resumes_without_double_work(service, backend):
    total, batch = (1000, 200) if backend == "local" else (300, 60)  # the emulator is slow; same shape
    seed(service, total)
    store, real = service.adapters.store, service.adapters.cipher
    service.adapters.__dict__["cipher"] = CipherThatDies(real, at=2 * batch + batch // 4)
    with pytest.raises(Killed):
        rewrap_all(service, OPERATOR, batch_size=batch)
    done = key_report(service)
    assert done["on_primary"] == 2 * batch  # two whole batches; the third was never written
    assert sum(rewrap_audit(store).values()) == 2 * batch

    service.adapters.__dict__["cipher"] = real
    resumed = rewrap_all(service, OPERATOR, batch_size=batch)
    assert resumed["rewrapped"] == resumed["scanned"] == total - 2 * batch and resumed["skipped"] == 0
    assert key_report(service)["share_on_primary"] == 1.0
    audit = rewrap_audit(store)
    assert len(audit) == total and set(audit.values()) == {1}  # each credential moved exactly once


def test_a_rotation_during_the_run_is_not_overwritten(service, simulator):
    seed(service, 30)
    store, real = service.adapters.store, service.adapters.cipher
    service.setup(USER, "openai", {"api_key": OPENAI_KEY}, None, None)
    old_openai = store.get_integration_with_credential("acme", "openai")[1]
    real.rotate_key()  # openai's credential is now off the primary too
    new_key = key_with("rotated")

    class RotatesMidway(CipherThatDies):
        """While the run holds openai's old row, its user rotates the key (real traffic)."""

        def decrypt(self, ciphertext, associated_data):
            if associated_data == credential_aad("acme", "openai", old_openai.credential_id):
                service.adapters.__dict__["cipher"] = real  # the user's request uses the service as usual
                service.rotate(USER, "openai", {"api_key": new_key}, None)
            return self.real.decrypt(ciphertext, associated_data)

    service.adapters.__dict__["cipher"] = RotatesMidway(real, at=10**9)
    summary = rewrap_all(service, OPERATOR, batch_size=100)
    service.adapters.__dict__["cipher"] = real

    assert summary["scanned"] == 31 and summary["rewrapped"] == 30 and summary["skipped"] == 1
    integration, current = store.get_integration_with_credential("acme", "openai")
    assert current.credential_id != old_openai.credential_id and integration.credential_id == current.credential_id
    assert service.decrypt_credential(integration, current) == new_key  # the user's rotation stands
    assert [a.action for a in store.list_audit("acme", "openai")] == ["rotate", "setup"]


def test_two_runs_at_once_move_each_credential_once(service, backend):
    seed(service, 120 if backend == "gcp" else 400)
    store = service.adapters.store
    summaries = []
    threads = [
        threading.Thread(target=lambda: summaries.append(rewrap_all(service, OPERATOR, batch_size=40)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = 120 if backend == "gcp" else 400
    assert sum(s["rewrapped"] for s in summaries) == total
    assert key_report(service)["share_on_primary"] == 1.0
    audit = rewrap_audit(store)
    assert len(audit) == total and set(audit.values()) == {1}


def test_report_never_calls_a_named_version_unused(service):
    seed(service, 3, versions=1)
    store = service.adapters.store
    # A row that names a version the key does not list (say, one destroyed and deleted).
    (integration, credential, audit) = (
        Integration(new_id(), "acme", "orphan", Status.ERROR, "c-orphan"),
        StoredCredential("c-orphan", "acme", "orphan", "api_key", b"x" * 40, "99", "deadbeef"),
        AuditEvent("acme", "orphan", "setup", "success", "seed", "seed"),
    )
    assert store.import_integrations([(integration, credential, audit)])
    report = key_report(service)
    by_version = {v["version"]: v for v in report["versions"]}
    assert by_version["99"] == {
        "version": "99",
        "state": "unknown",
        "primary": False,
        "credentials": 1,
        "share": 0.25,
        "unused": False,
    }
    assert by_version["1"]["state"] == "enabled" and by_version["1"]["unused"] is False
    assert by_version["2"]["primary"] is True and by_version["2"]["unused"] is True
    summary = rewrap_all(service, OPERATOR)
    assert summary["rewrapped"] == 3 and summary["failed"] == 1  # the orphan cannot be decrypted: it stays, counted
    assert {v["version"]: v["unused"] for v in key_report(service)["versions"]} == {"1": True, "2": False, "99": False}


def test_rotate_key_makes_a_new_primary_and_audits_it(service):
    old = service.adapters.cipher.primary_version()
    answer = rotate_key(service, OPERATOR)
    assert answer == {"previous_version": old, "primary_version": str(int(old) + 1)}
    assert service.adapters.cipher.encrypt(b"x", b"aad").key_version == answer["primary_version"]
    (audit,) = service.adapters.store.list_audit("*")
    assert (audit.action, audit.provider, audit.actor) == ("rotate_key", "kms", "ops")


def test_admin_key_routes_over_http(service):
    from shared.commands.local_server import create_app
    from shared.inbound import http

    seed(service, 12)
    http.use_service(service)
    try:
        client = create_app().test_client()
        admin = {"X-API-Key": service.create_api_key("ops", is_admin=True)[1]}
        org = {"X-API-Key": service.create_api_key("acme")[1]}
        assert client.get("/api/v1/admin/keys", headers=org).status_code == 403
        assert client.post("/api/v1/admin/keys/rotate", headers=org).status_code == 403
        assert client.post("/api/v1/admin/keys/rewrap", headers={}).status_code == 401

        keys = client.get("/api/v1/admin/keys", headers=admin).get_json()["keys"]
        assert (keys["primary_version"], keys["on_primary"], keys["total_credentials"]) == ("4", 0, 12)

        rotated = client.post("/api/v1/admin/keys/rotate", headers=admin).get_json()
        assert rotated["rotation"] == {"previous_version": "4", "primary_version": "5"}
        assert rotated["keys"]["versions"][-1] == {
            "version": "5",
            "state": "enabled",
            "primary": True,
            "credentials": 0,
            "share": 0.0,
            "unused": True,
        }

        bad = client.post("/api/v1/admin/keys/rewrap", json={"batch_size": "all"}, headers=admin)
        assert bad.status_code == 400 and "batch_size" in bad.get_json()["error"]
        first = client.post("/api/v1/admin/keys/rewrap", json={"batch_size": 5, "max_seconds": 60}, headers=admin)
        body = first.get_json()
        assert first.status_code == 200 and body["summary"]["rewrapped"] == 12 and body["summary"]["batches"] == 3
        assert body["keys"]["share_on_primary"] == 1.0
        assert [v["unused"] for v in body["keys"]["versions"]] == [True, True, True, True, False]
    finally:
        http.use_service(None)


@pytest.mark.parametrize("backend", ["local"])
def test_a_rotation_the_keyring_cannot_write_answers_503_and_loses_nothing(service, settings):
    """The keyring's temp path is blocked: rotate answers 503 naming the keyring, the old primary stays primary
    (in memory and on disk), and after a restart every credential, before and after the failure, decrypts."""
    from shared.commands.local_server import create_app
    from shared.inbound import http

    seed(service, 6, versions=2)
    cipher = service.adapters.cipher
    primary, rotations = cipher.primary_version(), cipher.counters["rotate"]
    blocked = settings.data_dir / "keyring.tmp"
    blocked.mkdir()  # the durable write's temp file cannot be created
    http.use_service(service)
    try:
        client = create_app().test_client()
        admin = {"X-API-Key": service.create_api_key("ops", is_admin=True)[1]}
        failed = client.post("/api/v1/admin/keys/rotate", headers=admin)
        body = failed.get_json()
        assert failed.status_code == 503 and body["code"] == "key_rotation_failed", body
        assert str(settings.data_dir / "keyring.json") in body["error"]
        assert f"key version {primary} stays primary" in body["error"]
        assert cipher.primary_version() == primary and cipher.counters["rotate"] == rotations
        # Traffic after the failure still seals with the old primary, which is on disk.
        service.setup(USER, "openai", {"api_key": OPENAI_KEY}, {}, None)
        _, after = service.adapters.store.get_integration_with_credential("acme", "openai")
        assert after.key_version == primary
        keys = client.get("/api/v1/admin/keys", headers=admin).get_json()["keys"]
        assert keys["primary_version"] == primary
    finally:
        http.use_service(None)
    (audit,) = [a for a in service.adapters.store.list_audit("*") if a.action == "rotate_key"]
    assert audit.outcome == "failure" and primary in (audit.detail or "")

    restarted = make_service(settings)  # a fresh process on the same data dir
    assert restarted.adapters.cipher.primary_version() == primary
    credentials = all_credentials(restarted.adapters.store)
    assert len(credentials) == 7
    for credential in credentials:
        aad = credential_aad(credential.org_slug, credential.provider, credential.credential_id)
        assert restarted.adapters.cipher.decrypt(credential.encrypted_value, aad)

    blocked.rmdir()
    assert rotate_key(restarted, OPERATOR)["primary_version"] == str(int(primary) + 1)  # unblocked, it works


@pytest.mark.parametrize("backend", ["local"])
def test_a_keyring_lock_that_cannot_be_taken_fails_the_rotation_cleanly(service, settings):
    service.adapters.cipher.primary_version()  # the keyring exists
    (settings.data_dir / "keyring.lock").mkdir()
    with pytest.raises(KeyRotationFailed) as caught:
        rotate_key(service, OPERATOR)
    assert "keyring" in caught.value.message and service.adapters.cipher.primary_version() == "1"
    assert service.adapters.cipher.encrypt(b"x", b"aad").key_version == "1"
