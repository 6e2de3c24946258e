"""Azure service principals end to end: msal gets tokens from the HTTPS simulator's
Entra ID, the validator lists Cost Management exports on its ARM and reads the
secret's end date from its Microsoft Graph; requests go through the real WSGI
stack where the contract is HTTP. The simulator records any call that would
cost or change something, and every test here asserts there was none."""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.caller import Caller
from shared.domain.models import utc_now
from shared.jobs.revalidation import revalidate_all
from shared.validators import Failure, FailureClass
from tests.simulators.azure import AzureSimulator

BASE = "/api/v1/integrations"
INVALID = "Microsoft Azure API key is invalid or expired: "
LACKS = "Service account lacks required permissions: "


@pytest.fixture(scope="module")
def azure_sim():
    with AzureSimulator() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _nothing_costly_or_mutating(azure_sim):
    before = len(azure_sim.directory.forbidden_calls)
    yield
    assert azure_sim.directory.forbidden_calls[before:] == [], "a validator called a costly or mutating endpoint"


@pytest.fixture
def directory(azure_sim):
    directory = azure_sim.directory
    directory.throttles.clear()
    directory.down.clear()
    return directory


def azure_settings(settings, simulator):
    return replace(
        settings,
        provider_base_urls={**settings.provider_base_urls, "azure": f"{simulator.url}/arm"},
        azure_authority_host=simulator.url,
        azure_graph_base_url=f"{simulator.url}/graph",
        azure_ca_bundle=simulator.ca_bundle,
    )


@pytest.fixture
def azure_service(service, azure_sim):
    service.adapters.settings = azure_settings(service.adapters.settings, azure_sim)
    return service


@pytest.fixture
def caller(azure_service):
    record, _ = azure_service.create_api_key("acme")
    return Caller(key_id=record.key_id, org_slug="acme", is_admin=False, request_id="req-az")


def connected(directory, *, secret_days=365, graph_readable=True, runs=None, export="daily-actual-cost"):
    """An app with Cost Management Reader on a fresh subscription that holds one export."""
    principal = directory.add_app(secret_days=secret_days, graph_readable=graph_readable)
    scope = f"/subscriptions/{uuid.uuid4()}"
    directory.add_export(scope, export, runs)
    directory.grant(principal.client_id, scope)
    return principal, scope


def validate(service, caller, credentials, config, expires_at=None):
    service.setup(caller, "azure", credentials, config, expires_at)
    return service.validate(caller, "azure")


# --- verdicts ------------------------------------------------------------------------


def test_working_principal_with_fresh_export_is_active_and_learns_secret_expiry(azure_service, caller, directory):
    principal, scope = connected(directory, secret_days=200)
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.result.ok, outcome.result.details
    assert outcome.integration.status == "active"
    capabilities = outcome.result.details["capabilities"]
    assert all(capabilities[name]["passed"] for name in ("authenticate", "list_exports", "read_cost_export"))
    export = capabilities["read_cost_export"]
    assert export["export_name"] == "daily-actual-cost" and export["last_run_status"] == "Completed"
    assert 5 < export["last_success_age_hours"] < 7
    expiry = outcome.result.details["secret_expiry"]
    assert expiry["readable"] is True and expiry["matched_by"] == "hint" and expiry["key_id"] == principal.secret_id
    assert timedelta(days=199) < outcome.integration.expires_at - utc_now() < timedelta(days=201)


@pytest.mark.parametrize(
    ("case", "code", "fix"),
    [
        ("wrong_secret", "AADSTS7000215", "not its Secret ID"),
        ("expired_secret", "AADSTS7000222", "create a new secret"),
        ("unknown_app", "AADSTS700016", "check the Application (client) ID"),
        ("unknown_tenant", "AADSTS90002", "check the Directory (tenant) ID"),
    ],
)
def test_entra_refusals_map_by_error_code_to_the_spec_message_and_fix(
    azure_service, caller, directory, case, code, fix
):
    principal, scope = connected(directory, secret_days=-1 if case == "expired_secret" else 365)
    credentials = principal.credentials()
    if case == "wrong_secret":
        credentials["client_secret"] = "xyz8Q~" + "w" * 34
    elif case == "unknown_app":
        credentials["client_id"] = str(uuid.uuid4())
    elif case == "unknown_tenant":
        credentials["tenant_id"] = str(uuid.uuid4())
    outcome = validate(azure_service, caller, credentials, {"scope": scope})
    assert outcome.integration.status == "error"
    assert outcome.result.failure == Failure.INVALID_KEY and outcome.result.failure_class == FailureClass.CONFIG
    assert (
        outcome.result.message.startswith(INVALID) and code in outcome.result.message and fix in outcome.result.message
    )
    assert credentials["client_secret"] not in json.dumps(outcome.integration.to_info())
    assert outcome.result.details["capabilities"]["authenticate"]["passed"] is False


@pytest.mark.parametrize(
    ("scope_kind", "role"),
    [
        ("subscription", "Cost Management Reader"),
        ("billing_profile", "Billing profile reader"),
    ],
)
def test_missing_role_names_the_role_to_grant(azure_service, caller, directory, scope_kind, role):
    principal = directory.add_app()
    scope = (
        f"/subscriptions/{uuid.uuid4()}"
        if scope_kind == "subscription"
        else f"/providers/Microsoft.Billing/billingAccounts/{uuid.uuid4()}:{uuid.uuid4()}_2019-05-31"
        f"/billingProfiles/AB12-CD34-EF5-GH6"
    )
    directory.add_export(scope, "monthly")  # exists, but no role assignment for this app
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.integration.status == "error" and outcome.result.failure == Failure.FORBIDDEN
    assert outcome.result.message.startswith(LACKS)
    assert f"AuthorizationFailed: grant the service principal the {role} role on {scope}" in outcome.result.message


def test_role_at_a_parent_scope_is_inherited(azure_service, caller, directory):
    principal = directory.add_app()
    subscription = f"/subscriptions/{uuid.uuid4()}"
    scope = f"{subscription}/resourceGroups/finance"
    directory.add_export(scope, "rg-costs")
    directory.grant(principal.client_id, subscription)
    assert validate(azure_service, caller, principal.credentials(), {"scope": scope}).integration.status == "active"


def test_unknown_subscription_says_the_scope_is_not_found(azure_service, caller, directory):
    principal = directory.add_app()
    scope = f"/subscriptions/{uuid.uuid4()}"
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.integration.status == "error"
    assert "SubscriptionNotFound" in outcome.result.details["capabilities"]["list_exports"]["reason"]


@pytest.mark.parametrize(
    ("runs", "export_name", "reason"),
    [
        ([], None, "has not finished a run yet"),
        ([("Failed", 2.0), ("Completed", 26.0)], None, "ended Failed, error StorageAccountNotFound"),
        ([("Completed", 100.0)], None, "last succeeded 99.9 h ago (limit 72 h)"),
        ([("InProgress", 0.1), ("Completed", 100.0)], None, "last succeeded 99.9 h ago"),
        ([("Completed", 2.0)], "other-export", "no export named other-export at"),
    ],
    ids=["never_ran", "failed_last_run", "stale", "stale_behind_a_running_one", "named_export_missing"],
)
def test_export_must_have_run_successfully_and_recently(azure_service, caller, directory, runs, export_name, reason):
    principal, scope = connected(directory, runs=runs)
    config = {"scope": scope, **({"export_name": export_name} if export_name else {})}
    outcome = validate(azure_service, caller, principal.credentials(), config)
    assert outcome.integration.status == "error"
    export = outcome.result.details["capabilities"]["read_cost_export"]
    assert export["passed"] is False and reason in export["reason"], export
    assert outcome.result.message.startswith(LACKS + "read_cost_export refused")
    assert "Create a daily Cost Management export" in outcome.result.message
    assert outcome.result.details["pipelines"]["cost/billing"]["ready"] is False


def test_no_export_at_the_scope(azure_service, caller, directory):
    principal = directory.add_app()
    scope = f"/subscriptions/{uuid.uuid4()}"
    directory.add_scope(scope)
    directory.grant(principal.client_id, scope)
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert f"no Cost Management export at {scope}" in outcome.result.message


def test_any_export_picks_the_freshest_and_a_named_one_is_found_case_insensitively(azure_service, caller, directory):
    principal, scope = connected(directory, runs=[("Completed", 200.0)], export="old-export")
    directory.add_export(scope, "Fresh-Export", [("Completed", 3.0)])
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.integration.status == "active"
    assert outcome.result.details["capabilities"]["read_cost_export"]["export_name"] == "Fresh-Export"
    azure_service.update(caller, "azure", replace_config({"scope": scope, "export_name": "OLD-EXPORT"}))
    assert azure_service.validate(caller, "azure").integration.status == "error"


def replace_config(config):
    from shared.domain.models import SettingsChange

    return SettingsChange(config=config)


# --- throttling and outages ---------------------------------------------------------------


@pytest.mark.parametrize("component", ["arm", "login"])
def test_throttling_is_retried_after_retry_after(azure_service, caller, directory, component):
    principal, scope = connected(directory)
    azure_service.setup(caller, "azure", principal.credentials(), {"scope": scope}, None)
    before = dict(directory.requests)
    directory.throttle(component, times=1, retry_after=0)
    outcome = azure_service.validate(caller, "azure")
    assert outcome.integration.status == "active", outcome.result.details
    extra = {"arm": 1, "login": 1}[component]
    expected = {"login": 3, "arm": 1, "graph": 1}  # discovery + ARM token + Graph token; exports; application
    expected[component] += extra
    assert {k: directory.requests[k] - before[k] for k in expected} == expected


def test_persistent_throttling_is_rate_limited_not_a_config_error(azure_service, caller, directory):
    principal, scope = connected(directory)
    directory.throttle("arm", times=10, retry_after=1)  # Retry-After 1 s, capped at 0.2 s by the test settings
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.result.message == "Microsoft Azure rate limit exceeded during validation"
    assert outcome.result.failure_class == FailureClass.TRANSIENT


@pytest.mark.parametrize("component", ["arm", "login"])
def test_azure_answering_503_is_unable_to_connect(azure_service, caller, directory, component):
    principal, scope = connected(directory)
    directory.set_down(component)
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.result.message == "Unable to connect to Microsoft Azure"
    assert outcome.result.failure_class == FailureClass.PROVIDER_OUTAGE


def test_unreachable_authority_is_unable_to_connect(azure_service, caller, directory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = azure_service.adapters.settings
    azure_service.adapters.settings = replace(settings, azure_authority_host=f"https://127.0.0.1:{closed_port}")
    principal, scope = connected(directory)
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope})
    assert outcome.result.message == "Unable to connect to Microsoft Azure"
    assert outcome.result.failure_class == FailureClass.TRANSIENT


# --- secret expiry -------------------------------------------------------------------------


def test_expiry_not_readable_keeps_the_given_date_and_says_why(azure_service, caller, directory):
    principal, scope = connected(directory, graph_readable=False)
    given = utc_now().replace(microsecond=0) + timedelta(days=90)
    outcome = validate(azure_service, caller, principal.credentials(), {"scope": scope}, expires_at=given)
    assert outcome.integration.status == "active"
    assert outcome.integration.expires_at == given
    expiry = outcome.result.details["secret_expiry"]
    assert expiry["readable"] is False
    assert "403 Authorization_RequestDenied" in expiry["reason"] and "Application.Read.All" in expiry["reason"]


def test_secret_id_picks_the_secret_when_hints_collide(azure_service, caller, directory):
    principal, scope = connected(directory, secret_days=300)
    twin, twin_id = directory.add_secret(principal.client_id, 20, value=principal.client_secret[:3] + "8Q~" + "t" * 34)
    credentials = {**principal.credentials(), "client_secret": twin}
    outcome = validate(azure_service, caller, credentials, {"scope": scope})
    assert outcome.result.details["secret_expiry"]["readable"] is False
    assert "share this secret's hint" in outcome.result.details["secret_expiry"]["reason"]
    azure_service.delete(caller, "azure")
    outcome = validate(azure_service, caller, {**credentials, "secret_id": twin_id}, {"scope": scope})
    assert outcome.result.details["secret_expiry"]["matched_by"] == "secret_id"
    assert timedelta(days=19) < outcome.integration.expires_at - utc_now() < timedelta(days=21)


def test_secret_expiring_in_six_days_raises_the_seven_day_alert_on_revalidation(azure_service, caller, directory):
    principal, scope = connected(directory, secret_days=6)
    azure_service.setup(caller, "azure", principal.credentials(), {"scope": scope}, None)
    admin = Caller(key_id="ops", org_slug="ops", is_admin=True, request_id="req-reval")
    azure_service.adapters.settings = replace(azure_service.adapters.settings, revalidation_min_interval_seconds=0)
    summary = revalidate_all(azure_service, admin)
    assert summary["active"] == 1 and summary["alerts"] == 1
    alerts = azure_service.adapters.store.list_alerts("acme")
    assert [(a.kind, a.provider) for a in alerts] == [("expiring", "azure")]
    assert "within 7 days" in alerts[0].message and "Microsoft Azure credential expires" in alerts[0].message
    assert revalidate_all(azure_service, admin)["alerts"] == 0  # each window fires once


def test_rotation_to_a_new_secret_takes_its_expiry(azure_service, caller, directory):
    principal, scope = connected(directory, secret_days=5)
    validate(azure_service, caller, principal.credentials(), {"scope": scope})
    new_secret, _ = directory.add_secret(principal.client_id, 400)
    outcome = azure_service.rotate(caller, "azure", {**principal.credentials(), "client_secret": new_secret}, None)
    assert outcome.integration.status == "active"
    assert outcome.integration.expires_at - utc_now() > timedelta(days=399)


# --- certificates --------------------------------------------------------------------------


def _certificate_pem(days: int) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cost-platform")])
    now = utc_now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate.public_bytes(serialization.Encoding.PEM).decode() + key_pem


@pytest.mark.parametrize("registered", [True, False])
def test_certificate_credential_signs_an_assertion(azure_service, caller, directory, registered):
    principal, scope = connected(directory)
    pem = _certificate_pem(days=45)
    if registered:
        directory.add_certificate(principal.client_id, pem)
    credentials = {"tenant_id": principal.tenant_id, "client_id": principal.client_id, "client_certificate": pem}
    outcome = validate(azure_service, caller, credentials, {"scope": scope})
    if registered:
        assert outcome.integration.status == "active", outcome.result.message
        assert outcome.result.details["secret_expiry"]["source"] == "certificate"
        assert timedelta(days=44) < outcome.integration.expires_at - utc_now() < timedelta(days=46)
    else:
        assert outcome.result.message.startswith(INVALID) and "AADSTS700027" in outcome.result.message


# --- the HTTP contract ------------------------------------------------------------------------


def call(client, method, path, key, body=None):
    response = client.open(BASE + path, method=method, json=body, headers={"X-API-Key": key})
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


@pytest.fixture
def azure_client(azure_service, client):
    return client


def test_setup_and_validate_over_http(azure_client, org_key, directory):
    principal, scope = connected(directory)
    status, body = call(
        azure_client,
        "POST",
        "/acme/azure/setup",
        org_key,
        {"credentials": principal.credentials(), "config": {"scope": scope}},
    )
    assert status == 201 and body["integration"]["status"] == "pending"
    status, body = call(azure_client, "POST", "/acme/azure/validate", org_key)
    assert status == 200 and body["status"] == "active" and body["integration"]["expires_at"].endswith("Z")
    assert principal.client_secret not in json.dumps(body)


GOOD_TENANT, GOOD_CLIENT = str(uuid.uuid4()), str(uuid.uuid4())
GOOD = {"tenant_id": GOOD_TENANT, "client_id": GOOD_CLIENT, "client_secret": "abc8Q~" + "s" * 34}
GOOD_SCOPE = f"/subscriptions/{uuid.uuid4()}"


@pytest.mark.parametrize(
    ("credentials", "config", "names"),
    [
        ({**GOOD, "tenant_id": "contoso"}, {"scope": GOOD_SCOPE}, "credentials.tenant_id must be a GUID"),
        ({**GOOD, "client_id": "12345"}, {"scope": GOOD_SCOPE}, "credentials.client_id must be a GUID"),
        ({**GOOD, "secret_id": "x"}, {"scope": GOOD_SCOPE}, "credentials.secret_id must be a GUID"),
        ({**GOOD, "client_certificate": "pem"}, {"scope": GOOD_SCOPE}, "exactly one of 'client_secret' or"),
        (
            {"tenant_id": GOOD_TENANT, "client_id": GOOD_CLIENT, "client_certificate": "-----BEGIN CERTIFICATE-----"},
            {"scope": GOOD_SCOPE},
            "credentials.client_certificate",
        ),
        ({**GOOD, "api_key": "x"}, {"scope": GOOD_SCOPE}, "1 other field was sent"),
        (
            {k: v for k, v in GOOD.items() if k != "tenant_id"},
            {"scope": GOOD_SCOPE},
            "'credentials.tenant_id' is required",
        ),
        (GOOD, {"scope": "/subscriptions/not-a-guid"}, "'scope' must look like /subscriptions/"),
        (GOOD, {"scope": f"{GOOD_SCOPE}/resourceGroups/.."}, "'scope' must look like"),
        (GOOD, {}, "'scope' is required"),
        (GOOD, {"scope": GOOD_SCOPE, "export_name": "bad name!"}, "'export_name' must match"),
    ],
)
def test_format_problems_are_400s_that_name_the_field(azure_client, org_key, azure_service, credentials, config, names):
    status, body = call(
        azure_client, "POST", "/acme/azure/setup", org_key, {"credentials": credentials, "config": config}
    )
    assert status == 400, body
    assert names in body["error"] + json.dumps(body.get("details", {}))
    assert azure_service.adapters.store.list_integrations("acme") == []


def test_certificate_without_its_private_key_is_rejected(azure_client, org_key):
    certificate_only = _certificate_pem(days=10).split("-----BEGIN PRIVATE KEY-----")[0]
    credentials = {"tenant_id": GOOD_TENANT, "client_id": GOOD_CLIENT, "client_certificate": certificate_only}
    status, body = call(
        azure_client,
        "POST",
        "/acme/azure/setup",
        org_key,
        {"credentials": credentials, "config": {"scope": GOOD_SCOPE}},
    )
    assert status == 400 and "holds no private key" in json.dumps(body["details"])


# --- the simulator's shapes ---------------------------------------------------------------------


def test_simulator_answers_in_azure_shapes_and_records_costly_calls(azure_sim, directory):
    import requests

    principal, scope = connected(directory)
    token_url = f"{azure_sim.url}/{principal.tenant_id}/oauth2/v2.0/token"
    form = {
        **principal.credentials(),
        "grant_type": "client_credentials",
        "scope": "https://management.azure.com/.default",
    }
    refused = requests.post(token_url, data={**form, "client_secret": "nope"}, verify=azure_sim.ca_bundle, timeout=5)
    body = refused.json()
    assert refused.status_code == 401 and body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215:") and {"trace_id", "correlation_id"} <= set(body)

    token = requests.post(token_url, data=form, verify=azure_sim.ca_bundle, timeout=5).json()["access_token"]
    exports = f"{azure_sim.url}/arm{scope}/providers/Microsoft.CostManagement/exports"
    headers = {"Authorization": f"Bearer {token}"}
    missing_version = requests.get(exports, headers=headers, verify=azure_sim.ca_bundle, timeout=5)
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["code"] == "MissingApiVersionParameter"

    before = len(directory.forbidden_calls)
    run_now = requests.post(
        f"{exports}/daily-actual-cost/run?api-version=2025-03-01",
        headers=headers,
        verify=azure_sim.ca_bundle,
        timeout=5,
    )
    assert run_now.status_code == 405 and set(run_now.json()["error"]) == {"code", "message"}
    assert directory.forbidden_calls[before:] == [
        f"POST /arm{scope}/providers/Microsoft.CostManagement/exports/daily-actual-cost/run?api-version=2025-03-01"
    ]
    del directory.forbidden_calls[before:]  # this test made the call on purpose
