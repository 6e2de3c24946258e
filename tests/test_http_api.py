"""The seven operations through the real Flask/WSGI stack, against the provider simulator."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.conftest import (
    ANTHROPIC_KEY,
    ANTHROPIC_STANDARD_KEY,
    GEMINI_KEY,
    OPENAI_KEY,
    OPENAI_PROJECT_KEY,
    key_parts,
    key_with,
)

BASE = "/api/v1/integrations"


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    """Every HTTP test runs on the embedded stack and on the GCP adapters (emulator + KMS fake)."""
    return request.param


def call(client, method, path, key, body=None, raw=None, headers=None):
    all_headers = {"X-API-Key": key, **(headers or {})}
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    response = client.open(BASE + path, method=method, data=data, headers=all_headers, content_type="application/json")
    assert response.mimetype == "application/json", response.data
    return response.status_code, response.get_json()


PIPELINE = {"openai": "cost/usage_cost", "anthropic": "usage_cost"}


def setup(client, key, provider="openai", secret=OPENAI_KEY, headers=None, **extra):
    body = {"credentials": {"api_key": secret}, **extra}
    return call(client, "POST", f"/acme/{provider}/setup", key, body, headers=headers)


# --- lifecycle --------------------------------------------------------------------


def test_full_lifecycle(client, org_key):
    status, body = setup(client, org_key, config={"organization_id": "org-abcdefgh12"})
    assert status == 201 and body["success"] is True
    # The spec's setup answer: integration_id at the top (the frontend reads it there).
    assert body["integration_id"] == body["integration"]["integration_id"]
    assert body["integration"]["status"] == "pending"
    assert body["integration"]["config"] == {"organization_id": "org-abcdefgh12"}

    status, body = call(client, "POST", "/acme/openai/validate", org_key)
    assert status == 200 and body["success"] is True and body["status"] == "active"
    assert body["details"]["connection"] is True and body["details"]["permissions"] is True
    assert body["details"]["pipelines"]["cost/usage_cost"]["ready"] is True
    assert "validation" not in body and "validation" not in body["integration"]
    assert body["integration"]["validated_at"].endswith("Z")

    status, body = call(client, "GET", "/acme", org_key)
    assert status == 200 and body["count"] == 1 and body["integrations"][0]["status"] == "active"

    status, body = call(client, "GET", "/acme/openai", org_key)
    assert status == 200 and body["integration"]["provider"] == "openai"
    # The spec answers this path with the IntegrationInfo itself: its fields at the top level, the wrapped
    # copy beside them (the spec's getIntegrationStatus reads `integration`).
    spec_fields = ("integration_id", "org_slug", "provider", "status", "config", "created_at", "updated_at")
    assert {name: body[name] for name in spec_fields} == {name: body["integration"][name] for name in spec_fields}
    assert body["status"] == "active" and body["validated_at"] == body["integration"]["validated_at"]

    status, body = call(client, "PUT", "/acme/openai", org_key, {"enabled": False})
    assert status == 200 and body["integration"]["status"] == "disabled"
    status, body = call(client, "POST", "/acme/openai/validate", org_key)
    assert status == 409 and "disabled" in body["error"]
    status, body = call(client, "PUT", "/acme/openai", org_key, {"enabled": True})
    assert body["integration"]["status"] == "pending"

    rotated = key_with("rotated")
    status, body = call(client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": rotated}})
    assert status == 200 and body["integration"]["status"] == "active"

    status, body = call(client, "DELETE", "/acme/openai", org_key)
    assert status == 200 and body["success"] is True
    status, body = call(client, "GET", "/acme/openai", org_key)
    assert status == 404
    status, body = call(client, "DELETE", "/acme/openai", org_key)
    assert status == 404


def test_gemini_key_lists_models(client, org_key):
    assert setup(client, org_key, "gemini", GEMINI_KEY)[0] == 201
    status, body = call(client, "POST", "/acme/gemini/validate", org_key)
    assert body["status"] == "active", body
    assert any(name.startswith("models/gemini") for name in body["details"]["models"])


@pytest.mark.parametrize(("provider", "secret"), [("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY)])
def test_admin_keys_can_read_costs(client, org_key, provider, secret):
    setup(client, org_key, provider, secret)
    status, body = call(client, "POST", f"/acme/{provider}/validate", org_key)
    details = body["details"]
    assert body["status"] == "active", body
    assert details["connection"] is True and details["permissions"] is True
    assert details["capabilities"]["read_usage_costs"]["passed"] is True
    # Admin keys cannot list models: the answer says so instead of inventing a list.
    assert "models" not in details and details["capabilities"]["list_models"]["passed"] is False
    assert details["models_unavailable"]


@pytest.mark.parametrize(("provider", "base"), [("openai", OPENAI_PROJECT_KEY), ("anthropic", ANTHROPIC_STANDARD_KEY)])
def test_key_accepted_everywhere_is_active_whatever_its_prefix(client, org_key, provider, base):
    """No admin prefix, but the provider serves it the cost endpoints: the calls decide, not the shape."""
    setup(client, org_key, provider, key_with("orgread", base))
    status, body = call(client, "POST", f"/acme/{provider}/validate", org_key)
    details = body["details"]
    assert status == 200 and body["success"] is True and body["status"] == "active", body
    assert details["capabilities"]["read_usage_costs"]["passed"] is True
    assert details["models"] and details["permissions"] is True
    assert set(details) >= {"connection", "permissions", "models", "message", "capabilities", "pipelines"}


@pytest.mark.parametrize(
    ("provider", "secret", "fix"),
    [("openai", OPENAI_PROJECT_KEY, "sk-admin-"), ("anthropic", ANTHROPIC_STANDARD_KEY, "sk-ant-admin01-")],
)
def test_key_that_logs_in_but_cannot_read_costs_is_not_active(client, org_key, provider, secret, fix):
    setup(client, org_key, provider, secret)
    status, body = call(client, "POST", f"/acme/{provider}/validate", org_key)
    assert status == 200 and body["status"] == "error"
    details = body["details"]
    assert details["connection"] is True and details["permissions"] is False
    assert details["capabilities"]["list_models"]["passed"] is True and details["models"]
    # The cost endpoint was asked and refused the key: proven, not guessed from the prefix.
    assert details["capabilities"]["read_usage_costs"] == {
        "tested": True,
        "passed": False,
        "reason": "key lacks permission for this endpoint",
        "failure_class": "config",
    }
    assert body["error"].startswith("Service account lacks required permissions: read_usage_costs refused")
    assert fix in body["error"] and details["pipelines"][PIPELINE[provider]]["ready"] is False
    if provider == "openai":
        assert "requests_per_minute=5000" in details["tier"]


@pytest.mark.parametrize(
    ("provider", "base", "message"),
    [
        ("openai", OPENAI_KEY, "OpenAI rate limit exceeded during validation"),
        ("anthropic", ANTHROPIC_KEY, "Anthropic rate limit exceeded during validation"),
        ("openai", OPENAI_PROJECT_KEY, "OpenAI rate limit exceeded during validation"),
    ],
)
def test_rate_limited_cost_check_is_reported_as_rate_limiting(client, org_key, provider, base, message):
    """A check that never got an answer is not a permissions verdict."""
    setup(client, org_key, provider, key_with("costlimit", base))
    status, body = call(client, "POST", f"/acme/{provider}/validate", org_key)
    assert status == 200 and body["status"] == "error"
    assert body["error"] == message and body["details"]["message"] == message
    assert body["details"]["capabilities"]["read_usage_costs"]["failure_class"] == "transient"


# --- the spec's validation messages ----------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "base", "marker", "message"),
    [
        ("openai", OPENAI_KEY, "bad", "OpenAI API key is invalid or expired"),
        ("anthropic", ANTHROPIC_KEY, "bad", "Anthropic API key is invalid or expired"),
        ("gemini", GEMINI_KEY, "bad", "Gemini API key is invalid or expired"),
        ("openai", OPENAI_KEY, "forbidden", "Service account lacks required permissions"),
        ("gemini", GEMINI_KEY, "forbidden", "Service account lacks required permissions"),
        ("openai", OPENAI_KEY, "ratelimit", "OpenAI rate limit exceeded during validation"),
        ("anthropic", ANTHROPIC_KEY, "ratelimit", "Anthropic rate limit exceeded during validation"),
        ("gemini", GEMINI_KEY, "ratelimit", "Gemini rate limit exceeded during validation"),
        ("openai", OPENAI_KEY, "down", "Unable to connect to OpenAI"),
        ("anthropic", ANTHROPIC_KEY, "overloaded", "Unable to connect to Anthropic"),
    ],
)
def test_validation_failures_answer_200_with_spec_message(client, org_key, provider, base, marker, message):
    assert setup(client, org_key, provider, key_with(marker, base))[0] == 201
    status, body = call(client, "POST", f"/acme/{provider}/validate", org_key)
    assert status == 200
    assert body["success"] is False and body["status"] == "error"
    assert body["error"] == message
    assert body["integration"]["error_message"] == message


def test_unreachable_provider(client, org_key, service):
    service.adapters.settings.provider_base_urls["openai"] = "http://127.0.0.1:9"  # discard port: refused
    setup(client, org_key)
    status, body = call(client, "POST", "/acme/openai/validate", org_key)
    assert body["error"] == "Unable to connect to OpenAI" and body["status"] == "error"


def test_flaky_provider_is_retried_to_success(client, org_key, simulator):
    setup(client, org_key, secret=key_with("flaky"))
    status, body = call(client, "POST", "/acme/openai/validate", org_key)
    assert body["status"] == "active"
    # The cost check: 503 then 200 (one retry); then the models check, answered at once.
    assert simulator.stats()["requests"]["openai"] == 3


def test_rate_limit_is_retried_at_most_three_times(client, org_key, simulator):
    setup(client, org_key, secret=key_with("ratelimit"))
    call(client, "POST", "/acme/openai/validate", org_key)
    # Three attempts at the first check, then no more calls to a provider that throttles us.
    assert simulator.stats()["requests"]["openai"] == 3


def test_rejected_key_is_not_retried(client, org_key, simulator):
    setup(client, org_key, secret=key_with("bad"))
    call(client, "POST", "/acme/openai/validate", org_key)
    # One request per check (two checks), none retried: a 401 is an answer.
    assert simulator.stats()["requests"]["openai"] == 2


# --- bad input: 4xx JSON, nothing stored ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "raw", "status", "fragment"),
    [
        ("/acme/openai/setup", None, "{not json", 400, "not valid JSON"),
        ("/acme/openai/setup", None, "[1, 2]", 400, "JSON object"),
        ("/acme/openai/setup", {}, None, 400, "credentials"),
        ("/acme/openai/setup", {"credentials": "sk-x"}, None, 400, "must be an object"),
        ("/acme/openai/setup", {"credentials": {"api_key": 12}}, None, 400, "non-empty string"),
        ("/acme/openai/setup", {"credentials": {"api_key": "nope"}}, None, 400, "Invalid API key format for OpenAI"),
        (
            "/acme/gemini/setup",
            {"credentials": {"api_key": OPENAI_KEY}},
            None,
            400,
            "Invalid API key format for Gemini",
        ),
        ("/acme/openai/setup", {"credentials": {"token": "x"}}, None, 400, "takes only 'api_key'"),
        (
            "/acme/openai/setup",
            {"credentials": {"api_key": OPENAI_KEY}, "config": {"color": "red"}},
            None,
            400,
            "Unknown config field",
        ),
        (
            "/acme/openai/setup",
            {"credentials": {"api_key": OPENAI_KEY}, "config": {"organization_id": 7}},
            None,
            400,
            "organization_id",
        ),
        ("/acme/openai/setup", {"credentials": {"api_key": OPENAI_KEY}, "extra": 1}, None, 400, "Unknown field"),
        (
            "/acme/openai/setup",
            {"credentials": {"api_key": OPENAI_KEY}, "expires_at": "tomorrow"},
            None,
            400,
            "ISO-8601",
        ),
        ("/acme/nosuch/setup", {"credentials": {"api_key": OPENAI_KEY}}, None, 404, "Unknown provider"),
        ("/acme/gcp/setup", {"credentials": {"service_account_json": "{}"}}, None, 400, "Google Cloud Platform"),
        ("/acme/openai/setup", None, "x" * 70_000, 413, "larger than"),
    ],
)
def test_bad_setup_input(client, org_key, service, path, body, raw, status, fragment):
    got_status, got = call(client, "POST", path, org_key, body=body, raw=raw)
    assert got_status == status, got
    assert got["success"] is False and fragment in got["error"] + json.dumps(got.get("details", {}))
    assert service.adapters.store.list_integrations("acme") == []


def test_bad_org_slug_is_400(client, org_key):
    status, body = call(client, "GET", "/ACME!", org_key)
    assert status == 400 and "Organization slug" in body["error"]


def test_paths_the_router_cannot_parse_still_get_json(client, org_key):
    response = client.get(BASE + "/acme%0A", headers={"X-API-Key": org_key})
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_wrong_method_and_path(client, org_key):
    assert call(client, "PATCH", "/acme/openai", org_key)[0] == 405
    assert call(client, "GET", "/acme/openai/setup", org_key)[0] == 405
    assert call(client, "GET", "/acme/openai/setup/more", org_key)[0] == 404


def test_update_rejects_bad_input(client, org_key):
    setup(client, org_key)
    assert call(client, "PUT", "/acme/openai", org_key, {})[0] == 400
    assert call(client, "PUT", "/acme/openai", org_key, {"enabled": "yes"})[0] == 400
    assert call(client, "PUT", "/acme/openai", org_key, {"config": []})[0] == 400
    assert call(client, "PUT", "/acme/openai", org_key, {"config": {"bogus": "x"}})[0] == 400
    assert call(client, "PUT", "/acme/nosuch", org_key, {"enabled": False})[0] == 404


def test_duplicate_setup_is_409(client, org_key):
    assert setup(client, org_key)[0] == 201
    status, body = setup(client, org_key, secret=key_with("second"))
    assert status == 409 and body["error"] == "Integration already exists for OpenAI"


def test_config_update_asks_for_revalidation(client, org_key):
    setup(client, org_key)
    call(client, "POST", "/acme/openai/validate", org_key)
    status, body = call(client, "PUT", "/acme/openai", org_key, {"config": {"default_model": "gpt-4o"}})
    assert body["integration"]["status"] == "pending"
    assert body["integration"]["config"] == {"default_model": "gpt-4o"}


def test_expired_credential_is_not_sent_to_provider(client, org_key, simulator):
    setup(client, org_key, expires_at="2020-01-01T00:00:00Z")
    status, body = call(client, "POST", "/acme/openai/validate", org_key)
    assert body["status"] == "expired" and body["success"] is False
    assert simulator.stats()["requests"].get("openai", 0) == 0


# --- rotation ---------------------------------------------------------------------------------


def test_failed_rotation_keeps_old_credential(client, org_key, service):
    setup(client, org_key)
    call(client, "POST", "/acme/openai/validate", org_key)
    before = service.adapters.store.get_integration_with_credential("acme", "openai")
    status, body = call(
        client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": key_with("bad")}}
    )
    assert status == 422 and body["error"] == "OpenAI API key is invalid or expired"
    after = service.adapters.store.get_integration_with_credential("acme", "openai")
    assert after == before and after[0].status == "active"


def test_rotation_keeps_expires_at_unless_the_body_changes_it_and_says_so(client, org_key):
    setup(client, org_key, expires_at="2031-01-31T00:00:00Z")

    def rotate(marker, **extra):
        status, body = call(
            client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": key_with(marker)}, **extra}
        )
        assert status == 200, body
        stored = call(client, "GET", "/acme/openai", org_key)[1]["integration"]
        assert stored.get("expires_at") == body["integration"].get("expires_at")
        return body

    kept = rotate("first")
    assert kept["integration"]["expires_at"] == "2031-01-31T00:00:00.000Z"
    assert "expires_at kept from the previous credential: 2031-01-31T00:00:00.000Z" in kept["message"]
    moved = rotate("second", expires_at="2032-06-30T00:00:00Z")
    assert moved["integration"]["expires_at"] == "2032-06-30T00:00:00.000Z"
    assert "expires_at now 2032-06-30T00:00:00.000Z" in moved["message"]
    also_kept = rotate("third", expires_at=None)
    assert also_kept["integration"]["expires_at"] == "2032-06-30T00:00:00.000Z"


def test_rotation_during_provider_outage_is_503_and_keeps_old(client, org_key, service):
    setup(client, org_key)
    status, body = call(
        client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": key_with("down")}}
    )
    assert status == 503 and body["error"] == "Unable to connect to OpenAI"
    assert service.adapters.store.get_integration("acme", "openai").status == "pending"


def test_rotation_of_missing_integration_is_404(client, org_key):
    status, _ = call(client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": OPENAI_KEY}})
    assert status == 404


# --- auth + tenant isolation ---------------------------------------------------------------


def test_missing_and_invalid_keys_are_401(client, org_key):
    response = client.get(BASE + "/acme")
    assert response.status_code == 401 and response.get_json()["success"] is False
    assert call(client, "GET", "/acme", "ik_0000000000000000_" + "x" * 43)[0] == 401
    assert call(client, "GET", "/acme", org_key[:-1] + ("A" if org_key[-1] != "A" else "B"))[0] == 401
    assert call(client, "GET", "/acme", "garbage")[0] == 401


def test_other_orgs_key_learns_nothing(client, org_key, other_org_key):
    setup(client, org_key)
    answers = [
        call(client, "GET", "/acme", other_org_key),
        call(client, "GET", "/acme/openai", other_org_key),  # exists
        call(client, "GET", "/acme/anthropic", other_org_key),  # does not exist
        call(client, "POST", "/acme/openai/validate", other_org_key),
        call(client, "DELETE", "/acme/openai", other_org_key),
        call(client, "GET", "/no-such-org", other_org_key),
    ]
    assert {status for status, _ in answers} == {403}
    assert {body["error"] for _, body in answers} == {"API key is not valid for this organization"}
    assert call(client, "GET", "/acme/openai", org_key)[0] == 200


def test_revoked_key_is_refused(client, service, settings):
    record, key = service.create_api_key("acme")
    service.adapters.store.revoke_api_key(record.key_id)
    assert call(client, "GET", "/acme", key)[0] == 401


def test_request_id_is_echoed(client, org_key):
    response = client.get(BASE + "/acme", headers={"X-API-Key": org_key, "X-Request-Id": "trace-123"})
    assert response.headers["X-Request-Id"] == "trace-123"


# --- audit -------------------------------------------------------------------------------------------


def test_every_credential_operation_is_audited(client, org_key, service):
    setup(client, org_key, secret=key_with("bad"))
    call(client, "POST", "/acme/openai/validate", org_key)
    setup(client, org_key)  # 409
    call(client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": OPENAI_KEY}})
    call(client, "PUT", "/acme/openai", org_key, {"enabled": False})
    call(client, "DELETE", "/acme/openai", org_key)
    audit = list(reversed(service.adapters.store.list_audit("acme")))
    assert [(a.action, a.outcome) for a in audit] == [
        ("setup", "success"),
        ("validate", "failure"),
        ("setup", "rejected"),
        ("rotate", "success"),
        ("disable", "success"),
        ("delete", "success"),
    ]
    key_id = key_parts(org_key)[1]
    assert {a.actor_key_id for a in audit} == {key_id}
    assert all(a.request_id for a in audit)
    assert audit[0].credential_fingerprint is not None and len(audit[0].credential_fingerprint) == 8
    assert audit[-1].credential_fingerprint == audit[3].credential_fingerprint


# --- alert webhook ---------------------------------------------------------------------------


def test_webhook_lifecycle_over_http(client, org_key, other_org_key, service):
    from tests.openapi_contract import check_response

    path = "/api/v1/organizations/acme/webhook"

    def do(method, body=None, key=org_key):
        response = client.open(path, method=method, json=body, headers={"X-API-Key": key})
        check_response(method, path, response.status_code, response.get_json())
        return response.status_code, response.get_json()

    assert do("GET")[0] == 404
    status, body = do("PUT", {"url": "https://hooks.example/acme"})
    assert status == 200 and body["signing_secret"].startswith("whsec_")
    first_secret = body["signing_secret"]
    status, body = do("GET")
    assert body["webhook"]["url"] == "https://hooks.example/acme" and "signing_secret" not in body
    assert do("PUT", {"url": "https://hooks.example/new"})[1]["signing_secret"] != first_secret  # re-set = new secret
    assert do("PUT", {"url": "http://hooks.example/plain"})[0] == 400
    assert do("PUT", {"url": "https://10.1.2.3/internal"})[0] == 400
    assert do("PUT", {"url": 42})[0] == 400
    assert do("PUT", {})[0] == 400
    assert do("GET", key=other_org_key)[0] == 403
    assert do("DELETE", key=other_org_key)[0] == 403
    assert do("DELETE")[0] == 200
    assert do("DELETE")[0] == 404
    actions = [a.action for a in service.adapters.store.list_audit("acme", "webhook")]
    assert actions == ["webhook_delete", "webhook_set", "webhook_set"]


def test_alerts_list_over_http(client, org_key, other_org_key, service):
    from datetime import timedelta

    from shared.domain.models import utc_now
    from tests.openapi_contract import check_response

    setup(client, org_key, expires_at=(utc_now() + timedelta(days=3)).isoformat())
    call(client, "POST", "/acme/openai/validate", org_key)
    service.adapters.settings = replace(service.adapters.settings, revalidation_min_interval_seconds=0)
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    assert client.post("/api/v1/admin/revalidate", headers={"X-API-Key": admin_key}).status_code == 200
    path = "/api/v1/organizations/acme/alerts"
    response = client.get(path, headers={"X-API-Key": org_key})
    check_response("GET", path, response.status_code, response.get_json())
    alerts = response.get_json()["alerts"]
    assert [(a["kind"], a["delivery_status"]) for a in alerts] == [("expiring", "no_webhook")]
    assert client.get(path + "?limit=0", headers={"X-API-Key": org_key}).status_code == 400
    assert client.get(path, headers={"X-API-Key": other_org_key}).status_code == 403


# --- who did it: created_by and the audit actor ------------------------------------------


def test_created_by_is_the_frontend_user_when_sent(client, org_key, service):
    status, body = setup(client, org_key, headers={"X-User-Id": "alice@acme.test"})
    assert status == 201 and body["integration"]["created_by"] == "alice@acme.test"
    _, credential = service.adapters.store.get_integration_with_credential("acme", "openai")
    assert credential.created_by == "alice@acme.test"
    assert service.adapters.store.list_audit("acme", "openai")[0].actor == "alice@acme.test"


def test_created_by_is_the_key_id_without_a_user(client, org_key, service):
    status, body = setup(client, org_key)
    key_id = key_parts(org_key)[1]
    assert body["integration"]["created_by"] == key_id
    audit = service.adapters.store.list_audit("acme", "openai")[0]
    assert audit.actor == key_id == audit.actor_key_id


@pytest.mark.parametrize("user", ["", "a" * 129, "bob smith", "<script>", "caf\u00e9"])
def test_malformed_user_header_is_a_400_and_stores_nothing(client, org_key, service, user):
    status, body = setup(client, org_key, headers={"X-User-Id": user.encode("utf-8").decode("latin-1")})
    assert status == 400 and "X-User-Id" in body["error"]
    assert service.adapters.store.list_integrations("acme") == []


# --- validated_at and expires_at as the spec means them ------------------------------------


def test_validated_at_is_the_last_successful_validation_only(client, org_key, service):
    setup(client, org_key)
    _, body = call(client, "POST", "/acme/openai/validate", org_key)
    validated_at = body["integration"]["validated_at"]
    service.adapters.settings.provider_base_urls["openai"] = "http://127.0.0.1:9"  # nothing listens there
    _, body = call(client, "POST", "/acme/openai/validate", org_key)
    assert body["status"] == "error" and body["error"] == "Unable to connect to OpenAI"
    assert body["integration"]["validated_at"] == validated_at
    assert body["integration"]["last_checked_at"] > validated_at


def test_credential_row_carries_the_expiry(client, org_key, service):
    setup(client, org_key, expires_at="2027-01-31T00:00:00Z")

    def stored_expiry():
        return service.adapters.store.get_integration_with_credential("acme", "openai")[1].expires_at

    assert stored_expiry().isoformat() == "2027-01-31T00:00:00+00:00"
    call(client, "PUT", "/acme/openai", org_key, {"expires_at": "2027-03-01T00:00:00Z"})
    assert stored_expiry().isoformat() == "2027-03-01T00:00:00+00:00"
    status, body = call(client, "POST", "/acme/openai/rotate", org_key, {"new_credentials": {"api_key": OPENAI_KEY}})
    assert status == 200 and body["integration"]["expires_at"] == "2027-03-01T00:00:00.000Z"  # kept by rotation
    assert stored_expiry().isoformat() == "2027-03-01T00:00:00+00:00"
    call(client, "PUT", "/acme/openai", org_key, {"expires_at": None})
    assert stored_expiry() is None
