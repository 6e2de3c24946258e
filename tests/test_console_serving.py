"""The local server serves the settings console at ``/`` and on the spec's page paths.

The console itself (clients/typescript) is built by npm and driven in a real
browser by its own tests; here a stand-in build directory shows what the
server answers: the HTML shell with its security headers on every page path,
the assets, a clear page when nothing is built, and the API untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.commands.local_server import create_app
from shared.inbound import http

SHELL = b"<!doctype html><title>console</title><script type=module src=/assets/console.js></script>"


@pytest.fixture
def console_dir(tmp_path: Path) -> Path:
    built = tmp_path / "console"
    built.mkdir()
    (built / "index.html").write_bytes(SHELL)
    (built / "console.js").write_text("export {};\n")
    (built / "console.css").write_text("body{}\n")
    return built


@pytest.fixture
def served(service):
    """The API answers with the test's service (as conftest's ``client`` does)."""
    http.use_service(service)
    yield service
    http.use_service(None)


def _client(console_dir: Path):
    return create_app(console_dir=console_dir).test_client()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/acme/settings/integrations",
        "/acme/settings/integrations/cloud",
        "/acme/settings/integrations/llm",
        "/acme/settings/integrations/subscriptions",
        # Typed or pasted with a trailing slash: the console's own router takes it, so the server serves it.
        "/acme/settings/integrations/",
        "/acme/settings/integrations/llm/",
    ],
)
def test_every_spec_page_answers_the_shell_with_its_security_headers(console_dir, served, path):
    response = _client(console_dir).get(path)
    assert response.status_code == 200 and response.data == SHELL
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_assets_are_served_and_nothing_outside_the_build(console_dir, served):
    client = _client(console_dir)
    script = client.get("/assets/console.js")
    assert script.status_code == 200 and script.mimetype in ("text/javascript", "application/javascript")
    assert client.get("/assets/console.css").mimetype == "text/css"
    assert client.get("/assets/missing.js").get_json()["code"] == "not_found"
    (console_dir.parent / "secret.txt").write_text("outside")
    assert client.get("/assets/..%2Fsecret.txt").status_code == 404


def test_other_paths_and_methods_stay_the_api(console_dir, served, org_key):
    client = _client(console_dir)
    assert client.get("/acme/settings/integrations/billing").get_json()["code"] == "not_found"
    assert client.post("/").get_json()["success"] is False
    listed = client.get("/api/v1/integrations/acme", headers={"X-API-Key": org_key})
    assert listed.status_code == 200 and listed.get_json()["integrations"] == []


def test_an_unbuilt_console_says_how_to_build_it(tmp_path, served):
    response = _client(tmp_path / "nothing-here").get("/acme/settings/integrations")
    assert response.status_code == 503 and b"make console" in response.data
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
