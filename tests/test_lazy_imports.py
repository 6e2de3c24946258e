"""Google client libraries load only where needed: local mode loads none,
list/get in gcp mode never load KMS (cold starts stay short)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import main
from shared.local_server import create_app
from shared.config import Settings
from shared.wiring import build_service
from shared import http
service = build_service(Settings.from_env())
http.use_service(service)
record, key = service.create_api_key("acme")
client = create_app().test_client()
for path in sys.argv[1:]:
    response = client.get(path, headers={"X-API-Key": key})
    assert response.status_code in (200, 404), response.get_json()
loaded = sorted(m for m in sys.modules if m.startswith(("google.cloud.", "google.auth", "grpc")))
print(json.dumps(loaded))
"""


def _loaded_modules(env: dict[str, str], *paths: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *paths], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_local_mode_loads_no_google_client(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "INTEGRATIONS_DATA_DIR": str(tmp_path)}
    loaded = _loaded_modules(env, "/api/v1/integrations/acme", "/api/v1/integrations/acme/openai")
    assert not [m for m in loaded if m.startswith(("google.cloud.bigquery", "google.cloud.kms", "google.cloud.secret"))]


@pytest.mark.parametrize("backend", ["gcp"])
def test_list_and_get_in_gcp_mode_do_not_load_kms(tmp_path, gcp_stack, settings):
    env = {"PATH": "/usr/bin:/bin", "INTEGRATIONS_DATA_DIR": str(tmp_path), **gcp_stack.env(settings)}
    loaded = _loaded_modules(env, "/api/v1/integrations/acme", "/api/v1/integrations/acme/openai")
    assert any(m.startswith("google.cloud.bigquery") for m in loaded)
    assert not any(m.startswith("google.cloud.kms") for m in loaded)


# Every function works on every provider, so "a non-Azure function" is any request about
# another provider: a cold start, setup/validate of OpenAI, list/get must not load msal.
AZURE_PROBE = """
import json, sys
import main
from shared.local_server import create_app
from shared.config import Settings
from shared.wiring import build_service
from shared import http
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
