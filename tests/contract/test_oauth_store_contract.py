"""The store's OAuth contract on every adapter (SQLite and the BigQuery emulator):
a state is consumed once, whatever the concurrency; a consumed flow holds its
tokens once, and only its own org and provider complete it, once, in time; a refresh claim on a
credential version has exactly one winner; an OAuth credential's expiry is its
own (integration writes never copy theirs onto it)."""

from __future__ import annotations

import threading
from datetime import timedelta

from shared.domain.models import OAuthState, utc_now
from tests.contract.test_store_contract import audit, make

BINARY = bytes(range(256))


def _state(state_hash="h" * 64, *, ttl=timedelta(minutes=10)):
    now = utc_now()
    return OAuthState(
        state_hash=state_hash,
        org_slug="acme",
        provider="canva",
        encrypted_verifier=BINARY,
        key_version="1",
        redirect_uri="https://api.example/api/v1/oauth/callback",
        expires_at=now + ttl,
        config={"team": "x"},
        created_at=now,
        created_by="user-1",
        actor_key_id="k1",
    )


def test_a_state_is_consumed_exactly_once(store):
    store.create_oauth_state(_state())
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def consume() -> None:
        barrier.wait()
        outcomes.append(store.consume_oauth_state("h" * 64, utc_now())[0])

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["consumed", "used", "used", "used"]
    verdict, state = store.consume_oauth_state("h" * 64, utc_now())
    assert verdict == "used" and state.encrypted_verifier == BINARY and state.config == {"team": "x"}
    assert state.org_slug == "acme" and state.provider == "canva" and state.used_at is not None


def test_expired_and_unknown_states_change_nothing(store):
    store.create_oauth_state(_state("e" * 64, ttl=timedelta(seconds=-1)))
    assert store.consume_oauth_state("e" * 64, utc_now())[0] == "expired"
    assert store.consume_oauth_state("e" * 64, utc_now())[0] == "expired"  # still unused, still refused
    assert store.consume_oauth_state("u" * 64, utc_now()) == ("unknown", None)


def _held(store, state_hash="h" * 64, *, code_hash="c" * 64, ttl=timedelta(minutes=10)) -> None:
    store.create_oauth_state(_state(state_hash))
    assert store.consume_oauth_state(state_hash, utc_now())[0] == "consumed"
    assert store.hold_oauth_tokens(
        state_hash,
        encrypted_tokens=BINARY,
        tokens_key_version="1",
        completion_code_hash=code_hash,
        completion_expires_at=utc_now() + ttl,
    )


def test_a_flow_holds_tokens_once_and_only_after_its_callback(store):
    store.create_oauth_state(_state("n" * 64))
    hold = {"encrypted_tokens": BINARY, "tokens_key_version": "1", "completion_expires_at": utc_now()}
    assert not store.hold_oauth_tokens("n" * 64, completion_code_hash="x" * 64, **hold)  # not consumed yet
    assert not store.hold_oauth_tokens("u" * 64, completion_code_hash="x" * 64, **hold)  # unknown
    _held(store)
    assert not store.hold_oauth_tokens("h" * 64, completion_code_hash="y" * 64, **hold)  # holds already
    assert store.complete_oauth_flow("y" * 64, "acme", "canva", utc_now()) == ("unknown", None)


def test_a_flow_is_completed_once_by_its_own_org_and_provider(store):
    _held(store)
    now = utc_now()
    for org, provider in (("globex", "canva"), ("acme", "github_app")):
        assert store.complete_oauth_flow("c" * 64, org, provider, now) == ("unknown", None)  # as if it did not exist
    outcomes: list[tuple[str, bytes | None]] = []
    barrier = threading.Barrier(4)

    def complete() -> None:
        barrier.wait()
        verdict, flow = store.complete_oauth_flow("c" * 64, "acme", "canva", utc_now())
        outcomes.append((verdict, flow.encrypted_tokens if flow else None))

    threads = [threading.Thread(target=complete) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes, key=lambda outcome: outcome[0]) == [
        ("completed", BINARY),  # the one winner gets the tokens...
        ("used", None),  # ...which leave the row with it
        ("used", None),
        ("used", None),
    ]
    verdict, flow = store.complete_oauth_flow("c" * 64, "acme", "canva", utc_now())
    assert verdict == "used" and flow.completed_at is not None and flow.encrypted_tokens is None
    assert flow.config == {"team": "x"} and flow.tokens_key_version == "1"


def test_an_expired_completion_changes_nothing(store):
    _held(store, ttl=timedelta(seconds=-1))
    assert store.complete_oauth_flow("c" * 64, "acme", "canva", utc_now())[0] == "expired"
    verdict, flow = store.complete_oauth_flow("c" * 64, "acme", "canva", utc_now())
    assert verdict == "expired" and flow.completed_at is None


def test_old_flows_go_with_their_held_tokens(store):
    old = _state("o" * 64, ttl=timedelta(days=-3))
    old.created_at = utc_now() - timedelta(days=3)
    store.create_oauth_state(old)
    assert store.consume_oauth_state("o" * 64, utc_now())[0] == "expired"
    store.create_oauth_state(_state("f" * 64))  # a new flow sweeps flows expired over a day ago
    assert store.consume_oauth_state("o" * 64, utc_now()) == ("unknown", None)


def _oauth_pair(store):
    integration, credential = make(provider="canva")
    credential.credential_type = "oauth"
    credential.expires_at = utc_now() + timedelta(minutes=5)
    store.create_integration(integration, credential, audit(provider="canva"))
    return store.get_integration_with_credential("acme", "canva")


def test_one_refresh_claim_wins_per_version(store):
    _, credential = _oauth_pair(store)
    now = utc_now()
    wins: list[str] = []
    barrier = threading.Barrier(5)

    def claim(lease_id: str) -> None:
        barrier.wait()
        if store.claim_credential_refresh(
            credential.credential_id,
            expected_updated_at=credential.updated_at,
            lease_id=lease_id,
            lease_expires_at=now + timedelta(seconds=30),
            version=now + timedelta(microseconds=1),
        ):
            wins.append(lease_id)

    threads = [threading.Thread(target=claim, args=(f"lease-{n}",)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(wins) == 1
    _, claimed = store.get_integration_with_credential("acme", "canva")
    assert claimed.refresh_lease_id == wins[0] and claimed.updated_at > credential.updated_at

    claimed.encrypted_value, claimed.fingerprint = b"new-ciphertext", "feedbeef"
    claimed.expires_at, claimed.updated_at = now + timedelta(hours=4), now + timedelta(seconds=1)
    assert not store.finish_credential_refresh(claimed, lease_id="someone-else")
    assert store.finish_credential_refresh(claimed, lease_id=wins[0])
    _, refreshed = store.get_integration_with_credential("acme", "canva")
    assert refreshed.encrypted_value == b"new-ciphertext" and refreshed.refresh_lease_id is None
    assert refreshed.expires_at == claimed.expires_at and refreshed.refresh_error is None


def test_integration_writes_leave_an_oauth_credentials_expiry_alone(store):
    integration, credential = _oauth_pair(store)
    read_version = integration.updated_at
    integration.error_message = "checked"
    integration.updated_at = read_version + timedelta(seconds=1)
    assert store.save_integration(integration, audit("validate", provider="canva"), expected_updated_at=read_version)
    _, after = store.get_integration_with_credential("acme", "canva")
    assert after.expires_at == credential.expires_at  # the access token's expiry, not the integration's (None)
