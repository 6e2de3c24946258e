"""Adding a provider with a standard "who am I" check is a registry change:
two SaaS providers (stripped-down variants of the registry's own) declared in
YAML only (one answers a bad token with 401, one with 200 and "ok": false, as
Slack does) validate through the same code."""

from __future__ import annotations

import threading

import pytest
import yaml
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.app.wiring import Adapters
from shared.domain.caller import Caller
from shared.domain.providers import REGISTRY_PATH, load_registry
from shared.usecases.integrations import IntegrationService

EXTRA_PROVIDERS = """
github_demo:
  display_name: GitHub
  category: saas
  saas_category: development
  connection: api_token
  credential_type: api_key
  required_fields: []
  pipelines: [saas/seats]
  credential:
    field: api_key
    pattern: '^ghp_[A-Za-z0-9]{36}$'
    example: ghp_000000000000000000000000000000000000
  base_url: https://api.github.com
  validation:
    kind: http
    headers: {Authorization: 'Bearer {secret}'}
    checks: {whoami: {method: GET, path: /user}}
    responses: {invalid_key: [{status: 401}], forbidden: [{status: 403}]}
    requirements:
      saas/seats: {description: Seat usage, requires: [whoami], fix: Create a token with read:org}
slack_demo:
  display_name: Slack
  category: saas
  saas_category: productivity
  connection: api_token
  credential_type: api_key
  required_fields: []
  pipelines: [saas/seats]
  credential: {field: api_key, pattern: '^xoxb-[A-Za-z0-9-]{10,200}$', example: xoxb-0000000000-abc}
  base_url: https://slack.com
  validation:
    kind: http
    headers: {Authorization: 'Bearer {secret}'}
    checks: {whoami: {method: POST, path: /api/auth.test}}
    responses:
      invalid_key: [{status: 200, body_contains: '"ok": false'}, {status: 401}]
      forbidden: [{status: 403}]
    requirements:
      saas/seats: {description: Seat usage, requires: [whoami], fix: Reinstall the app with users:read}
"""

GOOD_GITHUB = "ghp_" + "a" * 36
BAD_GITHUB = "ghp_" + "b" * 36
GOOD_SLACK = "xoxb-1234567890-good"
BAD_SLACK = "xoxb-1234567890-revoked"


def who_am_i(environ, start_response):
    request = Request(environ)
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if request.path == "/github/user":
        response = Response('{"login": "octo"}', 200) if token == GOOD_GITHUB else Response("{}", 401)
    elif request.path == "/slack/api/auth.test":
        response = Response('{"ok": true}' if token == GOOD_SLACK else '{"ok": false, "error": "invalid_auth"}', 200)
    else:
        response = Response("{}", 404)
    return response(environ, start_response)


@pytest.fixture
def extended_service(tmp_path, settings):
    document = yaml.safe_load(REGISTRY_PATH.read_text())
    document["providers"].update(yaml.safe_load(EXTRA_PROVIDERS))
    path = tmp_path / "providers.yml"
    path.write_text(yaml.safe_dump(document))
    server = make_server("127.0.0.1", 0, who_am_i, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    settings.provider_base_urls.update(github_demo=f"{base}/github", slack_demo=f"{base}/slack")
    try:
        yield IntegrationService(Adapters(settings), load_registry(path))
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("provider", "token", "status", "message"),
    [
        ("github_demo", GOOD_GITHUB, "active", None),
        ("github_demo", BAD_GITHUB, "error", "GitHub API key is invalid or expired"),
        ("slack_demo", GOOD_SLACK, "active", None),
        ("slack_demo", BAD_SLACK, "error", "Slack API key is invalid or expired"),
    ],
)
def test_yaml_only_provider_validates(extended_service, provider, token, status, message):
    caller = Caller(key_id="k", org_slug="acme", is_admin=False, request_id="r")
    extended_service.setup(caller, provider, {"api_key": token}, None, None)
    outcome = extended_service.validate(caller, provider)
    assert outcome.integration.status == status
    assert outcome.result.message == message
