"""No lost update: a read-modify-write (rotate, validate) that is slow at the
provider never overwrites a settings change that finished meanwhile, on
SQLite and on BigQuery (emulator). The later writer gets a 409 and the row
keeps the change."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import OPENAI_KEY, key_with
from tests.test_http_api import call, setup

SLOW_SECONDS = 1.5  # the provider holds the slow request this long: the race window


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


def _when_provider_busy(simulator, requests_before: int) -> None:
    deadline = time.monotonic() + 10
    while simulator.stats()["requests"].get("openai", 0) <= requests_before:
        assert time.monotonic() < deadline, "the slow request never reached the simulator"
        time.sleep(0.01)


def _race(client, org_key, simulator, slow_operation):
    """Run ``slow_operation`` in a thread; while the provider holds it, disable + reconfigure."""
    simulator.configure(slow_seconds=SLOW_SECONDS)
    before = simulator.stats()["requests"].get("openai", 0)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=slow_operation()))
    worker.start()
    _when_provider_busy(simulator, before)
    status, body = call(
        client, "PUT", "/acme/openai", org_key, {"enabled": False, "config": {"default_model": "gpt-4o"}}
    )
    assert status == 200 and body["integration"]["status"] == "disabled"
    worker.join(timeout=30)
    assert not worker.is_alive()
    return outcome["result"]


def test_rotate_slow_at_the_provider_does_not_overwrite_a_finished_update(client, org_key, simulator, service):
    assert setup(client, org_key)[0] == 201
    assert call(client, "POST", "/acme/openai/validate", org_key)[1]["status"] == "active"
    old_credential = service.adapters.store.get_integration_with_credential("acme", "openai")[1]

    status, body = _race(
        client,
        org_key,
        simulator,
        lambda: call(
            client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": key_with("slow")}}
        ),
    )
    assert status == 409 and body["code"] == "conflict", body
    stored, credential = service.adapters.store.get_integration_with_credential("acme", "openai")
    assert stored.status == "disabled" and stored.config == {"default_model": "gpt-4o"}
    assert credential.credential_id == old_credential.credential_id  # the old key stays: nothing half-applied
    rotations = [e for e in service.adapters.store.list_audit("acme", "openai") if e.action == "rotate"]
    assert [e.outcome for e in rotations] == ["rejected"]


def test_validate_slow_at_the_provider_does_not_overwrite_a_finished_update(client, org_key, simulator, service):
    assert setup(client, org_key, secret=key_with("slow", OPENAI_KEY))[0] == 201

    status, body = _race(client, org_key, simulator, lambda: call(client, "POST", "/acme/openai/validate", org_key))
    assert status == 409 and body["code"] == "conflict", body
    stored = service.adapters.store.get_integration("acme", "openai")
    assert stored.status == "disabled" and stored.config == {"default_model": "gpt-4o"}
    assert stored.validated_at is None
