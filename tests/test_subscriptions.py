"""SaaS subscription toggles through the real WSGI stack, on both stores.

The catalog is the registry's SaaS tools; toggles live in
saas_subscription_providers_meta. Each call is one store job, audited, and
isolated per organization; switching a tool off never touches its API
integration, and deleting the integration never touches the toggle.
"""

from __future__ import annotations

import json

import pytest

from shared.domain.providers import default_registry
from tests.conftest import key_parts

BASE = "/api/v1/subscriptions"
SLACK_TOKEN = "xoxb-1234567890-1234567890123-TestTokenAbcdefghij"


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


def call(client, method, path, key, body=None, raw=None, headers=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    response = client.open(
        path, method=method, data=data, headers={"X-API-Key": key, **(headers or {})}, content_type="application/json"
    )
    assert response.mimetype == "application/json", response.data
    return response.status_code, response.get_json()


def catalog(client, key, org="acme"):
    status, body = call(client, "GET", f"{BASE}/{org}/providers", key)
    assert status == 200, body
    return {item["provider"]: item for item in body["providers"]}, body


def jobs(service):
    return service.adapters.store.counters["jobs"]


def test_catalog_lists_every_saas_tool_off_by_default(client, org_key):
    providers, body = catalog(client, org_key)
    saas = {spec.provider_id: spec for spec in default_registry().providers.values() if spec.category == "saas"}
    assert set(providers) == set(saas) and body["count"] == len(saas) >= 12
    categories = [item["saas_category"] for item in body["providers"]]
    assert categories == sorted(categories, key=["ai", "design", "productivity", "development"].index)
    for provider_id, item in providers.items():
        assert item["enabled"] is False and "integration_status" not in item
        assert item["display_name"] == saas[provider_id].display_name
        assert item["connection"] == saas[provider_id].connection
    assert providers["chatgpt_plus"]["connection"] == "toggle"
    assert providers["github"] == {
        "provider": "github",
        "display_name": "GitHub",
        "saas_category": "development",
        "enabled": False,
        "connection": "api_token",
    }


def test_toggle_on_off_idempotent_audited_one_job_each(client, service, org_key):
    catalog(client, org_key)  # the key is cached now: what follows counts only the operation's own jobs
    before = jobs(service)
    status, body = call(client, "PUT", f"{BASE}/acme/providers/canva", org_key, {"enabled": True})
    assert jobs(service) - before == 1
    assert status == 200 and body["success"] is True
    assert body["provider"]["enabled"] is True and body["provider"]["provider"] == "canva"
    assert body["message"] == "Canva is on for this organization"
    first_update = body["provider"]["updated_at"]

    before = jobs(service)
    status, body = call(client, "PUT", f"{BASE}/acme/providers/canva", org_key, {"enabled": True})
    assert jobs(service) - before == 1
    assert status == 200 and body["provider"]["enabled"] is True
    assert body["provider"]["updated_at"] == first_update and body["message"].endswith("(unchanged)")

    before = jobs(service)
    providers, _ = catalog(client, org_key)
    assert jobs(service) - before == 1
    assert providers["canva"]["enabled"] is True and providers["figma"]["enabled"] is False

    status, body = call(
        client, "PUT", f"{BASE}/acme/providers/canva", org_key, {"enabled": False}, headers={"X-User-Id": "ana@acme"}
    )
    assert status == 200 and body["provider"]["enabled"] is False and body["provider"]["updated_by"] == "ana@acme"
    assert catalog(client, org_key)[0]["canva"]["enabled"] is False

    audit = service.adapters.store.list_audit("acme", "canva")
    assert [(a.action, a.outcome, a.detail) for a in reversed(audit)] == [
        ("subscription_enable", "success", None),
        ("subscription_enable", "success", "unchanged"),
        ("subscription_disable", "success", None),
    ]
    key_id = key_parts(org_key)[1]
    assert {a.actor_key_id for a in audit} == {key_id}
    assert [a.actor for a in reversed(audit)] == [key_id, key_id, "ana@acme"]


def test_toggles_are_per_organization(client, org_key, other_org_key):
    call(client, "PUT", f"{BASE}/acme/providers/notion", org_key, {"enabled": True})
    assert catalog(client, other_org_key, "globex")[0]["notion"]["enabled"] is False
    status, body = call(client, "PUT", f"{BASE}/acme/providers/notion", other_org_key, {"enabled": False})
    assert status == 403 and body["error"] == "API key is not valid for this organization"
    status, _ = call(client, "GET", f"{BASE}/acme/providers", other_org_key)
    assert status == 403
    assert catalog(client, org_key)[0]["notion"]["enabled"] is True


@pytest.mark.parametrize(
    ("provider", "body", "raw", "status", "fragment"),
    [
        ("nope", {"enabled": True}, None, 404, "Unknown SaaS provider; SaaS providers: "),
        ("openai", {"enabled": True}, None, 404, "Unknown SaaS provider; SaaS providers: "),
        ("slack", {"enabled": "yes"}, None, 400, "'enabled' must be true or false"),
        ("slack", {}, None, 400, "Missing required field(s): enabled"),
        ("slack", {"enabled": None}, None, 400, "Missing required field(s): enabled"),
        ("slack", {"enabled": True, "note": "x"}, None, 400, "Unknown field(s) in the request body (1)"),
        ("slack", None, "{not json", 400, "not valid JSON"),
        ("slack", None, "[true]", 400, "must be a JSON object"),
    ],
)
def test_bad_requests_change_nothing(client, service, org_key, provider, body, raw, status, fragment):
    got_status, got = call(client, "PUT", f"{BASE}/acme/providers/{provider}", org_key, body, raw=raw)
    assert got_status == status and got["success"] is False and fragment in got["error"]
    assert not any(item["enabled"] for item in catalog(client, org_key)[0].values())
    assert service.adapters.store.list_audit("acme") == []


def test_toggle_only_tool_cannot_be_set_up(client, org_key):
    status, body = call(
        client, "POST", "/api/v1/integrations/acme/chatgpt_plus/setup", org_key, {"credentials": {"api_key": "x" * 30}}
    )
    assert status == 400 and body["code"] == "provider_not_connectable"
    assert (
        "subscription toggle only" in body["error"]
        and "/api/v1/subscriptions/acme/providers/chatgpt_plus" in (body["error"])
    )


def test_toggle_and_integration_live_apart(client, service, org_key):
    status, _ = call(
        client, "POST", "/api/v1/integrations/acme/slack/setup", org_key, {"credentials": {"api_key": SLACK_TOKEN}}
    )
    assert status == 201
    assert catalog(client, org_key)[0]["slack"] == {
        "provider": "slack",
        "display_name": "Slack",
        "saas_category": "productivity",
        "enabled": False,
        "connection": "api_token",
        "integration_status": "pending",
    }
    call(client, "PUT", f"{BASE}/acme/providers/slack", org_key, {"enabled": True})
    # Switching the tool off keeps the integration and its encrypted credential, and says so.
    status, body = call(client, "PUT", f"{BASE}/acme/providers/slack", org_key, {"enabled": False})
    assert status == 200 and body["provider"]["integration_status"] == "pending"
    assert "API integration and stored credential are kept" in body["message"]
    assert service.adapters.store.get_integration_with_credential("acme", "slack") is not None
    # Deleting the integration keeps the toggle.
    call(client, "PUT", f"{BASE}/acme/providers/slack", org_key, {"enabled": True})
    status, _ = call(client, "DELETE", "/api/v1/integrations/acme/slack", org_key)
    assert status == 200
    slack = catalog(client, org_key)[0]["slack"]
    assert slack["enabled"] is True and "integration_status" not in slack
