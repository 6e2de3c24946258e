"""SaaS API-token connections through the integration endpoints, against the SaaS simulator.

Per tool: a valid token (its pipeline ready), a rejected one, one without the
scope its pipeline needs, a throttled one, and an unreachable tool. The
simulator refuses and records every call that is not a free read-only one;
each test ends by asserting it recorded none.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.domain.caller import Caller
from shared.jobs.revalidation import revalidate_all
from tests.simulators.saas import SAAS_PROVIDER_IDS

BASE = "/api/v1/integrations/acme"


def github(marker):
    return "ghp_" + (marker + "TestToken" + "0" * 36)[:36]


TOOLS = {
    # provider: (display name, token with a marker, config, pipeline or "connection", capability refused by forbidden)
    "github": ("GitHub", github, {"organization": "acme-corp"}, "saas/seats", "read_copilot_seats"),
    "slack": ("Slack", lambda m: f"xoxb-1234567890-{m}-TestTokenAbcdefghij", {}, "saas/seats", "read_billing_plan"),
    "cursor": ("Cursor", lambda m: f"key_{m}TestKeyAbcdefghijklmnop0123", {}, "saas/seats", "list_team_members"),
    "vercel": (
        "Vercel",
        lambda m: f"{m}TestTokenAbcdefghijkl012",
        {"team_id": "team_AbCdEfGh12"},
        "saas/spend",
        "read_billing_charges",
    ),
    "figma": ("Figma", lambda m: f"figd_{m}-TestTokenAbcdefghijkl012", {}, "connection", "read_me"),
    "notion": ("Notion", lambda m: f"ntn_{m}TestTokenAbcdefghijkl012", {}, "saas/seats", "list_users"),
    "asana": (
        "Asana",
        lambda m: f"2/1200000000000001/1200000000000002:{m}TestTokenAbcdefgh",
        {"workspace_gid": "1200000000000001"},
        "saas/seats",
        "list_workspace_users",
    ),
}


@pytest.fixture
def saas(settings, saas_simulator):
    saas_simulator.reset()
    settings.provider_base_urls.update({p: saas_simulator.base_url(p) for p in SAAS_PROVIDER_IDS})
    yield saas_simulator
    assert saas_simulator.forbidden_calls == [], "a validator called a paid or mutating endpoint"


def call(client, method, path, key, body=None):
    response = client.open(
        path,
        method=method,
        data=None if body is None else json.dumps(body),
        headers={"X-API-Key": key},
        content_type="application/json",
    )
    return response.status_code, response.get_json(), response.get_data(as_text=True)


def connect(client, key, provider, marker):
    _, make_token, config, _, _ = TOOLS[provider]
    token = make_token(marker)
    status, body, _ = call(
        client, "POST", f"{BASE}/{provider}/setup", key, {"credentials": {"api_key": token}, "config": config}
    )
    assert status == 201, body
    status, body, text = call(client, "POST", f"{BASE}/{provider}/validate", key)
    assert status == 200 and token not in text
    return body


@pytest.mark.parametrize("provider", sorted(TOOLS))
def test_valid_token_readies_its_pipeline(client, org_key, saas, provider):
    name, _, _, pipeline, capability = TOOLS[provider]
    body = connect(client, org_key, provider, "")
    assert body["success"] is True and body["status"] == "active", body
    assert body["details"]["pipelines"][pipeline]["ready"] is True
    assert capability in body["details"]["pipelines"][pipeline]["requires"]
    assert body["details"]["message"] == f"{name} credential is valid"


@pytest.mark.parametrize("provider", sorted(TOOLS))
def test_rejected_token(client, org_key, saas, provider):
    body = connect(client, org_key, provider, "bad")
    assert body["success"] is False and body["status"] == "error"
    assert body["error"] == f"{TOOLS[provider][0]} API key is invalid or expired"
    assert body["details"]["connection"] is False


@pytest.mark.parametrize("provider", sorted(TOOLS))
def test_token_without_the_needed_scope(client, org_key, saas, provider):
    name, _, _, pipeline, capability = TOOLS[provider]
    body = connect(client, org_key, provider, "forbidden")
    assert body["success"] is False and body["status"] == "error"
    assert body["error"].startswith("Service account lacks required permissions")
    assert body["details"]["capabilities"][capability] == {
        "tested": True,
        "passed": False,
        "reason": body["details"]["capabilities"][capability]["reason"],
        "failure_class": "config",
    }
    assert body["details"]["pipelines"][pipeline]["ready"] is False
    assert body["details"]["fix"] == body["details"]["pipelines"][pipeline]["fix"]
    assert body["details"]["connection"] is True  # the tool answered: the token is known, only not enough
    if len(body["details"]["capabilities"]) > 1:  # another call accepted the token: the message names the refusal
        assert capability in body["error"]


@pytest.mark.parametrize("provider", sorted(TOOLS))
def test_rate_limited_is_transient_not_a_permission(client, org_key, saas, provider):
    body = connect(client, org_key, provider, "ratelimit")
    assert body["success"] is False
    assert body["error"] == f"{TOOLS[provider][0]} rate limit exceeded during validation"
    failed = [c for c in body["details"]["capabilities"].values() if c["tested"] and not c["passed"]]
    assert failed and failed[0]["failure_class"] == "transient"


@pytest.mark.parametrize("provider", sorted(TOOLS))
def test_down_or_unreachable(client, org_key, saas, settings, provider):
    body = connect(client, org_key, provider, "down")
    assert body["success"] is False and body["error"] == f"Unable to connect to {TOOLS[provider][0]}"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings.provider_base_urls[provider] = f"http://127.0.0.1:{closed.getsockname()[1]}"
    status, body, _ = call(client, "POST", f"{BASE}/{provider}/validate", org_key)
    assert status == 200 and body["error"] == f"Unable to connect to {TOOLS[provider][0]}"


def test_slack_errors_in_a_200_are_not_success(client, org_key, saas):
    body = connect(client, org_key, "slack", "oddanswer")
    assert body["status"] == "error"
    assert body["details"]["capabilities"]["auth_test"]["passed"] is False


def test_github_unknown_organization_is_a_config_problem(client, org_key, saas):
    token = github("")
    call(
        client,
        "POST",
        f"{BASE}/github/setup",
        org_key,
        {"credentials": {"api_key": token}, "config": {"organization": "no-such-org"}},
    )
    _, body, _ = call(client, "POST", f"{BASE}/github/validate", org_key)
    assert body["status"] == "error" and body["details"]["connection"] is True
    assert body["details"]["capabilities"]["read_copilot_seats"]["failure_class"] == "config"


def test_github_needs_its_organization(client, org_key, saas):
    status, body, _ = call(client, "POST", f"{BASE}/github/setup", org_key, {"credentials": {"api_key": github("")}})
    assert status == 400 and "'organization' is required" in body["error"]


def test_the_simulator_catches_paid_or_mutating_calls(saas_simulator):
    import requests

    response = requests.post(saas_simulator.base_url("slack") + "/api/chat.postMessage", timeout=5)
    response2 = requests.post(saas_simulator.base_url("cursor") + "/teams/spend", timeout=5)
    assert (response.status_code, response2.status_code) == (405, 405)
    assert saas_simulator.forbidden_calls == ["POST /slack/api/chat.postMessage", "POST /cursor/teams/spend"]
    saas_simulator.reset()


def test_revalidation_covers_saas_integrations(client, service, org_key, saas):
    for provider, marker in (("github", ""), ("notion", "forbidden"), ("cursor", "")):
        token = TOOLS[provider][1](marker)
        call(
            client,
            "POST",
            f"{BASE}/{provider}/setup",
            org_key,
            {"credentials": {"api_key": token}, "config": TOOLS[provider][2]},
        )
    summary = revalidate_all(service, Caller(key_id="scheduler", org_slug="*", is_admin=True, request_id="r"))
    assert summary["checked"] == 3, summary
    statuses = {i.provider: i.status for i in service.list_integrations(Caller("k", "acme", False, "r"))}
    assert statuses == {"github": "active", "notion": "error", "cursor": "active"}


def test_rotate_a_saas_token(client, org_key, saas):
    connect(client, org_key, "figma", "")
    status, body, _ = call(
        client, "POST", f"{BASE}/figma/rotate", org_key, {"new_credentials": {"api_key": TOOLS["figma"][1]("bad")}}
    )
    assert status == 422 and body["error"] == "Figma API key is invalid or expired"
    status, body, _ = call(
        client, "POST", f"{BASE}/figma/rotate", org_key, {"new_credentials": {"api_key": TOOLS["figma"][1]("new")}}
    )
    assert status == 200 and body["integration"]["status"] == "active"


# The exact requests one validation sends: each tool's declared free reads, once each.
EXPECTED_CALLS = {
    "github": ["GET /github/user", "GET /github/orgs/acme-corp/copilot/billing"],
    "slack": ["POST /slack/api/auth.test", "GET /slack/api/team.billing.info", "GET /slack/api/users.list?limit=1"],
    "cursor": ["GET /cursor/teams/members"],
    "figma": ["GET /figma/v1/me"],
    "notion": ["GET /notion/v1/users/me", "GET /notion/v1/users?page_size=1"],
    "asana": ["GET /asana/api/1.0/users/me", "GET /asana/api/1.0/users?workspace=1200000000000001&limit=1"],
}


@pytest.mark.parametrize("provider", sorted(EXPECTED_CALLS))
def test_validation_sends_only_the_declared_reads(client, org_key, saas, provider):
    connect(client, org_key, provider, "")
    assert saas.served_calls == EXPECTED_CALLS[provider]


@pytest.mark.parametrize("config", [{"team_id": "team_AbCdEfGh12"}, {}])
def test_vercel_reads_one_day_of_charges_for_its_team(client, org_key, saas, config):
    status, _, _ = call(
        client,
        "POST",
        f"{BASE}/vercel/setup",
        org_key,
        {"credentials": {"api_key": TOOLS["vercel"][1]("")}, "config": config},
    )
    assert status == 201
    _, body, _ = call(client, "POST", f"{BASE}/vercel/validate", org_key)
    assert body["status"] == "active"
    user, charges = saas.served_calls
    assert user == "GET /vercel/v2/user"
    query = parse_qs(urlsplit(charges.split(" ", 1)[1]).query)
    start, end = (datetime.fromisoformat(query[name][0]) for name in ("from", "to"))
    assert end - start == timedelta(days=1)
    # An unset config field drops its query parameter instead of sending it empty.
    assert query.get("teamId") == ([config["team_id"]] if config else None)


def test_no_saas_token_in_logs_answers_or_store(client, org_key, saas, settings, caplog):
    caplog.set_level("DEBUG")
    tokens = []
    for provider in sorted(TOOLS):
        for marker in ("", "bad", "forbidden"):
            call(client, "DELETE", f"{BASE}/{provider}", org_key)
            body = connect(client, org_key, provider, marker)
            tokens.append(TOOLS[provider][1](marker))
            assert tokens[-1] not in json.dumps(body)
    stored = b"".join(path.read_bytes() for path in settings.data_dir.glob("integrations.sqlite3*"))
    assert len(stored) > 10_000  # the database and its WAL hold the encrypted rows
    for token in tokens:
        assert token not in caplog.text and token.encode() not in stored
