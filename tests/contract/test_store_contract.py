"""One store contract, run on every adapter: SQLite and BigQuery (emulator,
through the real google-cloud-bigquery client)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from shared.domain.lifecycle import status_after_settings_change
from shared.domain.models import (
    Alert,
    ApiKeyRecord,
    AuditEvent,
    Integration,
    SettingsChange,
    Status,
    StoredCredential,
    SubscriptionToggle,
    Webhook,
    new_id,
    utc_now,
)

BINARY = bytes(range(256))  # every byte value survives the trip (base64 path on BigQuery)


def make(org="acme", provider="openai", status=Status.PENDING):
    credential_id = new_id()
    integration = Integration(
        integration_id=new_id(),
        org_slug=org,
        provider=provider,
        status=status,
        credential_id=credential_id,
        config={"default_model": "gpt-4o"},
    )
    credential = StoredCredential(
        credential_id=credential_id,
        org_slug=org,
        provider=provider,
        credential_type="api_key",
        encrypted_value=BINARY,
        key_version="1",
        fingerprint="abcd1234",
    )
    return integration, credential


def audit(action="setup", org="acme", provider="openai", fingerprint=None):
    return AuditEvent(
        org_slug=org,
        provider=provider,
        action=action,
        outcome="success",
        actor_key_id="k1",
        request_id="r1",
        credential_fingerprint=fingerprint,
    )


def test_create_get_list_roundtrip(store):
    integration, credential = make()
    assert store.create_integration(integration, credential, audit()) is True
    got = store.get_integration("acme", "openai")
    assert got == integration
    pair = store.get_integration_with_credential("acme", "openai")
    assert pair == (integration, credential) and pair[1].encrypted_value == BINARY
    assert store.list_integrations("acme") == [integration]
    assert store.list_integrations("globex") == []
    assert store.get_integration("acme", "anthropic") is None


def test_second_create_for_same_org_provider_is_refused_and_writes_nothing(store):
    first, first_credential = make()
    second, second_credential = make()
    assert store.create_integration(first, first_credential, audit())
    assert store.create_integration(second, second_credential, audit()) is False
    assert store.get_integration_with_credential("acme", "openai") == (first, first_credential)
    assert len(store.list_audit("acme")) == 1


def test_parallel_creates_have_one_winner(store):
    outcomes = []
    barrier = threading.Barrier(5)

    def attempt():
        integration, credential = make()
        barrier.wait()
        outcomes.append(store.create_integration(integration, credential, audit()))

    threads = [threading.Thread(target=attempt) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 4 + [True]
    assert len(store.list_integrations("acme")) == 1


def test_save_integration_is_conditional_on_updated_at(store):
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    read_version = integration.updated_at
    integration.status = Status.ACTIVE
    integration.validated_at = utc_now()
    integration.details = {"connection": True, "models": ["a"]}
    integration.updated_at = utc_now() + timedelta(seconds=1)
    assert store.save_integration(integration, audit("validate"), expected_updated_at=read_version)
    assert store.get_integration("acme", "openai") == integration
    stale = store.get_integration("acme", "openai")
    stale.status = Status.ERROR
    assert store.save_integration(stale, audit("validate"), expected_updated_at=read_version) is False
    assert store.get_integration("acme", "openai").status == Status.ACTIVE
    assert [a.action for a in store.list_audit("acme")] == ["validate", "setup"]


@pytest.mark.parametrize(
    ("start", "change"),
    [
        (Status.ACTIVE, SettingsChange(enabled=False)),
        (Status.DISABLED, SettingsChange(enabled=True)),
        (Status.DISABLED, SettingsChange(config={"default_model": "other"})),
        (Status.ACTIVE, SettingsChange(config={"default_model": "other"})),
        (Status.ACTIVE, SettingsChange(config={"default_model": "gpt-4o"})),
        (Status.PENDING, SettingsChange(config={"default_model": "other"})),
        (Status.ERROR, SettingsChange(enabled=True)),
    ],
)
def test_update_settings_follows_the_lifecycle_rule(store, start, change):
    integration, credential = make(status=start)
    store.create_integration(integration, credential, audit())
    expected_status = status_after_settings_change(
        start, config_changed=change.config is not None and change.config != integration.config, enabled=change.enabled
    )
    updated = store.update_settings("acme", "openai", change, audit("update"))
    assert updated.status == expected_status
    assert updated.config == (change.config or integration.config)
    assert store.get_integration("acme", "openai") == updated


def test_update_settings_expiry_and_missing(store):
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    when = utc_now().replace(microsecond=0) + timedelta(days=30)
    assert store.update_settings("acme", "openai", SettingsChange(expires_at=when), audit("update")).expires_at == when
    cleared = store.update_settings("acme", "openai", SettingsChange(clear_expires_at=True), audit("update"))
    assert cleared.expires_at is None
    assert store.update_settings("acme", "gemini", SettingsChange(enabled=False), audit("update")) is None
    assert len(store.list_audit("acme")) == 3


def test_replace_credential_swaps_atomically_and_conditionally(store):
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    read_version = integration.updated_at
    _, new_credential = make()
    integration.credential_id = new_credential.credential_id
    integration.status = Status.ACTIVE
    integration.updated_at = utc_now()
    assert store.replace_credential(
        integration,
        new_credential,
        audit("rotate"),
        expected_credential_id=credential.credential_id,
        expected_updated_at=read_version,
    )
    assert store.get_integration_with_credential("acme", "openai") == (integration, new_credential)
    _, third = make()
    assert (
        store.replace_credential(
            integration,
            third,
            audit("rotate"),
            expected_credential_id=credential.credential_id,
            expected_updated_at=integration.updated_at,
        )
        is False
    )
    assert store.get_integration_with_credential("acme", "openai")[1] == new_credential


def test_replace_credential_refuses_a_row_changed_since_it_was_read(store):
    """The lost update: a settings change lands while the rotation checks the new key."""
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    pair = store.get_integration_with_credential("acme", "openai")
    assert pair is not None
    rotating, _ = pair
    read_version = rotating.updated_at
    changed = store.update_settings(
        "acme", "openai", SettingsChange(enabled=False, config={"default_model": "gpt-4o"}), audit("disable")
    )
    assert changed is not None and changed.updated_at != read_version
    _, new_credential = make()
    rotating.credential_id = new_credential.credential_id
    rotating.status = Status.ACTIVE
    rotating.updated_at = utc_now()
    assert (
        store.replace_credential(
            rotating,
            new_credential,
            audit("rotate"),
            expected_credential_id=credential.credential_id,
            expected_updated_at=read_version,
        )
        is False
    )
    stored, stored_credential = store.get_integration_with_credential("acme", "openai")
    assert stored.status == Status.DISABLED and stored.config == {"default_model": "gpt-4o"}
    assert stored_credential == credential
    assert [event.action for event in store.list_audit("acme")].count("rotate") == 0


def test_delete_removes_both_and_audits_fingerprint(store):
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    deletion = audit("delete")
    assert store.delete_integration("acme", "openai", deletion) is True
    assert deletion.credential_fingerprint == "abcd1234"
    assert store.get_integration_with_credential("acme", "openai") is None
    assert store.delete_integration("acme", "openai", audit("delete")) is False
    assert [a.action for a in store.list_audit("acme")] == ["delete", "setup"]
    assert store.list_audit("acme", "openai", limit=1)[0].credential_fingerprint == "abcd1234"


def _alert(integration, kind="error", key=None):
    return Alert(
        dedupe_key=key or f"{integration.integration_id}:{kind}",
        org_slug=integration.org_slug,
        provider=integration.provider,
        integration_id=integration.integration_id,
        kind=kind,
        message=f"{kind} happened",
    )


def test_revalidation_batch_reads_and_writes_in_one_job_each(store):
    pairs = []
    for index in range(12):
        integration, credential = make(org=f"org{index:02d}")
        store.create_integration(integration, credential, audit(org=integration.org_slug))
        pairs.append((integration, credential))
    disabled, disabled_credential = make(org="zz-disabled", status=Status.DISABLED)
    store.create_integration(disabled, disabled_credential, audit(org="zz-disabled"))

    store.counters.clear()
    run_at = utc_now()
    due = store.list_integrations_for_revalidation(checked_before=run_at, limit=100)
    assert store.counters["jobs"] == 1
    assert {i.integration_id for i, _ in due} == {i.integration_id for i, _ in pairs}
    assert all(credential.encrypted_value == BINARY for _, credential in due)

    results, alerts = [], []
    for integration, _ in due:
        read_version = integration.updated_at
        integration.status = Status.ERROR
        integration.error_message = None if integration.org_slug == "org03" else "broken"
        integration.last_checked_at = run_at
        integration.updated_at = run_at + timedelta(seconds=1)
        results.append((integration, audit("revalidate", org=integration.org_slug), read_version))
        alerts.append(_alert(integration))
    # One row changes under the run's feet: it must not be overwritten, and gets no audit or alert.
    moved = results[0][0]
    store.update_settings(moved.org_slug, "openai", SettingsChange(enabled=False), audit("disable", org=moved.org_slug))
    # An alert already sent is not sent again.
    already = results[1][0]
    first_written, first_alerts = store.save_revalidation_results([], [])
    assert (first_written, first_alerts) == (0, [])

    store.counters.clear()
    written, inserted = store.save_revalidation_results(results, alerts)
    assert store.counters["jobs"] == 1
    assert written == 11 and len(inserted) == 11
    assert alerts[0].alert_id not in inserted
    assert store.get_integration(moved.org_slug, "openai").status == Status.DISABLED
    assert store.get_integration(already.org_slug, "openai").status == Status.ERROR
    assert [a.action for a in store.list_audit(already.org_slug)] == ["revalidate", "setup"]
    assert [a.action for a in store.list_audit(moved.org_slug)] == ["disable", "setup"]
    assert store.list_alerts(moved.org_slug) == []

    again = [(i, audit("revalidate", org=i.org_slug), i.updated_at) for i, _, _ in results[1:3]]
    assert store.save_revalidation_results(again, [_alert(i) for i, _, _ in again]) == (2, [])
    assert len(store.list_alerts(already.org_slug)) == 1

    # Checked just now: not due for a run that only wants checks older than an hour ago.
    assert store.list_integrations_for_revalidation(checked_before=run_at - timedelta(hours=1), limit=100) == []
    later = store.list_integrations_for_revalidation(checked_before=run_at + timedelta(seconds=5), limit=3)
    assert len(later) == 3


def test_revalidation_pages_cover_every_due_row_once_in_order(store):
    """Keyset pages: never checked first, then oldest check, ties (one write's timestamp) by id."""
    earlier, later = utc_now() - timedelta(hours=3), utc_now() - timedelta(hours=2)
    checked_at = {}
    for index in range(11):
        integration, credential = make(org=f"org{index:02d}")
        store.create_integration(integration, credential, audit(org=integration.org_slug))
        # 4 never checked, 4 checked together (one page write's tie), 3 at another moment.
        checked_at[integration.integration_id] = None if index < 4 else earlier if index < 8 else later
    disabled, disabled_credential = make(org="zz-disabled", status=Status.DISABLED)
    store.create_integration(disabled, disabled_credential, audit(org="zz-disabled"))
    writes = []
    for integration, _ in store.list_integrations_for_revalidation(checked_before=utc_now(), limit=100):
        read_version = integration.updated_at
        integration.last_checked_at = checked_at[integration.integration_id]
        integration.updated_at = utc_now()
        writes.append((integration, audit("revalidate", org=integration.org_slug), read_version))
    assert store.save_revalidation_results(writes)[0] == 11
    expected = sorted(
        checked_at,
        key=lambda integration_id: (
            checked_at[integration_id] is not None,
            checked_at[integration_id] or earlier,
            integration_id,
        ),
    )

    store.counters.clear()
    pages, cursor = [], None
    while True:
        page = store.list_integrations_for_revalidation(checked_before=utc_now(), limit=3, after=cursor)
        pages.append([integration.integration_id for integration, _ in page])
        if len(page) < 3:
            break
        cursor = (page[-1][0].last_checked_at, page[-1][0].integration_id)
    assert [len(page) for page in pages] == [3, 3, 3, 2]
    assert [integration_id for page in pages for integration_id in page] == expected
    assert store.counters["jobs"] == 4  # one job per page
    # Only rows checked before the cutoff are due, from wherever the cursor stands.
    due_before_later = store.list_integrations_for_revalidation(checked_before=later, limit=100, after=None)
    assert {i.integration_id for i, _ in due_before_later} == set(expected[:8])


def test_alert_deliveries_and_webhooks(store):
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    read_version = integration.updated_at
    integration.updated_at = utc_now() + timedelta(seconds=1)
    alert = _alert(integration, "expiring")
    store.save_revalidation_results([(integration, audit("revalidate"), read_version)], [alert])
    alert.delivery_status, alert.delivery_attempts, alert.delivered_at = "delivered", 2, utc_now()
    store.counters.clear()
    store.record_alert_deliveries([alert])
    assert store.counters["jobs"] == 1
    assert store.list_alerts("acme") == [alert]

    assert store.get_webhooks(["acme"]) == {}
    hook = Webhook(org_slug="acme", webhook_id="w1", url="https://hooks.example/acme")
    store.set_webhook(hook)
    replaced = Webhook(org_slug="acme", webhook_id="w2", url="https://hooks.example/acme2")
    store.set_webhook(replaced)
    store.set_webhook(Webhook(org_slug="globex", webhook_id="w3", url="https://hooks.example/globex"))
    store.counters.clear()
    assert store.get_webhooks(["acme", "globex", "initech"]) == {
        "acme": replaced,
        "globex": store.get_webhooks(["globex"])["globex"],
    }
    assert store.delete_webhook("acme") is True and store.delete_webhook("acme") is False
    assert store.get_webhooks(["acme"]) == {}


def test_api_keys(store):
    record = ApiKeyRecord(key_id="0123456789abcdef", org_slug="acme", key_hash="h" * 64, is_admin=True, label="ops")
    store.add_api_key(record)
    assert store.find_api_key("0123456789abcdef") == record
    assert store.find_api_key("ffffffffffffffff") is None
    assert store.list_api_keys("acme") == [record] and store.list_api_keys("globex") == []
    assert store.revoke_api_key(record.key_id) is True
    assert store.revoke_api_key(record.key_id) is False
    assert store.find_api_key(record.key_id).revoked_at is not None


@pytest.mark.parametrize(
    ("operation", "jobs"),
    [("create", 1), ("get", 1), ("pair", 1), ("list", 1), ("save", 1), ("update", 1), ("replace", 1), ("delete", 1)],
)
def test_every_port_call_is_one_job(store, operation, jobs):
    integration, credential = make()
    store.create_integration(integration, credential, audit())
    store.counters.clear()
    other, other_credential = make(provider="anthropic")
    calls = {
        "create": lambda: store.create_integration(other, other_credential, audit()),
        "get": lambda: store.get_integration("acme", "openai"),
        "pair": lambda: store.get_integration_with_credential("acme", "openai"),
        "list": lambda: store.list_integrations("acme"),
        "save": lambda: store.save_integration(integration, audit(), expected_updated_at=integration.updated_at),
        "update": lambda: store.update_settings("acme", "openai", SettingsChange(enabled=False), audit()),
        "replace": lambda: store.replace_credential(
            integration,
            other_credential,
            audit(),
            expected_credential_id=credential.credential_id,
            expected_updated_at=integration.updated_at,
        ),
        "delete": lambda: store.delete_integration("acme", "openai", audit()),
    }
    calls[operation]()
    assert store.counters["jobs"] == jobs


def test_external_id_is_generated_once_per_org_and_provider(store):
    before = store.counters["jobs"]
    first = store.external_id("acme", "aws", "candidate-one")
    assert store.counters["jobs"] - before == 1
    assert first == "candidate-one"
    # Later calls (a retried setup-instructions, a setup) keep the first value.
    assert store.external_id("acme", "aws", "candidate-two") == "candidate-one"
    assert store.external_id("globex", "aws", "candidate-three") == "candidate-three"
    assert store.external_id("acme", "azure", "candidate-four") == "candidate-four"


def test_finding_an_external_id_only_reads(store):
    before = store.counters["jobs"]
    assert store.find_external_id("acme", "aws") is None
    assert store.counters["jobs"] - before == 1
    assert store.external_id("acme", "aws", "candidate-one") == "candidate-one"  # still free to create
    assert store.find_external_id("acme", "aws") == "candidate-one"
    assert store.find_external_id("globex", "aws") is None


def test_concurrent_first_calls_agree_on_one_external_id(store):
    answers = []

    def ask(index):
        answers.append(store.external_id("racing", "aws", f"candidate-{index}"))

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 4 and len(set(answers)) == 1


def toggle(enabled, org="acme", provider="slack", actor="k1"):
    return SubscriptionToggle(
        org_slug=org, provider=provider, enabled=enabled, created_by=actor, updated_by=actor, updated_by_key_id="k1"
    )


def test_subscription_toggles_roundtrip_with_integration_status(store):
    assert store.list_subscription_toggles("acme") == ([], {})
    first = toggle(True)
    stored, changed, status = store.set_subscription_toggle(first, audit("subscription_enable", provider="slack"))
    assert (stored, changed, status) == (first, True, None)
    integration, credential = make(provider="slack")
    store.create_integration(integration, credential, audit(provider="slack"))
    store.counters.clear()
    again = audit("subscription_enable", provider="slack")
    stored, changed, status = store.set_subscription_toggle(toggle(True, actor="ana"), again)
    assert (stored, changed, status) == (first, False, "pending") and again.detail == "unchanged"
    off = toggle(False, actor="ana")
    stored, changed, _ = store.set_subscription_toggle(off, audit("subscription_disable", provider="slack"))
    assert changed is True and stored.enabled is False and stored.updated_by == "ana"
    assert (stored.created_at, stored.created_by) == (first.created_at, "k1")
    store.set_subscription_toggle(toggle(True, org="globex", provider="figma"), audit(org="globex"))
    assert store.list_subscription_toggles("acme") == ([stored], {"slack": "pending"})
    assert store.counters["jobs"] == 4  # one per call
    assert [a.action for a in store.list_audit("acme", "slack")] == [
        "subscription_disable",
        "subscription_enable",
        "setup",
        "subscription_enable",
    ]


def test_parallel_first_toggles_leave_one_row(store):
    outcomes = []
    barrier = threading.Barrier(4)

    def attempt():
        barrier.wait()
        outcomes.append(store.set_subscription_toggle(toggle(True), audit("subscription_enable", provider="slack"))[1])

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 3 + [True]
    assert len(store.list_subscription_toggles("acme")[0]) == 1
    assert len(store.list_audit("acme", "slack")) == 4


def test_an_appended_audit_row_is_streamed_not_a_job(store):
    event = audit(action="credential_accessed", fingerprint="0a1b2c3d")
    event.pipeline = "cost/billing"
    event.detail = "Integration for OpenAI is pending, not active"
    store.counters.clear()
    store.append_audit(event)
    # BigQuery: tabledata.insertAll, which takes no slot in the table's DML queue.
    assert dict(store.counters) == {"appends": 1}
    (row,) = store.list_audit("acme")
    assert (row.action, row.pipeline, row.credential_fingerprint, row.detail) == (
        "credential_accessed",
        "cost/billing",
        "0a1b2c3d",
        "Integration for OpenAI is pending, not active",
    )
    assert row.created_at == event.created_at and row.audit_id == event.audit_id


# --- a pending API-key check rides on the first job ----------------------------------------------------


def _pending(store, check):
    """Run the next store calls with ``check`` pending, as ``IntegrationService.authenticated`` does."""
    from contextlib import contextmanager

    from shared.store import pending_key_check

    @contextmanager
    def riding():
        token = pending_key_check.set(check)
        try:
            yield
        finally:
            pending_key_check.reset(token)

    return riding()


def _key_on_file(store, *, revoked=False):
    from shared.store import KeyCheck

    record = ApiKeyRecord(key_id=new_id()[:16], org_slug="acme", key_hash="h" * 64)
    store.add_api_key(record)
    if revoked:
        store.revoke_api_key(record.key_id)
    return KeyCheck(key_id=record.key_id, key_hash=record.key_hash, org_slug="acme", is_admin=False)


@pytest.mark.parametrize(
    "read",
    [
        lambda store: store.list_integrations("acme"),
        lambda store: store.get_integration("acme", "gemini"),
        lambda store: store.get_integration_with_credential("acme", "openai"),
        lambda store: store.list_audit("acme", limit=3),
        lambda store: store.list_alerts("acme"),
        lambda store: store.list_subscription_toggles("acme"),
        lambda store: store.get_webhooks(["acme"]),
        lambda store: store.list_api_keys("acme"),
        lambda store: store.list_credentials_for_rewrap(primary_version="9", after_credential_id=None, limit=2),
        lambda store: store.list_integrations_for_revalidation(checked_before=utc_now(), limit=10),
    ],
)
def test_a_pending_key_check_rides_on_a_read_and_keeps_its_answer(store, read):
    for provider in ("openai", "gemini", "anthropic"):
        integration, credential = make(provider=provider)
        store.create_integration(integration, credential, audit(provider=provider))
    check = _key_on_file(store)
    expected = read(store)
    store.counters.clear()
    with _pending(store, check):
        assert read(store) == expected  # same rows, same order
    assert check.confirmed is True and store.counters["jobs"] == 1


def test_a_refused_key_reads_nothing_and_writes_nothing(store):
    from dataclasses import replace

    from shared.domain.errors import Unauthenticated

    integration, credential = make()
    store.create_integration(integration, credential, audit())
    on_file = _key_on_file(store)
    refused = [
        _key_on_file(store, revoked=True),
        replace(on_file, key_hash="x" * 64),  # another key's secret
        replace(on_file, org_slug="globex"),  # another org than the key was issued for
        replace(on_file, is_admin=True),  # another role
    ]
    writes = [
        lambda: store.record_audit(audit("rejected")),  # one INSERT statement
        lambda: store.update_settings("acme", "openai", SettingsChange(enabled=False), audit("disable")),  # a script
        lambda: store.delete_integration("acme", "openai", audit("delete")),
    ]
    for check in refused:
        for call in [lambda: store.list_integrations("acme"), *writes]:
            check.confirmed = None
            store.counters.clear()
            with _pending(store, check), pytest.raises(Unauthenticated):
                call()
            assert check.confirmed is False and store.counters["jobs"] == 1
    assert store.get_integration("acme", "openai").status == Status.PENDING
    assert [a.action for a in store.list_audit("acme")] == ["setup"]
