"""Store contract for fleet operations, on every adapter: bulk import and
re-encryption onto the primary key version (SQLite and BigQuery emulator)."""

from __future__ import annotations

from dataclasses import replace

from shared.domain.models import AuditEvent, StoredCredential, utc_now
from tests.contract.test_store_contract import BINARY, audit, make


def _entry(org="acme", provider="openai"):
    integration, credential = make(org, provider)
    return integration, credential, audit("import", org, provider, fingerprint=credential.fingerprint)


def test_import_creates_the_new_and_leaves_the_existing_untouched_in_one_job(store):
    existing, existing_credential = make(provider="openai")
    assert store.create_integration(existing, existing_credential, audit())
    entries = [_entry(provider="openai"), _entry(provider="anthropic"), _entry(provider="gemini")]
    refused = audit("import", provider="nope")
    refused.outcome = "rejected"
    store.counters.clear()
    created = store.import_integrations(entries, [refused])
    assert store.counters["jobs"] == 1 + store.counters["conflict_retries"] + store.counters["transient_retries"]
    assert created == {entries[1][0].integration_id, entries[2][0].integration_id}
    assert store.get_integration_with_credential("acme", "openai") == (existing, existing_credential)
    for integration, credential, _ in entries[1:]:
        pair = store.get_integration_with_credential("acme", integration.provider)
        assert pair == (integration, credential) and pair[1].encrypted_value == BINARY
    audits = store.list_audit("acme")
    assert sorted((a.action, a.provider, a.outcome) for a in audits) == [
        ("import", "anthropic", "success"),
        ("import", "gemini", "success"),
        ("import", "nope", "rejected"),
        ("setup", "openai", "success"),
    ]


def test_import_of_nothing_new_writes_no_row(store):
    integration, credential = make()
    assert store.create_integration(integration, credential, audit())
    assert store.import_integrations([_entry()]) == set()
    assert store.import_integrations([]) == set()
    assert len(store.list_audit("acme")) == 1 and store.list_integrations("acme") == [integration]


def _stored(store, count, versions=("1", "2", "3")):
    """``count`` credentials spread over ``versions`` (set-up, written through the port)."""
    entries = []
    for number in range(count):
        integration, credential, row_audit = _entry(org=f"org-{number:04d}")
        credential.key_version = versions[number % len(versions)]
        entries.append((integration, credential, row_audit))
    assert len(store.import_integrations(entries)) == count
    return [credential for _, credential, _ in entries]


def test_counts_per_key_version(store):
    assert store.count_credentials_by_key_version() == {}
    _stored(store, 7)
    assert store.count_credentials_by_key_version() == {"1": 3, "2": 2, "3": 2}


def test_rewrap_listing_pages_by_credential_id_and_skips_the_primary(store):
    credentials = _stored(store, 9)
    off_primary = sorted(c.credential_id for c in credentials if c.key_version != "3")
    first = store.list_credentials_for_rewrap(primary_version="3", after_credential_id=None, limit=4)
    assert [c.credential_id for c in first] == off_primary[:4]
    rest = store.list_credentials_for_rewrap(primary_version="3", after_credential_id=off_primary[3], limit=100)
    assert [c.credential_id for c in rest] == off_primary[4:]
    assert rest[0] == next(c for c in credentials if c.credential_id == off_primary[4])


def _rewrapped(old: StoredCredential, version="3"):
    new = replace(old, encrypted_value=b"new-" + old.credential_id.encode(), key_version=version, updated_at=utc_now())
    return (
        old,
        new,
        AuditEvent(
            org_slug=old.org_slug,
            provider=old.provider,
            action="rewrap",
            outcome="success",
            actor_key_id="k1",
            request_id="r1",
            credential_fingerprint=old.fingerprint,
        ),
    )


def test_rewrap_writes_only_rows_still_as_read_and_audits_exactly_those(store):
    first, second, third = _stored(store, 3, versions=("1",))
    # Meanwhile: ``second`` is rotated away (new credential id), ``third`` re-encrypted by another run.
    integration = store.get_integration(second.org_slug, "openai")
    read_version = integration.updated_at
    rotated = replace(second, credential_id="rotated-" + second.credential_id, key_version="1")
    integration.credential_id = rotated.credential_id
    assert store.replace_credential(
        integration,
        rotated,
        audit("rotate", org=second.org_slug),
        expected_credential_id=second.credential_id,
        expected_updated_at=read_version,
    )
    assert store.save_rewrapped_credentials([_rewrapped(third)]) == {third.credential_id}
    store.counters.clear()
    written = store.save_rewrapped_credentials([_rewrapped(first), _rewrapped(second), _rewrapped(third, "4")])
    assert written == {first.credential_id}
    assert store.counters["jobs"] == 1 + store.counters["conflict_retries"] + store.counters["transient_retries"]
    after = store.get_integration_with_credential(first.org_slug, "openai")[1]
    assert after.encrypted_value == b"new-" + first.credential_id.encode() and after.key_version == "3"
    assert after.updated_at > first.updated_at
    assert store.get_integration_with_credential(second.org_slug, "openai")[1] == rotated
    assert store.get_integration_with_credential(third.org_slug, "openai")[1].key_version == "3"
    assert [a.action for a in store.list_audit(first.org_slug)] == ["rewrap", "import"]
    assert [a.action for a in store.list_audit(second.org_slug)] == ["rotate", "import"]
    assert [a.action for a in store.list_audit(third.org_slug)] == ["rewrap", "import"]
    assert store.save_rewrapped_credentials([]) == set()
    assert store.count_credentials_by_key_version() == {"1": 1, "3": 2}
