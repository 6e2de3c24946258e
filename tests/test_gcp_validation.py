"""Live Google Cloud validation end to end: google-auth gets a token from the
simulator's token endpoint with a throwaway service-account key, then the
validator lists datasets, finds the billing export and dry-runs a query on
the BigQuery emulator."""

from __future__ import annotations

import json
import uuid
from functools import cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.domain.caller import Caller
from shared.domain.errors import InvalidCredentialFormat
from shared.validators import Failure
from shared.validators.gcp_live import _failed
from shared.validators.retry import Attempted

PROJECT = "integrations-test"  # the gcp_stack emulator's project


@cache
def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account(token_uri: str, email: str = "billing-reader@integrations-test.iam.gserviceaccount.com") -> dict:
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": uuid.uuid4().hex,
        "private_key": _private_key_pem(),
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": token_uri,
    }


@pytest.fixture(scope="module")
def billing_datasets(gcp_stack):
    """A dataset holding a standard billing export, one with a detailed export, one with neither."""
    from google.cloud import bigquery

    client = gcp_stack.bigquery.client()
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"billing_{kind}_{suffix}" for kind in ("standard", "detailed", "empty")}
    for name in names.values():
        client.create_dataset(name)
    schema = [bigquery.SchemaField("cost", "FLOAT64")]
    client.create_table(bigquery.Table(f"{PROJECT}.{names['standard']}.gcp_billing_export_v1_01AB23_456789", schema))
    client.create_table(
        bigquery.Table(f"{PROJECT}.{names['detailed']}.gcp_billing_export_resource_v1_01AB23_456789", schema)
    )
    client.create_table(bigquery.Table(f"{PROJECT}.{names['empty']}.unrelated", schema))
    return names


@pytest.fixture
def gcp_service(service, gcp_stack, simulator):
    from dataclasses import replace

    service.adapters.settings = replace(
        service.adapters.settings,
        provider_base_urls={**service.adapters.settings.provider_base_urls, "gcp": gcp_stack.bigquery.endpoint},
        gcp_iam_base_url=simulator.base_url("google") + "/iam",
    )
    return service


@pytest.fixture
def caller(gcp_service):
    record, _ = gcp_service.create_api_key("acme")
    return Caller(key_id=record.key_id, org_slug="acme", is_admin=False, request_id="req-1")


def _validate(gcp_service, caller, account, dataset):
    config = {"project_id": PROJECT, "billing_dataset_id": dataset}
    gcp_service.setup(caller, "gcp", {"service_account_json": account}, config, None)
    return gcp_service.validate(caller, "gcp")


@pytest.mark.parametrize("kind", ["standard", "detailed"])
def test_working_service_account_with_billing_export_is_active(gcp_service, caller, simulator, billing_datasets, kind):
    outcome = _validate(gcp_service, caller, service_account(simulator.token_uri), billing_datasets[kind])
    assert outcome.result.ok, outcome.result.details
    assert outcome.integration.status == "active"
    capabilities = outcome.result.details["capabilities"]
    assert {name for name, c in capabilities.items() if c["passed"]} == {
        "list_datasets",
        "read_billing_export",
        "run_queries",
    }
    assert capabilities["read_billing_export"]["export_kind"] == kind
    assert capabilities["read_billing_export"]["newest_data_age_hours"] >= 0


def test_stale_billing_export_is_not_active(gcp_service, caller, simulator, billing_datasets):
    from dataclasses import replace

    gcp_service.adapters.settings = replace(gcp_service.adapters.settings, billing_export_max_age_hours=0)
    outcome = _validate(gcp_service, caller, service_account(simulator.token_uri), billing_datasets["standard"])
    assert outcome.integration.status == "error"
    export = outcome.result.details["capabilities"]["read_billing_export"]
    assert export["export_kind"] == "standard" and "no data newer than" in export["reason"]
    assert outcome.result.details["pipelines"]["cost/billing"]["ready"] is False


@pytest.mark.parametrize(
    ("email", "expires"),
    [
        ("expiring-key@p.iam.gserviceaccount.com", True),
        ("reader@p.iam.gserviceaccount.com", False),
        ("noiam-reader@p.iam.gserviceaccount.com", False),
    ],
)
def test_key_expiry_comes_from_iam_when_it_says_so(gcp_service, caller, simulator, billing_datasets, email, expires):
    from datetime import timedelta

    from shared.domain.models import utc_now

    outcome = _validate(
        gcp_service, caller, service_account(simulator.token_uri, email=email), billing_datasets["standard"]
    )
    assert outcome.integration.status == "active"
    if expires:
        assert utc_now() + timedelta(days=4) < outcome.integration.expires_at < utc_now() + timedelta(days=6)
        assert "key_expires_at" in outcome.result.details
    else:
        assert outcome.integration.expires_at is None


def test_revoked_key_is_invalid_or_expired(gcp_service, caller, simulator, billing_datasets):
    account = service_account(simulator.token_uri, email="revoked@integrations-test.iam.gserviceaccount.com")
    outcome = _validate(gcp_service, caller, account, billing_datasets["standard"])
    assert outcome.integration.status == "error"
    assert outcome.result.message == "Google Cloud Platform API key is invalid or expired"
    assert outcome.result.failure == Failure.INVALID_KEY


@pytest.mark.parametrize("dataset_kind", ["empty", "missing"])
def test_missing_billing_export_says_what_is_missing(gcp_service, caller, simulator, billing_datasets, dataset_kind):
    dataset = billing_datasets.get(dataset_kind, "no_such_dataset")
    outcome = _validate(gcp_service, caller, service_account(simulator.token_uri), dataset)
    assert outcome.integration.status == "error"
    assert outcome.result.message.startswith("Service account lacks required permissions: read_billing_export")
    assert "Enable the Cloud Billing export" in outcome.result.message
    export = outcome.result.details["capabilities"]["read_billing_export"]
    assert export["passed"] is False and dataset in export["reason"]
    assert outcome.result.details["capabilities"]["list_datasets"]["passed"] is True


def test_token_endpoint_down_is_unable_to_connect(gcp_service, caller, simulator, billing_datasets):
    account = service_account(simulator.token_uri, email="down@integrations-test.iam.gserviceaccount.com")
    simulator.reset()
    outcome = _validate(gcp_service, caller, account, billing_datasets["standard"])
    assert outcome.result.message == "Unable to connect to Google Cloud Platform"
    # The service's one retry policy decides: VALIDATION_MAX_ATTEMPTS token requests, not google-auth's own loop too.
    assert simulator.stats()["requests"]["google"] == gcp_service.adapters.settings.validation_max_attempts


@pytest.mark.parametrize(
    "token_uri",
    ["http://169.254.169.254/computeMetadata/v1/token", "https://attacker.example/token", "file:///etc/passwd"],
)
def test_token_uri_outside_allowed_hosts_is_rejected_at_setup(gcp_service, caller, token_uri):
    with pytest.raises(InvalidCredentialFormat) as raised:
        gcp_service.setup(
            caller,
            "gcp",
            {"service_account_json": json.dumps(service_account(token_uri))},
            {"project_id": PROJECT, "billing_dataset_id": "billing"},
            None,
        )
    assert raised.value.message == "Invalid API key format for Google Cloud Platform"
    assert any("token_uri" in problem for problem in raised.value.details["problems"])
    assert gcp_service.adapters.store.list_integrations("acme") == []


def test_missing_fields_are_listed(gcp_service, caller):
    with pytest.raises(InvalidCredentialFormat) as raised:
        gcp_service.setup(
            caller,
            "gcp",
            {"service_account_json": {"type": "authorized_user"}},
            {"project_id": PROJECT, "billing_dataset_id": "billing"},
            None,
        )
    problems = raised.value.details["problems"]
    assert "missing field private_key" in problems and "type must be service_account" in problems


def test_required_config_is_enforced(gcp_service, caller, simulator):
    from shared.domain.errors import BadRequest

    with pytest.raises(BadRequest, match="billing_dataset_id"):
        gcp_service.setup(
            caller, "gcp", {"service_account_json": service_account(simulator.token_uri)}, {"project_id": PROJECT}, None
        )


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (401, Failure.INVALID_KEY),
        (403, Failure.FORBIDDEN),
        (404, Failure.MISSING_CAPABILITY),
        (429, Failure.RATE_LIMITED),
    ],
)
def test_bigquery_answers_are_classified(status, failure):
    import requests

    response = requests.Response()
    response.status_code = status
    assert _failed("list_datasets", Attempted(response, None, 1), "not found").failure == failure
