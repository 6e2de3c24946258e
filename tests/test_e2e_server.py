"""End to end: the README's run command as a real server process, driven over HTTP.

Starts ``make run`` (the newcomer's command) on a free port with a temp data
directory and the provider simulator, walks a full lifecycle, restarts the
process to prove state survives, and greps every response, the server's logs
and every file of the data directory for the secrets used.
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

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, key_with
from tests.openapi_contract import check_response
from tests.simulators.provider_apis.openai import mask_openai_key

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["make", "-s", "run"], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer in 60 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


@pytest.fixture
def server_env(tmp_path, simulator, settings, backend, request):
    simulator.reset()
    gcp_env = request.getfixturevalue("gcp_stack").env(settings) if backend == "gcp" else {}
    env = {
        **os.environ,
        "PORT": str(_free_port()),
        "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"),
        "VALIDATION_RETRY_AFTER_CAP_SECONDS": "0.2",
        "REVALIDATION_MIN_INTERVAL_MINUTES": "0",
        **{k: v for k, v in simulator.env().items() if k.startswith("PROVIDER_")},
        **gcp_env,
    }
    env.pop("INTEGRATIONS_SECRET_API_KEY_PEPPER", None)
    return env


def _create_key(env: dict[str, str], *arguments: str) -> str:
    """An API key from the admin CLI, as an operator would create it."""
    created = subprocess.run(
        [sys.executable, "-m", "shared.cli", "create-key", *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(created.stdout)["api_key"]


def _stored_bytes(backend, settings, gcp_stack_or_none, data_dir: Path) -> dict[str, bytes]:
    """Everything the service stored: the data dir's files, or every BigQuery table's rows."""
    if backend == "local":
        return {str(path): path.read_bytes() for path in data_dir.rglob("*") if path.is_file()}
    client = gcp_stack_or_none.bigquery.client()
    stored = {}
    for table in client.list_tables(f"{settings.gcp_project}.{settings.bigquery_dataset}"):
        rows = client.query_and_wait(f"SELECT * FROM `{table.project}.{table.dataset_id}.{table.table_id}`")
        stored[table.table_id] = repr([dict(row.items()) for row in rows]).encode()
    return stored


def test_lifecycle_over_http_survives_restart_and_leaks_nothing(tmp_path, server_env, backend, settings, request):
    server = RunningServer(server_env, tmp_path / "server.log")
    server.start()
    transcript: list[str] = []
    try:
        api_key = _create_key(server_env, "--org", "acme")
        base = server.url + "/api/v1/integrations/acme"

        def do(method: str, path: str, body: dict | None = None, expected: int = 200) -> dict:
            response = requests.request(method, base + path, json=body, headers={"X-API-Key": api_key}, timeout=30)
            transcript.append(response.text)
            assert response.status_code == expected, response.text
            check_response(method, "/api/v1/integrations/acme" + path, response.status_code, response.json())
            return response.json()

        rejected_key = key_with("bad")
        rotated_key = key_with("rotated")
        do("POST", "/openai/setup", {"credentials": {"api_key": OPENAI_KEY}}, expected=201)
        assert do("POST", "/openai/validate")["status"] == "active"
        do("POST", "/anthropic/setup", {"credentials": {"api_key": key_with("bad", ANTHROPIC_KEY)}}, expected=201)
        assert do("POST", "/anthropic/validate")["error"] == "Anthropic API key is invalid or expired"
        do("POST", "/openai/rotate", {"new_credentials": {"api_key": rejected_key}}, expected=422)
        assert do("POST", "/openai/rotate", {"new_credentials": {"api_key": rotated_key}})["integration"]["status"] == (
            "active"
        )
        assert do("PUT", "/openai", {"enabled": False})["integration"]["status"] == "disabled"
        assert do("PUT", "/openai", {"enabled": True})["integration"]["status"] == "pending"
        assert do("POST", "/openai/validate")["status"] == "active"
        do("DELETE", "/anthropic")
        listed = do("GET", "")
        assert [item["provider"] for item in listed["integrations"]] == ["openai"]

        server.stop()
        server.start()
        after_restart = do("GET", "/openai")
        assert after_restart["integration"]["status"] == "active"
        assert do("POST", "/openai/validate")["status"] == "active"  # keyring and pepper survived too

        # What Cloud Scheduler triggers, over HTTP with an admin key (REVALIDATION_MIN_INTERVAL_MINUTES=0).
        admin_key = _create_key(server_env, "--org", "ops", "--admin")
        response = requests.post(
            server.url + "/api/v1/admin/revalidate", headers={"X-API-Key": admin_key}, json={}, timeout=60
        )
        transcript.append(response.text)
        assert response.status_code == 200, response.text
        summary = response.json()["summary"]
        assert summary["checked"] == 1 and summary["active"] == 1 and summary["more"] is False
        refused = requests.post(server.url + "/api/v1/admin/revalidate", headers={"X-API-Key": api_key}, timeout=10)
        assert refused.status_code == 403
        # A request line werkzeug itself rejects: its complaint must come out as JSON too.
        with socket.create_connection(("127.0.0.1", int(server_env["PORT"])), timeout=10) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert raw.recv(1024)  # werkzeug answers 400 (HTTP/0.9 style: the line named no version)
    finally:
        server.stop()

    # One log format: every line the service wrote (service and access log alike) is a JSON record,
    # and the access log carries the request id the response did. ("make[1]: ..." is make reporting the stop.)
    # make run builds the settings console first when its sources changed (npm's and the build's own lines,
    # not the service's), so the service's lines start at its first record.
    lines = server.log_path.read_text().splitlines()
    lines = lines[next(index for index, line in enumerate(lines) if line.startswith("{")) :]
    records = [json.loads(line) for line in lines if line.strip() and not re.match(r"make(\[\d+\])?: ", line)]
    assert all({"time", "severity", "message"} <= set(record) for record in records)
    access = [record for record in records if record["logger"] == "integrations.access"]
    refused_line = [r for r in access if r.get("request_id") == refused.headers["X-Request-Id"]]
    assert [r["httpRequest"]["status"] for r in refused_line] == [403]
    assert refused_line[0]["httpRequest"]["requestUrl"] == "/api/v1/admin/revalidate"
    assert any(record["logger"] == "integrations.server" for record in records)  # the garbage request line

    secrets_used = [OPENAI_KEY, rotated_key, rejected_key, key_with("bad", ANTHROPIC_KEY), api_key, admin_key]
    needles = [s.encode() for s in secrets_used] + [s[8:-4].encode() for s in secrets_used]
    needles.append(mask_openai_key(rejected_key).encode())  # what the provider's error body echoes
    haystacks = {"responses": "\n".join(transcript).encode(), "server log": server.log_path.read_bytes()}
    stack = request.getfixturevalue("gcp_stack") if backend == "gcp" else None
    stored = _stored_bytes(backend, settings, stack, Path(server_env["INTEGRATIONS_DATA_DIR"]))
    assert any("org_credentials" in name or "sqlite3" in name for name in stored)
    haystacks.update(stored)
    for name, haystack in haystacks.items():
        for needle in needles:
            assert needle not in haystack, f"secret material found in {name}"
