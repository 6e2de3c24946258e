"""AWS through the real stack: HTTP (WSGI) -> service -> boto3 -> the AWS stand-in (moto + our evaluating layer).

Every case the AWS walkthrough names: valid role, wrong external ID, untrusting role,
confused deputy, missing S3 permission, empty and stale export, throttling
(retried), unreachable STS, bad ARN (400); zero calls to any paid API.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from shared.common.config import Settings
from tests.openapi_contract import check_response
from tests.simulators.aws import AUDIENCE, DRIP, METADATA_PATH, PLATFORM_ROLE_ARN, AwsStandIn
from tests.test_outbound_deadlines import RecordingProxy

BASE = "/api/v1/integrations/acme"
REPO = Path(__file__).resolve().parent.parent
# The only AWS calls a validation may make: free, read-only.
FREE_CALLS = {
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRole",
    "sts:GetCallerIdentity",
    "s3:ListObjectsV2",
    "s3:HeadObject",
}


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsStandIn]:
    with AwsStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def settings(settings: Settings, aws: AwsStandIn) -> Settings:
    """conftest's settings, with AWS pointed at the stand-in (as the AWS walkthrough's demo.env does)."""
    aws.reset()
    return replace(
        settings,
        provider_base_urls={**settings.provider_base_urls, "aws": aws.url},
        aws_platform_role_arn=PLATFORM_ROLE_ARN,
        aws_web_identity_audience=AUDIENCE,
        aws_id_token_url=aws.url + METADATA_PATH,
    )


def instructions(client, key, **query):
    response = client.get(BASE + "/aws/setup-instructions", query_string=query, headers={"X-API-Key": key})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["instructions"]


def connect(client, key, customer, role_arn=None):
    body = {
        "credentials": {"role_arn": role_arn or customer["role_arn"]},
        "config": {name: customer[name] for name in ("export_bucket", "export_prefix", "region")},
    }
    response = client.post(BASE + "/aws/setup", json=body, headers={"X-API-Key": key})
    assert response.status_code == 201, response.get_json()
    validated = client.post(BASE + "/aws/validate", headers={"X-API-Key": key})
    assert validated.status_code == 200
    return validated.get_json()


def assert_only_free_calls(aws: AwsStandIn) -> None:
    assert aws.state.paid_calls == 0
    assert set(aws.state.calls) <= FREE_CALLS, aws.state.calls


# --- setup instructions ----------------------------------------------------------------


def test_setup_instructions_answer_one_external_id_per_org_in_one_store_job(client, org_key, other_org_key, service):
    client.get(BASE, headers={"X-API-Key": org_key})  # warm the auth cache
    service.adapters.store.counters.clear()
    first = instructions(client, org_key, export_bucket="acme-cost-exports", export_prefix="cur")
    assert service.adapters.store.counters["jobs"] == 1
    assert instructions(client, org_key)["external_id"] == first["external_id"]
    other = client.get(
        "/api/v1/integrations/globex/aws/setup-instructions", headers={"X-API-Key": other_org_key}
    ).get_json()["instructions"]
    assert other["external_id"] != first["external_id"]
    assert re.fullmatch(r"[\w+=,.@:/-]{2,1224}", first["external_id"])

    assert first["platform_principal"] == {"role_arn": PLATFORM_ROLE_ARN, "account_id": "111111111111"}
    (trust,) = first["trust_policy"]["Statement"]
    assert trust["Principal"] == {"AWS": PLATFORM_ROLE_ARN} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": first["external_id"]}}
    statements = first["permissions_policy"]["Statement"]
    granted = {
        action for s in statements for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    # Least privilege, and nothing billed per request (Cost Explorer is ce:*).
    assert granted == {"s3:ListBucket", "s3:GetObject", "bcm-data-exports:ListExports", "bcm-data-exports:GetExport"}
    resources = {s["Resource"] for s in first["permissions_policy"]["Statement"]}
    assert resources == {"arn:aws:s3:::acme-cost-exports", "arn:aws:s3:::acme-cost-exports/cur/*", "*"}
    template = json.loads(first["cloudformation_template"])
    role = template["Resources"]["CostExportReaderRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"] == first["trust_policy"]


def test_setup_instructions_reject_bad_input(client, org_key, service):
    headers = {"X-API-Key": org_key}
    bad_bucket = client.get(BASE + "/aws/setup-instructions?export_bucket=Not_A_Bucket", headers=headers)
    assert bad_bucket.status_code == 400 and "export_bucket" in bad_bucket.get_json()["error"]
    unknown = client.get(BASE + "/aws/setup-instructions?bucket=x", headers=headers)
    assert unknown.status_code == 400 and "bucket" in unknown.get_json()["error"]
    foreign = client.get("/api/v1/integrations/globex/aws/setup-instructions", headers=headers)
    assert foreign.status_code == 403
    assert client.get(BASE + "/aws/setup-instructions").status_code == 401


def test_setup_instructions_without_a_platform_role_say_the_deployment_lacks_one(settings, org_key, client, service):
    service.adapters.settings = replace(settings, aws_platform_role_arn=None)
    response = client.get(BASE + "/aws/setup-instructions", headers={"X-API-Key": org_key})
    assert response.status_code == 503 and "AWS_PLATFORM_ROLE_ARN" in response.get_json()["error"]


def test_setup_instructions_answers_match_openapi(settings, client, org_key, service):
    path = BASE + "/aws/setup-instructions"
    for query, headers in [
        ("?export_bucket=acme-cost-exports&export_prefix=cur", {"X-API-Key": org_key}),
        ("?export_bucket=Bad_Bucket", {"X-API-Key": org_key}),
        ("", {}),
    ]:
        response = client.get(path + query, headers=headers)
        check_response("GET", path, response.status_code, response.get_json())
    foreign = client.get("/api/v1/integrations/globex/aws/setup-instructions", headers={"X-API-Key": org_key})
    check_response("GET", path, foreign.status_code, foreign.get_json())
    service.adapters.settings = replace(settings, aws_platform_role_arn=None)
    unconfigured = client.get(path, headers={"X-API-Key": org_key})
    assert unconfigured.status_code == 503
    check_response("GET", path, 503, unconfigured.get_json())


def test_the_stand_in_would_see_a_paid_call(aws):
    """The zero-paid-calls assertions can fail: a Cost Explorer request is counted."""
    import boto3

    aws.reset()
    cost_explorer = boto3.client(
        "ce",
        endpoint_url=aws.url,
        region_name="us-east-1",
        aws_access_key_id="stand-in",
        aws_secret_access_key="stand-in",
    )
    with pytest.raises(Exception, match="UnrecognizedClientException"):
        cost_explorer.get_cost_and_usage(
            TimePeriod={"Start": "2026-11-01", "End": "2026-11-02"}, Granularity="DAILY", Metrics=["UnblendedCost"]
        )
    assert aws.state.paid_calls >= 1


# --- setup + validate -------------------------------------------------------------------


def test_valid_role_becomes_active_with_only_free_calls(client, org_key, aws, service):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    aws.reset()
    result = connect(client, org_key, customer)
    assert result["success"] is True and result["status"] == "active", result
    capabilities = result["details"]["capabilities"]
    assert all(c["passed"] for c in capabilities.values()), capabilities
    assert set(capabilities) == {
        "assume_role",
        "caller_identity",
        "external_id_required",
        "list_export",
        "read_cost_export",
    }
    assert capabilities["caller_identity"]["account_id"] == "222222222222"
    assert capabilities["read_cost_export"]["newest_data_age_hours"] == pytest.approx(2.0, abs=0.1)
    assert result["details"]["pipelines"]["cost/billing"]["ready"] is True
    assert_only_free_calls(aws)
    assert aws.state.calls["sts:AssumeRole"] == 2  # with the external ID, and the confused-deputy probe without


def test_setup_costs_two_store_jobs_and_validate_the_usual_budget(client, org_key, aws, service):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    store, cipher = service.adapters.store, service.adapters.cipher
    store.counters.clear()
    cipher.counters.clear()
    body = {
        "credentials": {"role_arn": customer["role_arn"]},
        "config": {name: customer[name] for name in ("export_bucket", "export_prefix", "region")},
    }
    assert client.post(BASE + "/aws/setup", json=body, headers={"X-API-Key": org_key}).status_code == 201
    assert store.counters["jobs"] == 2 and cipher.counters["encrypt"] == 1  # external ID read + the setup write
    store.counters.clear()
    assert client.post(BASE + "/aws/validate", headers={"X-API-Key": org_key}).get_json()["status"] == "active"
    assert store.counters["jobs"] == 2 and cipher.counters["decrypt"] == 1


def test_wrong_external_id_is_a_permission_error_with_the_trust_policy_fix(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id="pi-someone-else-chose-this")
    aws.reset()
    result = connect(client, org_key, customer)
    assert result["status"] == "error"
    assert result["error"] == "Service account lacks required permissions"
    assert external_id in result["details"]["fix"] and "sts:ExternalId" in result["details"]["fix"]
    assert result["details"]["capabilities"]["assume_role"]["failure_class"] == "config"
    assert_only_free_calls(aws)


def test_role_that_does_not_trust_the_platform_is_refused(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id, trust_platform=False)
    result = connect(client, org_key, customer)
    assert result["status"] == "error" and result["error"] == "Service account lacks required permissions"
    assert PLATFORM_ROLE_ARN in result["details"]["fix"]


def test_role_without_the_external_id_condition_is_a_confused_deputy_error(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=None)
    result = connect(client, org_key, customer)
    assert result["status"] == "error"
    assert result["error"].startswith("Amazon Web Services role does not require the external ID")
    assert f'"sts:ExternalId": "{external_id}"' in result["error"]
    assert result["details"]["capabilities"]["external_id_required"]["passed"] is False
    # The export itself was readable: the verdict is about the trust policy alone.
    assert result["details"]["capabilities"]["read_cost_export"]["passed"] is True


@pytest.mark.parametrize(
    ("permission", "missing_action", "capability"),
    [("allow_list", "s3:ListBucket", "list_export"), ("allow_read", "s3:GetObject", "read_cost_export")],
)
def test_missing_s3_permission_says_which_action_to_allow(client, org_key, aws, permission, missing_action, capability):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id, **{permission: False})
    result = connect(client, org_key, customer)
    assert result["status"] == "error"
    assert result["error"].startswith(
        f"Service account lacks required permissions: {capability} refused ({missing_action} denied"
    )
    assert missing_action in result["details"]["fix"]
    assert result["details"]["capabilities"][capability]["passed"] is False
    assert result["details"]["pipelines"]["cost/billing"]["ready"] is False


def test_empty_export_says_nothing_was_delivered(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id, export_age_hours=None)
    result = connect(client, org_key, customer)
    assert result["status"] == "error"
    assert "no files under s3://acme-cost-exports/cur/" in result["error"]
    assert "24 hours" in result["details"]["fix"]


def test_stale_export_is_an_error_with_its_age(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id, export_age_hours=100)
    result = connect(client, org_key, customer)
    assert result["status"] == "error"
    assert "100.0 h old (limit 72 h)" in result["error"]
    assert result["details"]["capabilities"]["read_cost_export"]["newest_data_age_hours"] == pytest.approx(100, abs=0.1)


def test_throttling_is_retried(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    aws.reset()
    aws.fail("AssumeRole", "Throttling", times=1)
    aws.fail("ListObjectsV2", "SlowDown", times=1)
    result = connect(client, org_key, customer)
    assert result["status"] == "active", result
    assert aws.state.calls["sts:AssumeRole"] == 3  # one throttled, then the two real ones


def test_persistent_throttling_is_a_transient_rate_limit_error(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    aws.reset()
    aws.fail("AssumeRole", "Throttling", times=100)
    result = connect(client, org_key, customer)
    assert result["status"] == "error"
    assert result["error"] == "Amazon Web Services rate limit exceeded during validation"
    assert result["details"]["capabilities"]["assume_role"]["failure_class"] == "transient"
    assert aws.state.calls["sts:AssumeRole"] == 3  # VALIDATION_MAX_ATTEMPTS


@pytest.mark.parametrize("action", ["AssumeRole", "ListObjectsV2"])
def test_a_slow_drip_aws_endpoint_cannot_stretch_a_validation_past_its_deadline(
    settings, client, org_key, aws, service, action
):
    deadline = 2.0
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    # A per-read timeout (5 s) never fires: every read of the answer gets a byte.
    service.adapters.settings = replace(settings, validation_deadline_seconds=deadline, request_timeout_seconds=5.0)
    aws.reset()
    aws.fail(action, DRIP, times=100)
    started = time.monotonic()
    result = connect(client, org_key, customer)
    elapsed = time.monotonic() - started
    print(f"\nvalidation against a slow-drip {action}: {elapsed:.2f} s (VALIDATION_DEADLINE_SECONDS={deadline:g})")
    assert elapsed < deadline + 1.0
    assert result["status"] == "error"
    assert_only_free_calls(aws)


def test_aws_calls_go_through_the_proxy_unless_no_proxy_names_the_host(client, org_key, aws, monkeypatch):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    with RecordingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        aws.reset()
        proxied = connect(client, org_key, customer)
        assert proxied["status"] == "error" and proxied["error"] == "Unable to connect to Amazon Web Services"
        # The metadata server's ID token (unless cached), then STS: the proxy refused them, nothing reached AWS.
        assert proxy.asked and all(line.split()[1].startswith(aws.url) for line in proxy.asked)
        assert aws.state.calls["sts:AssumeRole"] == 0

        # (The stand-in's own boto3 admin calls read NO_PROXY too, and botocore takes no network entry.)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        asked = len(proxy.asked)
        direct = client.post(BASE + "/aws/validate", headers={"X-API-Key": org_key}).get_json()
        assert direct["status"] == "active", direct["details"]["capabilities"]
        assert len(proxy.asked) == asked


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_sts_is_unable_to_connect(settings, client, org_key, aws, service):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    urls = {**settings.provider_base_urls, "aws": f"http://127.0.0.1:{_closed_port()}"}
    service.adapters.settings = replace(settings, provider_base_urls=urls, request_timeout_seconds=0.5)
    result = connect(client, org_key, customer)
    assert result["status"] == "error" and result["error"] == "Unable to connect to Amazon Web Services"
    assert result["details"]["capabilities"]["assume_role"]["failure_class"] == "transient"


def test_broken_platform_identity_is_the_operators_problem_not_the_customers(settings, client, org_key, aws, service):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    # The platform role trusts tokens for AUDIENCE only.
    service.adapters.settings = replace(settings, aws_web_identity_audience="someone-elses-audience")
    result = connect(client, org_key, customer)
    assert result["status"] == "error" and result["error"] == "Unable to connect to Amazon Web Services"
    check = result["details"]["capabilities"]["assume_role"]
    assert check["failure_class"] == "provider_outage" and check["reason"].startswith("platform identity")
    assert "AWS_PLATFORM_ROLE_ARN" in result["details"]["fix"]


# --- format checks, rotation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role_arn", "problem"),
    [
        ("arn:aws-eu:iam::222222222222:role/cost-export-reader", "partition must be one of aws, aws-cn, aws-us-gov"),
        ("arn:aws:iam::2222:role/cost-export-reader", "account must be 12 digits"),
        ("arn:aws:iam::222222222222:user/someone", "must be an IAM role ARN"),
        ("AKIAIOSFODNN7EXAMPLE", "must be an IAM role ARN"),
    ],
)
def test_bad_role_arn_is_a_400_naming_the_field_and_stores_nothing(client, org_key, service, role_arn, problem):
    body = {
        "credentials": {"role_arn": role_arn},
        "config": {"export_bucket": "acme-cost-exports", "export_prefix": "cur", "region": "us-east-1"},
    }
    response = client.post(BASE + "/aws/setup", json=body, headers={"X-API-Key": org_key})
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "Invalid API key format for Amazon Web Services"
    assert payload["details"]["field"] == "credentials.role_arn"
    assert any(problem in text for text in payload["details"]["problems"]), payload
    assert client.get(BASE + "/aws", headers={"X-API-Key": org_key}).status_code == 404


@pytest.mark.parametrize("partition", ["aws-cn", "aws-us-gov"])
def test_other_partitions_are_accepted_and_validation_says_trust_cannot_cross_partitions(
    client, org_key, aws, partition
):
    body = {
        "credentials": {"role_arn": f"arn:{partition}:iam::222222222222:role/path/cost-export-reader"},
        "config": {"export_bucket": "acme-cost-exports", "export_prefix": "cur", "region": "us-east-1"},
    }
    assert client.post(BASE + "/aws/setup", json=body, headers={"X-API-Key": org_key}).status_code == 201
    aws.reset()
    result = client.post(BASE + "/aws/validate", headers={"X-API-Key": org_key}).get_json()
    assert result["status"] == "error" and result["error"] == "Service account lacks required permissions"
    assert f"partition {partition}" in result["details"]["capabilities"]["assume_role"]["reason"]
    assert "AWS_PLATFORM_ROLE_ARN" in result["details"]["fix"]
    assert sum(aws.state.calls.values()) == 0  # decided before any call


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"export_bucket": "Bad_Bucket", "export_prefix": "cur", "region": "us-east-1"}, "export_bucket"),
        ({"export_bucket": "acme-cost-exports", "export_prefix": "/cur", "region": "us-east-1"}, "export_prefix"),
        ({"export_bucket": "acme-cost-exports", "export_prefix": "cur", "region": "mars"}, "region"),
        ({"export_bucket": "acme-cost-exports", "export_prefix": "cur"}, "region"),
    ],
)
def test_bad_config_is_a_400_naming_the_field(client, org_key, config, field):
    body = {"credentials": {"role_arn": "arn:aws:iam::222222222222:role/cost-export-reader"}, "config": config}
    response = client.post(BASE + "/aws/setup", json=body, headers={"X-API-Key": org_key})
    assert response.status_code == 400 and f"'{field}'" in response.get_json()["error"]


def test_rotate_to_another_role_keeps_the_org_external_id(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    assert connect(client, org_key, customer)["status"] == "active"
    moved = aws.create_customer(external_id=external_id, role_name="cost-export-reader-2")
    response = client.post(
        BASE + "/aws/rotate", json={"new_credentials": {"role_arn": moved["role_arn"]}}, headers={"X-API-Key": org_key}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["integration"]["status"] == "active"
    assert instructions(client, org_key)["external_id"] == external_id


def test_rotate_to_a_role_without_the_condition_is_rejected_and_keeps_the_old_one(client, org_key, aws):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    connect(client, org_key, customer)
    loose = aws.create_customer(external_id=None, role_name="loose-role")
    response = client.post(
        BASE + "/aws/rotate", json={"new_credentials": {"role_arn": loose["role_arn"]}}, headers={"X-API-Key": org_key}
    )
    assert response.status_code == 422 and "does not require the external ID" in response.get_json()["error"]


# --- no static AWS credential anywhere ------------------------------------------------------


def test_no_session_credential_reaches_logs_responses_or_the_store(client, org_key, aws, service, caplog):
    caplog.set_level(logging.DEBUG)
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    result = connect(client, org_key, customer)
    issued = list(aws.state.sessions)
    assert issued, "the stand-in handed out session credentials"
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    stored = json.dumps([i.to_info() for i in service.adapters.store.list_integrations("acme")], default=str)
    for access_key in issued:
        assert access_key not in logged and access_key not in json.dumps(result) and access_key not in stored


def test_no_aws_access_key_in_the_repository_or_the_settings_defaults():
    key_shape = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
    allowed = {REPO / "tests" / "test_aws.py"}  # the documentation example key above, to prove it is refused
    tracked = [
        path
        for pattern in ("*.py", "*.tf", "*.tftpl", "*.yml", "*.yaml", "*.md", "*.json", "*.txt", "*.toml", "Makefile")
        for path in REPO.rglob(pattern)
        if not any(part.startswith(".") for part in path.relative_to(REPO).parts) and path not in allowed
    ]
    assert tracked
    offenders = [str(path) for path in tracked if key_shape.search(path.read_text(errors="ignore"))]
    assert offenders == []
    defaults = Settings()
    assert not any(isinstance(value, str) and key_shape.search(value) for value in vars(defaults).values()), (
        "a settings default holds an AWS key"
    )


def test_revalidation_rechecks_aws_with_the_stored_external_id(client, org_key, aws, service, settings):
    from shared.domain.caller import Caller
    from shared.jobs.revalidation import revalidate_all

    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    assert connect(client, org_key, customer)["status"] == "active"
    # The customer drops the external-ID condition later: the next run catches it.
    aws.create_customer(external_id=None)
    service.adapters.settings = replace(settings, revalidation_min_interval_seconds=0)
    aws.reset()
    summary = revalidate_all(service, Caller(key_id="scheduler", org_slug="*", is_admin=True, request_id="run-1"))
    assert summary["checked"] == 1, summary
    integration = service.adapters.store.get_integration("acme", "aws")
    assert integration.status == "error" and "does not require the external ID" in integration.error_message
    # The platform's own credentials were reused from the instance cache: no new web-identity call.
    assert aws.state.calls["sts:AssumeRoleWithWebIdentity"] == 0
    assert_only_free_calls(aws)


def test_bulk_import_stores_the_role_with_the_org_external_id(client, org_key, aws, service):
    external_id = instructions(client, org_key)["external_id"]
    customer = aws.create_customer(external_id=external_id)
    item = {
        "provider": "aws",
        "credentials": {"role_arn": customer["role_arn"]},
        "config": {name: customer[name] for name in ("export_bucket", "export_prefix", "region")},
    }
    response = client.post(BASE + "/import", json={"items": [item], "validate": True}, headers={"X-API-Key": org_key})
    assert response.status_code == 200, response.get_json()
    (result,) = response.get_json()["results"]
    assert result["result"] == "created" and result["status"] == "active", result


def test_a_role_credential_without_external_id_is_an_error_not_a_crash(aws):
    from shared.app.wiring import Adapters
    from shared.common.config import Settings
    from shared.domain.providers import default_registry
    from shared.validators import validate_credential

    spec = default_registry().providers["aws"]
    context = Adapters(Settings.from_env(aws.env())).validation_context(spec)
    config = {"export_bucket": "acme-cost-exports", "export_prefix": "cur", "region": "us-east-1"}
    result = validate_credential(spec, "arn:aws:iam::222222222222:role/cost-export-reader", config, context)
    assert not result.ok and "rotate" in result.details["fix"]
