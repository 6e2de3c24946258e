"""Client libraries load only where needed: local mode loads no Google client,
list/get in gcp mode load neither the BigQuery nor the KMS client library (nor
gRPC), setup/validate/rotate (KMS calls) load neither google-cloud-kms nor gRPC,
nothing but an AWS validation loads boto3, a deployed instance (pepper mounted
as an environment variable) never loads Secret Manager, and no
request loads jsonschema (the registry is schema-checked at build time).
Cold starts stay short."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
WATCHED = ("google.cloud.", "google.auth", "google.api_core", "grpc", "boto3", "botocore", "jsonschema",
           "requests", "urllib3", "shared.egress.http_client")
import main
from shared.commands.local_server import create_app
from shared.common.config import Settings
from shared.app.wiring import build_service
from shared.inbound import http
service = build_service(Settings.from_env())
http.use_service(service)
record, key = service.create_api_key("acme")
client = create_app().test_client()
for request in sys.argv[1:]:
    # "PATH" or "METHOD PATH [JSON BODY]"
    parts = request.split(" ", 2) if " " in request else ["GET", request]
    method, path, body = parts[0], parts[1], parts[2] if len(parts) > 2 else None
    response = client.open(path, method=method, json=json.loads(body) if body else None, headers={"X-API-Key": key})
    assert response.status_code in (200, 201, 404, 409, 503), response.get_json()
    print("LOADED", json.dumps(sorted(m for m in sys.modules if m.startswith(WATCHED))))  # so far
print("LOADED", json.dumps(sorted(m for m in sys.modules if m.startswith(WATCHED))))
"""


def _loaded_modules(env: dict[str, str], *paths: str) -> list[str]:
    return _loaded_after_each(env, *paths)[-1]


def _loaded_after_each(env: dict[str, str], *paths: str) -> list[list[str]]:
    """The watched modules loaded after each request (and once more at the end)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *paths], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line[len("LOADED ") :]) for line in result.stdout.splitlines() if line.startswith("LOADED ")]


def test_local_mode_loads_no_google_client(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "INTEGRATIONS_DATA_DIR": str(tmp_path)}
    loaded = _loaded_modules(env, "/api/v1/integrations/acme", "/api/v1/integrations/acme/openai")
    assert not [m for m in loaded if m.startswith(("google.cloud.bigquery", "google.cloud.kms", "google.cloud.secret"))]
    assert not [m for m in loaded if m.startswith("jsonschema")]


@pytest.mark.parametrize("backend", ["gcp"])
def test_list_and_get_in_gcp_mode_load_no_generated_google_client(tmp_path, gcp_stack, settings):
    """BigQuery is spoken over REST (shared/store/bigquery/jobs.py)."""
    env = {"PATH": "/usr/bin:/bin", "INTEGRATIONS_DATA_DIR": str(tmp_path), **gcp_stack.env(settings)}
    loaded = _loaded_modules(env, "/api/v1/integrations/acme", "/api/v1/integrations/acme/openai")
    assert "google.auth.exceptions" in loaded  # the probe sees Google modules when they load
    assert not any(m.startswith(("google.cloud.bigquery", "google.cloud.kms", "jsonschema")) for m in loaded)


@pytest.mark.parametrize("backend", ["gcp"])
def test_a_mounted_pepper_keeps_secret_manager_off_the_cold_start(tmp_path, gcp_stack, settings):
    """As deployed (Terraform mounts the secret as an env var; the token comes from the metadata
    server): no Secret Manager client or call, no gRPC, no google-auth credentials or crypto."""
    from shared.common.config import API_KEY_PEPPER_SECRET
    from shared.secret_sources import env_var_name
    from tests.fakes.metadata_server import FakeMetadataServer

    pepper = "mounted-pepper-" + tmp_path.name
    with FakeMetadataServer() as metadata:
        env = {
            "PATH": "/usr/bin:/bin",
            "INTEGRATIONS_DATA_DIR": str(tmp_path),
            **gcp_stack.env(settings),
            env_var_name(API_KEY_PEPPER_SECRET): pepper,
            "GCE_METADATA_HOST": metadata.host,
        }
        calls_before = dict(gcp_stack.secret_manager.calls)
        loaded = _loaded_modules(env, "/api/v1/integrations/acme", "/api/v1/integrations/acme/openai")
        assert metadata.fetches == 1  # one token for the instance's BigQuery jobs
    assert not any(
        m.startswith(("google.cloud.secretmanager", "google.cloud.bigquery", "google.cloud.kms", "grpc", "jsonschema"))
        for m in loaded
    )
    heavy_auth = ("google.auth.transport.requests", "google.oauth2", "google.auth.crypt", "google.auth.compute_engine")
    assert not [m for m in loaded if m.startswith(heavy_auth)]
    assert dict(gcp_stack.secret_manager.calls) == calls_before


@pytest.mark.parametrize("backend", ["gcp"])
def test_setup_validate_rotate_in_gcp_mode_load_no_kms_client_nor_grpc(tmp_path, gcp_stack, settings, simulator):
    """Cloud KMS is spoken over REST with the metadata server's token, as deployed: the generated
    client, gRPC and google-auth's credentials (and their crypto) stay off the request path."""
    from shared.common.config import API_KEY_PEPPER_SECRET
    from shared.secret_sources import env_var_name
    from tests.conftest import OPENAI_KEY, key_with
    from tests.fakes.metadata_server import FakeMetadataServer

    base = "/api/v1/integrations/acme"
    rotate = {"new_credentials": {"api_key": key_with("rotated")}}
    kms_calls_before = dict(gcp_stack.kms.calls)
    with FakeMetadataServer() as metadata:
        env = {
            "PATH": "/usr/bin:/bin",
            "INTEGRATIONS_DATA_DIR": str(tmp_path),
            **gcp_stack.env(settings),
            env_var_name(API_KEY_PEPPER_SECRET): "mounted-pepper-" + tmp_path.name,
            "PROVIDER_OPENAI_BASE_URL": simulator.base_url("openai"),
            "GCE_METADATA_HOST": metadata.host,
        }
        gcp_stack.kms.required_bearer = lambda: metadata.token  # KMS refuses any other token
        try:
            _, after_setup, after_validate, after_rotate, _ = _loaded_after_each(
                env,
                base,
                f"POST {base}/openai/setup " + json.dumps({"credentials": {"api_key": OPENAI_KEY}, "config": {}}),
                f"POST {base}/openai/validate",
                f"POST {base}/openai/rotate " + json.dumps(rotate),
            )
        finally:
            gcp_stack.kms.required_bearer = None

    kms_calls = {rpc: n - kms_calls_before.get(rpc, 0) for rpc, n in gcp_stack.kms.calls.items()}
    assert kms_calls.get("encrypt", 0) >= 2 and kms_calls.get("decrypt", 0) >= 1  # KMS was really used
    assert "google.auth.exceptions" in after_setup  # the probe sees what the adapters load
    heavy = (
        "google.cloud.kms",
        "grpc",
        "google.api_core",
        "google.auth.transport.requests",
        "google.oauth2",
        "requests",  # shared.egress.http_client carries the Google calls and the OpenAI check
        "urllib3",
    )
    assert "shared.egress.http_client" in after_setup
    for step in (after_setup, after_validate, after_rotate):
        assert not [m for m in step if m.startswith(heavy)], step


def test_no_function_but_an_aws_validation_loads_boto3(tmp_path):
    """Every entry point is imported (main.py) and the AWS setup instructions served: boto3 stays unloaded."""
    env = {
        "PATH": "/usr/bin:/bin",
        "INTEGRATIONS_DATA_DIR": str(tmp_path),
        "AWS_PLATFORM_ROLE_ARN": "arn:aws:iam::111111111111:role/provider-integrations-platform",
    }
    loaded = _loaded_modules(
        env,
        "/api/v1/integrations/acme",
        "/api/v1/integrations/acme/aws",
        "/api/v1/integrations/acme/aws/setup-instructions",
        "POST /api/v1/integrations/acme/openai/validate",
        "/api/v1/organizations/acme/alerts",
    )
    assert not [m for m in loaded if m.startswith(("boto3", "botocore"))]
    # The probe can see boto3 when it is loaded: an AWS validation does load it.
    nowhere = "http://127.0.0.1:9"  # refused at once: the check fails fast, after loading boto3
    env_with_aws = {**env, "PROVIDER_AWS_BASE_URL": nowhere, "AWS_ID_TOKEN_URL": nowhere + "/identity"}
    assert any(m.startswith("boto3") for m in _loaded_modules(env_with_aws, *AWS_VALIDATION))


AWS_VALIDATION = (
    "POST /api/v1/integrations/acme/aws/setup "
    + json.dumps(
        {
            "credentials": {"role_arn": "arn:aws:iam::222222222222:role/cost-export-reader"},
            "config": {"export_bucket": "acme-cost-exports", "export_prefix": "cur", "region": "us-east-1"},
        }
    ),
    "POST /api/v1/integrations/acme/aws/validate",
)


# Every function works on every provider, so "a non-Azure function" is any request about
# another provider: a cold start, setup/validate of OpenAI, list/get must not load msal.
AZURE_PROBE = """
import json, sys
import main
from shared.commands.local_server import create_app
from shared.common.config import Settings
from shared.app.wiring import build_service
from shared.inbound import http
service = build_service(Settings.from_env())
http.use_service(service)
record, key = service.create_api_key("acme")
client = create_app().test_client()
base = "/api/v1/integrations/acme"
headers = {"X-API-Key": key}
after_cold_start = "msal" in sys.modules
credentials = json.loads(sys.argv[1])
provider = sys.argv[2]
config = json.loads(sys.argv[3])
assert client.post(f"{base}/{provider}/setup", json={"credentials": credentials, "config": config},
                   headers=headers).status_code == 201
assert client.post(f"{base}/{provider}/validate", headers=headers).status_code == 200
assert client.get(base, headers=headers).status_code == 200
print(json.dumps({"cold_start": after_cold_start, "after_requests": "msal" in sys.modules}))
"""


def _msal_loaded(env: dict[str, str], provider: str, credentials: dict, config: dict) -> dict[str, bool]:
    args = [json.dumps(credentials), provider, json.dumps(config)]
    result = subprocess.run(
        [sys.executable, "-c", AZURE_PROBE, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_only_an_azure_credential_loads_msal(tmp_path, simulator):
    from tests.conftest import OPENAI_KEY

    env = {
        "PATH": "/usr/bin:/bin",
        "INTEGRATIONS_DATA_DIR": str(tmp_path / "openai"),
        "PROVIDER_OPENAI_BASE_URL": simulator.base_url("openai"),
        # Nothing listens there: the Azure control run fails fast, after msal has loaded.
        "AZURE_AUTHORITY_HOST": "https://127.0.0.1:9",
        "VALIDATION_MAX_ATTEMPTS": "1",
    }
    openai = _msal_loaded(env, "openai", {"api_key": OPENAI_KEY}, {})
    assert openai == {"cold_start": False, "after_requests": False}
    principal = {
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "client_id": "00000000-0000-0000-0000-000000000002",
        "client_secret": "abc8Q~" + "s" * 34,
    }
    env["INTEGRATIONS_DATA_DIR"] = str(tmp_path / "azure")
    azure = _msal_loaded(env, "azure", principal, {"scope": "/subscriptions/00000000-0000-0000-0000-000000000003"})
    assert azure == {"cold_start": False, "after_requests": True}  # the probe can see msal load


# Cloud Functions' way: load main.py for one target, then send it requests. Prints what loaded
# (our modules and the heavy third-party ones), how many API routes werkzeug compiled and which
# registry patterns were compiled, after the load and after the requests.
TARGET_PROBE = """
import gc, json, os, sys
import functions_framework
import werkzeug.routing

WATCHED = ("functions.", "shared.", "requests", "urllib3", "cryptography", "jsonschema", "yaml")

def snapshot():
    service = getattr(sys.modules.get("shared.inbound.http"), "_service", None)
    compiled = []
    for spec in service.registry.providers.values() if service is not None else ():
        compiled += [f"{spec.provider_id}.key"] if "key_pattern" in vars(spec) else []
        compiled += [f"{spec.provider_id}.{name}" for name, f in spec.config_fields.items() if "pattern" in vars(f)]
    routes = [o for o in gc.get_objects() if isinstance(o, werkzeug.routing.Rule) and o.rule.startswith("/api/")]
    return {
        "modules": sorted(m for m in sys.modules if m.startswith(WATCHED)),
        "api_routes": len(routes),
        "compiled_patterns": sorted(compiled),
    }

app = functions_framework.create_app(target=sys.argv[1], source="main.py")
loaded = snapshot()
client = app.test_client()
for method, path, body in json.loads(sys.argv[2]):
    response = client.open(path, method=method, json=body, headers={"X-API-Key": os.environ["PROBE_API_KEY"]})
    assert response.status_code in (200, 201), response.get_data(as_text=True)
print(json.dumps({"loaded": loaded, "answered": snapshot()}))
"""


def _cold_start(env: dict[str, str], target: str, *calls: tuple[str, str, dict | None]) -> dict[str, dict]:
    result = subprocess.run(
        [sys.executable, "-c", TARGET_PROBE, target, json.dumps(calls)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def local_instance(settings, simulator):
    """A local data dir with an org key and an OpenAI integration, and the env of a fresh instance on it."""
    from shared.domain.caller import Caller
    from shared.domain.providers import check_registry
    from tests.conftest import OPENAI_KEY, make_service

    # As a deploy's build step does (make test does too): instances then load the checked copy,
    # whose patterns were compiled by the check (a run of pytest alone must not depend on make).
    assert check_registry(write_copy=True) == []
    service = make_service(settings)
    _, api_key = service.create_api_key("acme")
    service.setup(Caller("setup", "acme", False, "r"), "openai", {"api_key": OPENAI_KEY}, None, None)
    return {
        "PATH": "/usr/bin:/bin",
        "LOG_LEVEL": "WARNING",
        "INTEGRATIONS_DATA_DIR": str(settings.data_dir),
        "PROVIDER_OPENAI_BASE_URL": simulator.base_url("openai"),
        "PROBE_API_KEY": api_key,
    }


def test_loading_main_imports_only_its_target_compiles_no_route_and_no_validator_store_or_client(local_instance):
    """An instance serves one entry point: main.py imports that one's module; the rest loads with a request."""
    loaded = _cold_start(local_instance, "integration_list")["loaded"]
    assert [m for m in loaded["modules"] if m.startswith("functions.")] == ["functions.list_integrations"]
    assert "shared.usecases.subscriptions" not in loaded["modules"]
    assert loaded["api_routes"] == 0
    assert not [m for m in loaded["modules"] if m.startswith(("requests", "urllib3", "cryptography", "jsonschema"))]
    assert not [m for m in loaded["modules"] if m.startswith(("shared.validators", "shared.store", "shared.crypto."))]
    assert not {"shared.common.config", "shared.app.wiring"} & set(loaded["modules"])


def test_a_local_list_or_get_loads_no_cipher_no_http_client_and_compiles_no_pattern(local_instance):
    for target, path in (("integration_list", "/api/v1/integrations/acme"), ("integration_get", API + "/openai")):
        answered = _cold_start(local_instance, target, ("GET", path, None))["answered"]
        assert answered["api_routes"] == 1, target  # its own route only
        assert answered["compiled_patterns"] == [], target
        modules = answered["modules"]
        assert not [m for m in modules if m.startswith(("requests", "urllib3", "cryptography", "yaml"))], target
        assert not [m for m in modules if m.startswith(("shared.validators", "shared.crypto."))], target


def test_a_local_api_key_setup_loads_the_keyring_but_no_validator_or_http_client(local_instance):
    setup = ("POST", API + "/anthropic/setup", {"credentials": {"api_key": ANTHROPIC_KEY}})
    answered = _cold_start(local_instance, "integration_setup", setup)["answered"]
    assert "shared.crypto.local_keyring" in answered["modules"]
    assert any(m.startswith("cryptography") for m in answered["modules"])
    assert not [m for m in answered["modules"] if m.startswith(("requests", "urllib3", "shared.validators"))]
    # Only the pattern the request was checked against.
    assert answered["compiled_patterns"] == ["anthropic.key"]


def test_a_local_validate_loads_the_http_check_and_its_client(local_instance):
    """A validation loads the declarative check and the standard-library client, not requests."""
    answered = _cold_start(local_instance, "integration_validate", ("POST", API + "/openai/validate", None))["answered"]
    assert {"shared.validators", "shared.validators.http_check", "shared.egress.http_client"} <= set(
        answered["modules"]
    )
    assert not [m for m in answered["modules"] if m.startswith(("requests", "urllib3"))]
    assert "shared.validators.aws_live" not in answered["modules"]


API = "/api/v1/integrations/acme"
ANTHROPIC_KEY = "sk-ant-admin01-ProbeKeyAbcdefghijklmnop0123456789"
