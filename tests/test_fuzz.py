"""A bounded schemathesis run of openapi.yaml against a real server process.

The server (``python -m shared.local_server``) runs on loopback with its own
data dir, pointed at the provider simulator; the organization ``fuzz`` has
one integration per provider and a webhook, so most operations get past 404.
schemathesis (its own environment, ``.venv-fuzz``, made by ``make test``)
runs the examples, coverage and fuzzing phases with a fixed seed, in two
passes so deletions come last. The test fails on any 5xx, any status, content
type, header or body outside openapi.yaml, and any ERROR or traceback in the
server's log.

Reproduce by hand: ``.venv/bin/python -m pytest -q -s tests/test_fuzz.py``
(prints the number of cases and the time).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY
from tests.test_gcp_validation import service_account

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = ROOT / ".venv-fuzz" / "bin" / "schemathesis"
CONFIG = ROOT / "tests" / "fuzz" / "schemathesis.toml"
ORG = "fuzz"  # tests/fuzz/schemathesis.toml pins org_slug to it


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited:\n" + log.read_text()[-3000:]
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail("server did not become healthy:\n" + log.read_text()[-3000:])


def _seed(base: str, key: str, simulator) -> None:
    """One integration per provider and a webhook, so operations reach their logic."""
    headers = {"X-API-Key": key}
    setups = {
        "openai": {"credentials": {"api_key": OPENAI_KEY}},
        "anthropic": {"credentials": {"api_key": ANTHROPIC_KEY}},
        "gemini": {"credentials": {"api_key": GEMINI_KEY}},
        "gcp": {
            "credentials": {"service_account_json": service_account(simulator.token_uri)},
            "config": {"project_id": "integrations-test", "billing_dataset_id": "billing"},
        },
    }
    for provider, body in setups.items():
        created = requests.post(f"{base}/api/v1/integrations/{ORG}/{provider}/setup", json=body, headers=headers)
        assert created.status_code == 201, created.text
        requests.post(f"{base}/api/v1/integrations/{ORG}/{provider}/validate", headers=headers, timeout=30)
    webhook = requests.put(
        f"{base}/api/v1/organizations/{ORG}/webhook", json={"url": "https://hooks.example/fuzz"}, headers=headers
    )
    assert webhook.status_code == 200, webhook.text


def _schemathesis(base: str, key: str, *selection: str) -> tuple[int, str]:
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", str(ROOT / "openapi.yaml"), "--url", base]
    completed = subprocess.run(
        [*command, *selection],
        cwd=ROOT,
        env={**os.environ, "FUZZ_API_KEY": key, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


def _cases(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    assert found, output[-3000:]
    return int(found.group(1))


def test_fuzz_openapi_against_a_real_server(tmp_path, simulator, oauth_sim):
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS.relative_to(ROOT)} is missing: run `make .venv-fuzz/.installed` (make test does)")
    simulator.reset()
    simulator.configure(latency_ms=0, slow_seconds=0.5)
    oauth_sim.reset()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **simulator.env(),
        "PORT": str(port),
        "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "INFO",
        "PROVIDER_GCP_BASE_URL": "http://127.0.0.1:9",  # BigQuery calls fail fast: no emulator needed here
        # A deployment with AWS configured; its STS, S3 and ID-token calls fail fast on loopback.
        "AWS_PLATFORM_ROLE_ARN": "arn:aws:iam::111111111111:role/provider-integrations-platform",
        "PROVIDER_AWS_BASE_URL": "http://127.0.0.1:9",
        "AWS_ID_TOKEN_URL": "http://127.0.0.1:9/identity",
        "VALIDATION_MAX_ATTEMPTS": "1",
        "VALIDATION_DEADLINE_SECONDS": "3",
        "CORS_ALLOWED_ORIGINS": "https://app.example",
        # OAuth providers and their clients are the simulator's: start answers a URL (unconfigured it is
        # 503 by design) and a callback with a state schemathesis took from start reaches a token endpoint.
        **oauth_sim.env(),
    }
    env.pop("INTEGRATIONS_SECRET_API_KEY_PEPPER", None)
    log = tmp_path / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "shared.local_server"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    try:
        _wait_healthy(base, server, log)
        created = subprocess.run(
            [sys.executable, "-m", "shared.cli", "create-key", "--org", ORG],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = json.loads(created.stdout)["api_key"]
        _seed(base, key, simulator)
        outputs = [_schemathesis(base, key, "--exclude-method", "DELETE")]
        outputs.append(_schemathesis(base, key, "--include-method", "DELETE"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    elapsed = time.monotonic() - started
    for returncode, output in outputs:
        assert returncode == 0, output[-6000:]
    cases = sum(_cases(output) for _, output in outputs)
    print(f"\nfuzz: {cases} cases in {elapsed:.1f} s (server start, seeding and both passes)")
    problems = [
        line
        for line in log.read_text().splitlines()
        if '"severity": "ERROR"' in line or '"severity": "CRITICAL"' in line or "Traceback" in line
    ]
    assert not problems, "server log has errors:\n" + "\n".join(problems[:20])
    assert cases >= 1000, f"only {cases} cases ran"
