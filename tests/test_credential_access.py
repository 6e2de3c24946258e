"""The pipelines' read side over HTTP: POST /api/v1/integrations/{org}/{provider}/access.

Each kind of credential through the real stack and its stand-in: an API key
(provider simulator), a Google access token minted from a service-account key
(the simulator's token endpoint), an STS session of an AWS role (the AWS
stand-in), an Azure Resource Manager token (the Azure simulator). Every
refusal, the admin/org-key split, the audit rows, no secret outside the
answer, and the per-access budget in both backends. OAuth access is in
tests/test_credential_access_oauth.py.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from examples.cost_reader import CostReadFailed, read_costs
from shared.domain.errors import IntegrationNotActive
from shared.domain.models import utc_now
from shared.inbound.pipelines import access_credential
from shared.usecases.credential_access import session_name
from tests.conftest import ANTHROPIC_STANDARD_KEY, OPENAI_KEY, key_parts, key_with
from tests.openapi_contract import check_response

REPO = Path(__file__).resolve().parent.parent
BASE = "/api/v1/integrations"
ACCESS = BASE + "/{org}/{provider}/access"


def access(client, key, provider="openai", pipeline="cost/usage_cost", org="acme", **body):
    path = ACCESS.format(org=org, provider=provider)
    payload = {"pipeline": pipeline, **body} if pipeline is not None else body
    response = client.post(path, json=payload, headers={"X-API-Key": key} if key else {})
    check_response("POST", path, response.status_code, response.get_json())
    return response


def connect(client, org_key, provider="openai", credentials=None, config=None, expires_at=None, validate=True):
    body = {"credentials": credentials or {"api_key": OPENAI_KEY}, "config": config or {}}
    if expires_at:
        body["expires_at"] = expires_at
    created = client.post(f"{BASE}/acme/{provider}/setup", json=body, headers={"X-API-Key": org_key})
    assert created.status_code == 201, created.get_json()
    if validate:
        validated = client.post(f"{BASE}/acme/{provider}/validate", headers={"X-API-Key": org_key}).get_json()
        return validated
    return created.get_json()


@pytest.fixture
def admin_key(service):
    return service.create_api_key("ops", is_admin=True)[1]


def data_dir_bytes(service) -> bytes:
    return b"".join(path.read_bytes() for path in Path(service.adapters.settings.data_dir).rglob("*") if path.is_file())


# --- API keys, both backends ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_an_api_key_goes_to_its_pipeline_within_budget_and_audited(client, org_key, admin_key, service, caplog):
    caplog.set_level(logging.DEBUG)
    connect(client, org_key, expires_at="2035-01-31T00:00:00Z")
    access(client, admin_key)  # the admin key's record is now in the auth cache
    store, cipher = service.adapters.store, service.adapters.cipher
    store.counters.clear()
    cipher.counters.clear()

    response = access(client, admin_key)
    # The budget: one store read, one decrypt, one streamed audit row; no DML, no encrypt.
    # (a read BigQuery answered in short-query mode is also counted as such: not a cost of its own)
    used = {k: v for k, v in store.counters.items() if k != "short_queries"}, dict(cipher.counters)
    assert used == ({"jobs": 1, "appends": 1}, {"decrypt": 1})

    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    _, credential = store.get_integration_with_credential("acme", "openai")
    assert body == {
        "success": True,
        "org_slug": "acme",
        "provider": "openai",
        "pipeline": "cost/usage_cost",
        "credential_type": "api_key",
        "credential": {"api_key": OPENAI_KEY},
        "expires_at": "2035-01-31T00:00:00.000Z",
        "fingerprint": credential.fingerprint,
        "config": {},
    }

    admin_key_id = key_parts(admin_key)[1]
    rows = [a for a in store.list_audit("acme", "openai") if a.action == "credential_accessed"]
    assert len(rows) == 2 and all(a.outcome == "success" for a in rows)
    assert rows[0].pipeline == "cost/usage_cost" and rows[0].actor_key_id == admin_key_id
    assert rows[0].credential_fingerprint == credential.fingerprint
    # The key went out in the answer only: never into a log line or an audit row.
    assert OPENAI_KEY not in caplog.text
    assert all(OPENAI_KEY not in json.dumps(vars(a), default=str) for a in store.list_audit("acme"))


def test_the_key_never_lands_in_the_local_files(client, org_key, admin_key, service):
    connect(client, org_key)
    assert access(client, admin_key).status_code == 200
    assert OPENAI_KEY.encode() not in data_dir_bytes(service)


def test_org_keys_never_read_a_secret_back(client, org_key, other_org_key, admin_key, service):
    connect(client, org_key)
    own = access(client, org_key)
    assert own.status_code == 403 and "admin" in own.get_json()["error"]
    assert access(client, other_org_key).status_code == 403
    assert access(client, None).status_code == 401
    assert access(client, "ik_0000000000000000_" + "x" * 40).status_code == 401
    for response in (own,):
        assert OPENAI_KEY not in response.get_data(as_text=True)
    # Refused before anything was read: no access was audited.
    assert not [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]


def test_what_is_not_there_is_404(client, org_key, admin_key):
    connect(client, org_key)
    unknown = access(client, admin_key, provider="nosuch")
    assert unknown.status_code == 404 and "nosuch" not in unknown.get_json()["error"]
    assert access(client, admin_key, provider="chatgpt_plus", pipeline="x").status_code == 404  # a toggle only
    missing = access(client, admin_key, org="globex")
    assert (
        missing.status_code == 404 and missing.get_json()["error"] == "No integration for OpenAI in this organization"
    )
    assert access(client, admin_key, org="Not An Org").status_code in (400, 404)


def test_a_pipeline_the_provider_does_not_declare_is_400_naming_the_declared_ones(client, org_key, admin_key, service):
    connect(client, org_key)
    wrong = access(client, admin_key, pipeline="cost/billing-secret-sk-admin-xyz")
    assert wrong.status_code == 400
    error = wrong.get_json()["error"]
    assert "cost/usage_cost" in error and "secret-sk-admin" not in error  # names what is declared, echoes nothing
    assert access(client, admin_key, pipeline=None).status_code == 400  # no pipeline at all
    assert access(client, admin_key, pipeline=["cost/usage_cost"]).status_code == 400
    assert access(client, admin_key, extra=1).status_code == 400
    gemini = access(client, admin_key, provider="gemini", pipeline="cost/usage_cost")
    assert gemini.status_code == 400 and "feeds no pipeline" in gemini.get_json()["error"]
    refused = [a for a in service.adapters.store.list_audit("acme", "openai") if a.action == "credential_accessed"]
    assert refused and all(a.outcome == "rejected" and a.pipeline is None for a in refused)


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_a_body_that_is_refused_is_audited_like_any_refusal(client, org_key, admin_key, service):
    connect(client, org_key)
    path = ACCESS.format(org="acme", provider="openai")
    pasted = "sk-admin-PastedByMistake0123456789abcdef"
    bodies = [b"not json", b"", b"[]", b'{"pipeline": null}', json.dumps({"pipeline": "cost/usage_cost", pasted: 1})]
    for data in bodies:
        response = client.post(path, data=data, headers={"X-API-Key": admin_key}, content_type="application/json")
        assert response.status_code == 400 and pasted not in response.get_data(as_text=True)
    rows = [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]
    assert len(rows) == len(bodies)
    assert all(a.outcome == "rejected" and a.pipeline is None and a.provider == "openai" for a in rows)
    assert {a.actor_key_id for a in rows} == {key_parts(admin_key)[1]} and all(a.detail for a in rows)
    assert pasted not in json.dumps([vars(a) for a in rows], default=str)
    # A provider or an organization that cannot be named leaves no row: the path is the caller's input.
    assert access(client, admin_key, provider="nosuch", pipeline=None).status_code == 400
    assert len([a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]) == 5


@pytest.mark.parametrize("backend", ["local", "gcp"])
@pytest.mark.parametrize("state", ["pending", "error", "disabled", "expired"])
def test_an_integration_that_is_not_active_is_409_and_stays_as_it_was(client, org_key, admin_key, service, state):
    key = {"error": key_with("bad"), "pending": OPENAI_KEY}.get(state, OPENAI_KEY)
    connect(
        client,
        org_key,
        credentials={"api_key": key},
        expires_at="2001-01-01T00:00:00Z" if state == "expired" else None,
        validate=state != "pending",
    )
    if state == "disabled":
        client.put(f"{BASE}/acme/openai", json={"enabled": False}, headers={"X-API-Key": org_key})
    before = service.adapters.store.get_integration_with_credential("acme", "openai")
    response = access(client, admin_key)
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "integration_not_active" and body["details"]["status"] == state
    # Also at the top level, where a pipeline reads them first.
    assert body["status"] == state and body["error_message"] == body["details"]["error_message"]
    if state == "error":
        assert body["details"]["error_message"] == "OpenAI API key is invalid or expired"
        assert "invalid or expired" in body["error"]
    assert service.adapters.store.get_integration_with_credential("acme", "openai") == before
    assert key not in response.get_data(as_text=True)
    (row,) = [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]
    assert row.outcome == "rejected" and row.pipeline == "cost/usage_cost" and row.detail == body["error"]


def test_an_active_integration_past_its_expiry_is_409_until_revalidated(client, org_key, admin_key, service):
    connect(client, org_key)
    changed = client.put(
        f"{BASE}/acme/openai", json={"expires_at": "2001-01-01T00:00:00Z"}, headers={"X-API-Key": org_key}
    )
    assert changed.status_code == 200
    before = service.adapters.store.get_integration("acme", "openai")
    response = access(client, admin_key)
    assert response.status_code == 409 and response.get_json()["details"]["status"] == "expired"
    assert "expired at 2001-01-01" in response.get_json()["error"]
    assert service.adapters.store.get_integration("acme", "openai") == before


def test_a_standard_anthropic_key_in_error_is_not_handed_out(client, org_key, admin_key):
    validated = connect(client, org_key, "anthropic", credentials={"api_key": ANTHROPIC_STANDARD_KEY})
    assert validated["status"] == "error"
    response = access(client, admin_key, provider="anthropic", pipeline="usage_cost")
    assert response.status_code == 409 and "lacks required permissions" in response.get_json()["error"]


def test_the_python_entry_answers_what_the_route_does(client, org_key, admin_key, service):
    connect(client, org_key)
    over_http = access(client, admin_key).get_json()
    direct = access_credential("acme", "openai", "cost/usage_cost", requested_by="billing-loader", service=service)
    assert {"success": True, **direct.to_answer()} == over_http
    client.put(f"{BASE}/acme/openai", json={"enabled": False}, headers={"X-API-Key": org_key})
    with pytest.raises(IntegrationNotActive):
        access_credential("acme", "openai", "cost/usage_cost", requested_by="billing-loader", service=service)
    rows = [a for a in service.adapters.store.list_audit("acme") if a.actor_key_id == "job:billing-loader"]
    assert [a.outcome for a in rows] == ["rejected", "success"]


# --- platform identity (Google Cloud) ------------------------------------------------------


def oidc(email: str) -> dict[str, str]:
    claims = base64.urlsafe_b64encode(json.dumps({"email": email}).encode()).decode().rstrip("=")
    return {"Authorization": f"Bearer e30.{claims}.sig"}


def test_in_platform_mode_only_the_pipelines_service_account_gets_a_credential(client, org_key, service):
    connect(client, org_key)
    pipelines = "cost-pipelines@my-project.iam.gserviceaccount.com"
    service.adapters.settings = replace(
        service.adapters.settings, revalidate_auth="platform", pipelines_service_account=pipelines
    )
    path = ACCESS.format(org="acme", provider="openai")
    body = {"pipeline": "cost/usage_cost"}
    allowed = client.post(path, json=body, headers=oidc(pipelines))
    assert allowed.status_code == 200 and allowed.get_json()["credential"] == {"api_key": OPENAI_KEY}
    other = client.post(path, json=body, headers=oidc("integrations-scheduler@my-project.iam.gserviceaccount.com"))
    assert other.status_code == 403 and OPENAI_KEY not in other.get_data(as_text=True)
    assert client.post(path, json=body).status_code == 401
    rows = [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]
    # The other identity's attempt is on record too (a token with no key gets no row: it names no one).
    assert sorted((a.outcome, a.actor_key_id) for a in rows) == [
        ("rejected", "oidc:integrations-scheduler@my-project.iam.gserviceaccount.com"),
        ("success", f"oidc:{pipelines}"),
    ]


def test_in_platform_mode_without_a_pipelines_service_account_no_token_gets_a_credential(client, org_key, service):
    # What the deploy docs promise for an empty pipelines_service_account: no one (a project owner's own
    # token passes Cloud Run's invoker check, so the function must not take "unset" for "anyone").
    connect(client, org_key)
    service.adapters.settings = replace(service.adapters.settings, revalidate_auth="platform")
    path = ACCESS.format(org="acme", provider="openai")
    refused = client.post(path, json={"pipeline": "cost/usage_cost"}, headers=oidc("owner@example.com"))
    assert refused.status_code == 403 and OPENAI_KEY not in refused.get_data(as_text=True)
    assert "PIPELINES_SERVICE_ACCOUNT" in refused.get_json()["error"]
    (row,) = [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]
    assert (row.outcome, row.actor_key_id) == ("rejected", "oidc:owner@example.com")


# --- Google Cloud: a minted token, never the key -------------------------------------------


@pytest.fixture
def billing_dataset(gcp_stack):
    from google.cloud import bigquery

    from tests.test_gcp_validation import PROJECT

    client = gcp_stack.bigquery.client()
    name = f"billing_{uuid.uuid4().hex[:8]}"
    client.create_dataset(name)
    schema = [bigquery.SchemaField("cost", "FLOAT64"), bigquery.SchemaField("service", "STRING")]
    table = client.create_table(bigquery.Table(f"{PROJECT}.{name}.gcp_billing_export_v1_01AB23_456789", schema))
    client.insert_rows_json(table, [{"cost": 12.5, "service": "BigQuery"}, {"cost": 2.25, "service": "Compute"}])
    return name


def connect_gcp(client, org_key, service, gcp_stack, simulator, billing_dataset):
    from tests.test_gcp_validation import PROJECT, service_account

    service.adapters.settings = replace(
        service.adapters.settings,
        provider_base_urls={**service.adapters.settings.provider_base_urls, "gcp": gcp_stack.bigquery.endpoint},
        gcp_iam_base_url=simulator.base_url("google") + "/iam",
    )
    key = service_account(simulator.token_uri)
    validated = connect(
        client,
        org_key,
        "gcp",
        credentials={"service_account_json": key},
        config={"project_id": PROJECT, "billing_dataset_id": billing_dataset},
    )
    assert validated["status"] == "active", validated
    return key


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_gcp_access_is_a_read_only_token_minted_from_the_key(
    client, org_key, admin_key, service, gcp_stack, simulator, billing_dataset, caplog
):
    caplog.set_level(logging.DEBUG)
    key = connect_gcp(client, org_key, service, gcp_stack, simulator, billing_dataset)
    access(client, admin_key, "gcp", "cost/billing")  # warm the auth cache
    store, cipher = service.adapters.store, service.adapters.cipher
    store.counters.clear()
    cipher.counters.clear()
    token_calls = simulator.stats()["requests"]["google"]

    response = access(client, admin_key, "gcp", "cost/billing")
    # (a read BigQuery answered in short-query mode is also counted as such: not a cost of its own)
    used = {k: v for k, v in store.counters.items() if k != "short_queries"}, dict(cipher.counters)

    assert response.status_code == 200 and used == ({"jobs": 1, "appends": 1}, {"decrypt": 1})
    body = response.get_json()
    assert body["credential_type"] == "service_account"
    assert set(body["credential"]) == {"access_token", "token_type", "scopes"}
    assert body["credential"]["access_token"].startswith("sim-token-") and body["credential"]["token_type"] == "Bearer"
    assert body["credential"]["scopes"] == ["https://www.googleapis.com/auth/bigquery.readonly"]
    lifetime = utc_now_from(body["expires_at"]) - utc_now()
    assert timedelta(minutes=55) < lifetime <= timedelta(hours=1)
    text = response.get_data(as_text=True)
    assert "PRIVATE KEY" not in text and key["private_key_id"] not in text and "private_key" not in text
    assert simulator.stats()["requests"]["google"] - token_calls == 1  # the one token call
    assert body["credential"]["access_token"] not in caplog.text  # the token is in the answer only
    stored = json.dumps([vars(a) for a in store.list_audit("acme")], default=str)
    assert body["credential"]["access_token"] not in stored and key["private_key_id"] not in stored


def test_gcp_token_endpoint_unreachable_is_503_and_changes_nothing(
    client, org_key, admin_key, service, gcp_stack, simulator, billing_dataset
):
    connect_gcp(client, org_key, service, gcp_stack, simulator, billing_dataset)
    before = service.adapters.store.get_integration("acme", "gcp")
    service.adapters.settings = replace(service.adapters.settings, gcp_token_uri="http://127.0.0.1:9/token")
    response = access(client, admin_key, "gcp", "cost/billing")
    assert response.status_code == 503
    assert response.get_json()["error"] == "Unable to connect to Google Cloud Platform"
    assert service.adapters.store.get_integration("acme", "gcp") == before
    (row,) = [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]
    assert row.outcome == "failure"


def utc_now_from(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text)


# --- AWS: an STS session, never a long-lived key ----------------------------------------------


@pytest.fixture(scope="module")
def aws():
    from tests.simulators.aws import AwsStandIn

    with AwsStandIn() as stand_in:
        yield stand_in


def aws_settings(settings, aws):
    from tests.simulators.aws import AUDIENCE, METADATA_PATH, PLATFORM_ROLE_ARN

    return replace(
        settings,
        provider_base_urls={**settings.provider_base_urls, "aws": aws.url},
        aws_platform_role_arn=PLATFORM_ROLE_ARN,
        aws_web_identity_audience=AUDIENCE,
        aws_id_token_url=aws.url + METADATA_PATH,
    )


def connect_aws(client, org_key, service, aws):
    service.adapters.settings = aws_settings(service.adapters.settings, aws)
    external_id = client.get(f"{BASE}/acme/aws/setup-instructions", headers={"X-API-Key": org_key}).get_json()[
        "instructions"
    ]["external_id"]
    customer = aws.create_customer(external_id=external_id)
    config = {name: customer[name] for name in ("export_bucket", "export_prefix", "region")}
    validated = connect(client, org_key, "aws", credentials={"role_arn": customer["role_arn"]}, config=config)
    assert validated["status"] == "active", validated
    return customer


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_aws_access_is_a_short_sts_session_naming_org_and_pipeline(client, org_key, admin_key, service, aws):
    import boto3

    customer = connect_aws(client, org_key, service, aws)
    access(client, admin_key, "aws", "cost/billing")  # warm: auth cache and the platform's own session
    assumed = aws.state.calls["sts:AssumeRole"]
    service.adapters.store.counters.clear()
    service.adapters.cipher.counters.clear()

    response = access(client, admin_key, "aws", "cost/billing")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body["credential"]) == {"access_key_id", "secret_access_key", "session_token"}
    assert aws.state.calls["sts:AssumeRole"] - assumed == 1 and dict(service.adapters.cipher.counters) == {"decrypt": 1}
    used = {k: v for k, v in service.adapters.store.counters.items() if k != "short_queries"}
    assert used == {"jobs": 1, "appends": 1}
    lifetime = utc_now_from(body["expires_at"]) - utc_now()
    assert timedelta(minutes=14) < lifetime <= timedelta(minutes=15)
    session = boto3.client(
        "sts",
        endpoint_url=aws.url,
        region_name="us-east-1",
        aws_access_key_id=body["credential"]["access_key_id"],
        aws_secret_access_key=body["credential"]["secret_access_key"],
        aws_session_token=body["credential"]["session_token"],
    )
    identity = session.get_caller_identity()
    assert identity["Account"] == customer["role_arn"].split(":")[4]
    assert identity["Arn"].endswith("/" + session_name("acme", "cost/billing")) and "acme" in identity["Arn"]


# --- Azure: an ARM token, never the client secret -------------------------------------------


@pytest.fixture(scope="module")
def azure_sim():
    from tests.simulators.azure import AzureSimulator

    with AzureSimulator() as simulator:
        yield simulator


def connect_azure(client, org_key, service, azure_sim):
    from tests.test_azure_validation import azure_settings, connected

    service.adapters.settings = azure_settings(service.adapters.settings, azure_sim)
    principal, scope = connected(azure_sim.directory)
    validated = connect(client, org_key, "azure", credentials=principal.credentials(), config={"scope": scope})
    assert validated["status"] == "active", validated
    return principal, scope


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_azure_access_is_an_arm_token_that_reads_the_exports(client, org_key, admin_key, service, azure_sim):
    principal, scope = connect_azure(client, org_key, service, azure_sim)
    access(client, admin_key, "azure", "cost/billing")  # warm the auth cache
    service.adapters.store.counters.clear()
    service.adapters.cipher.counters.clear()
    response = access(client, admin_key, "azure", "cost/billing")
    assert response.status_code == 200
    used = {k: v for k, v in service.adapters.store.counters.items() if k != "short_queries"}
    assert (used, dict(service.adapters.cipher.counters)) == ({"jobs": 1, "appends": 1}, {"decrypt": 1})
    body = response.get_json()
    assert body["credential"]["scopes"] == ["https://management.azure.com/.default"]
    assert principal.client_secret not in response.get_data(as_text=True)
    assert timedelta(minutes=30) < utc_now_from(body["expires_at"]) - utc_now() <= timedelta(hours=2)
    exports = requests.get(
        f"{azure_sim.url}/arm{scope}/providers/Microsoft.CostManagement/exports",
        params={"api-version": "2025-03-01"},
        headers={"Authorization": f"Bearer {body['credential']['access_token']}"},
        verify=azure_sim.ca_bundle,
        timeout=10,
    )
    assert exports.status_code == 200 and exports.json()["value"]


def test_a_secret_deleted_at_the_provider_turns_the_integration_to_error_with_an_alert(
    client, org_key, admin_key, service, azure_sim
):
    principal, _ = connect_azure(client, org_key, service, azure_sim)
    azure_sim.directory.apps[principal.client_id].secrets.clear()  # someone deleted the secret in Entra ID
    response = access(client, admin_key, "azure", "cost/billing")
    assert response.status_code == 409
    body = response.get_json()
    assert body["details"]["status"] == "error" and "AADSTS7000215" in body["error"]
    assert service.adapters.store.get_integration("acme", "azure").status == "error"
    assert [(a.kind, a.provider) for a in service.adapters.store.list_alerts("acme")] == [("error", "azure")]


# --- the reference pipeline (examples/cost_reader.py) reads costs with each answer ----------


def environ_of(settings) -> dict[str, str]:
    """The provider hosts the service was pointed at, as the consumer reads them."""
    environ = {f"PROVIDER_{p.upper()}_BASE_URL": url for p, url in settings.provider_base_urls.items()}
    if settings.azure_ca_bundle:
        environ["AZURE_CA_BUNDLE"] = settings.azure_ca_bundle
    return environ


def test_openai_costs_with_the_admin_key_also_from_the_command_line(client, org_key, admin_key, service):
    connect(client, org_key)
    answer = access(client, admin_key).get_json()
    summary = read_costs(answer, environ_of(service.adapters.settings))
    assert summary == {
        "org_slug": "acme",
        "provider": "openai",
        "pipeline": "cost/usage_cost",
        "rows": 1,
        "total": 12.5,
        "currency": "usd",
    }
    run = subprocess.run(
        [sys.executable, "-m", "examples.cost_reader"],
        input=json.dumps(answer),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **environ_of(service.adapters.settings)},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == summary


def test_a_revoked_key_fails_the_read(client, org_key, admin_key, service, simulator):
    connect(client, org_key)
    answer = access(client, admin_key).get_json()
    requests.post(simulator.url + "/_sim/revoke", json={"api_key": answer["credential"]["api_key"]}, timeout=5)
    with pytest.raises(CostReadFailed, match="401"):
        read_costs(answer, environ_of(service.adapters.settings))


def test_gcp_billing_export_through_the_minted_token(
    client, org_key, admin_key, service, gcp_stack, simulator, billing_dataset
):
    connect_gcp(client, org_key, service, gcp_stack, simulator, billing_dataset)
    answer = access(client, admin_key, "gcp", "cost/billing").get_json()
    summary = read_costs(answer, environ_of(service.adapters.settings))
    assert summary["table"].startswith("gcp_billing_export_v1_")
    assert (summary["rows"], summary["total"]) == (2, 14.75)


def test_aws_export_bucket_through_the_sts_session(client, org_key, admin_key, service, aws):
    connect_aws(client, org_key, service, aws)
    answer = access(client, admin_key, "aws", "cost/billing").get_json()
    summary = read_costs(answer, environ_of(service.adapters.settings))
    assert summary["manifest"].endswith("-Manifest.json") and summary["data_files"] == 1


def test_azure_export_through_the_arm_token(client, org_key, admin_key, service, azure_sim):
    connect_azure(client, org_key, service, azure_sim)
    answer = access(client, admin_key, "azure", "cost/billing").get_json()
    summary = read_costs(answer, environ_of(service.adapters.settings))
    assert summary["exports"] == 1 and summary["last_run_end"]
