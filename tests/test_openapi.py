"""openapi.yaml is a valid document, covers every entry point, and is served locally."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

import main
from tests.openapi_contract import check_response, document


def test_document_is_valid_openapi():
    validate(document())


METHODS = ("get", "post", "put", "delete", "patch")


def documented_routes() -> dict[tuple[str, str], str]:
    """(METHOD, path template) -> operationId, for every operation of openapi.yaml."""
    return {
        (method.upper(), path): operation["operationId"]
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_entry_point_is_documented_once_at_its_route():
    documented = documented_routes()
    local_only = {
        operation["operationId"]
        for item in document()["paths"].values()
        if item.get("x-local-server-only")
        for method, operation in item.items()
        if method in METHODS
    }
    assert sorted(documented.values()) == sorted([*main.ENTRY_POINTS, *local_only])
    for name, handler in main.ENTRY_POINTS.items():
        method, rule = handler.route
        path = re.sub(r"<(\w+)>", r"{\1}", rule)
        assert documented.get((method, path)) == name, f"{name} is served at {method} {path}"


def test_every_path_the_local_server_serves_is_documented():
    """The local server's own routes (health, the document itself) are in the document too."""
    from shared.commands.local_server import create_app

    documented = documented_routes()
    app = create_app()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("dispatch", "static"):
            continue  # the catch-all that hands requests to ENTRY_POINTS (checked above)
        if rule.endpoint.startswith("console_"):
            continue  # the settings console's HTML and assets: pages, not API (tests/test_console_serving.py)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (method, rule.rule) in documented, f"{method} {rule.rule} is served but not in openapi.yaml"


def test_integration_fields_are_all_documented():
    """IntegrationInfo lists every field the API returns (it admits no others)."""
    schema = document()["components"]["schemas"]["IntegrationInfo"]
    assert schema["additionalProperties"] is False
    for name in ("consecutive_failures", "last_checked_at", "last_success_at", "expires_at"):
        assert name in schema["properties"]


def test_served_at_openapi_json(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.get_json()["openapi"].startswith("3.1")


def test_responses_match_the_document(client, org_key, service):
    def do(method, path, body=None):
        response = client.open(path, method=method, json=body, headers={"X-API-Key": org_key})
        check_response(method, path, response.status_code, response.get_json())
        return response

    base = "/api/v1/integrations/acme"
    do("POST", base + "/openai/setup", {"credentials": {"api_key": "sk-proj-" + "a" * 30}, "config": {}})
    do("POST", base + "/openai/setup", {"credentials": {"api_key": "sk-proj-" + "a" * 30}})  # 409
    do("POST", base + "/anthropic/setup", {"credentials": {"api_key": "nope"}})  # 400
    do("POST", base + "/openai/validate")
    do("GET", base)
    do("GET", base + "/openai")
    do("GET", base + "/gemini")  # 404
    do("PUT", base + "/openai", {"enabled": False})
    do("PUT", base + "/openai", {"enabled": True, "expires_at": "2030-01-01T00:00:00Z"})
    do("POST", base + "/openai/rotate", {"new_credentials": {"api_key": "sk-proj-bad-" + "b" * 30}})  # 422
    do("POST", base + "/openai/rotate", {"new_credentials": {"api_key": "sk-proj-" + "b" * 30}})
    do("POST", base + "/openai/rotate", {"new_credentials": {"api_key": "sk-proj-" + "c" * 30}, "expires_at": None})
    do("DELETE", base + "/openai")
    items = [
        {"provider": "openai", "credentials": {"api_key": "sk-proj-" + "c" * 30}},
        {"provider": "openai", "credentials": {"api_key": "sk-proj-" + "d" * 30}},
        {"provider": "anthropic", "credentials": {"api_key": "nope"}},
        {"provider": "nosuch", "credentials": {"api_key": "x"}},
    ]
    do("POST", base + "/import", {"items": items, "validate": True})
    do("POST", base + "/import", {"items": items, "dry_run": True})
    do("POST", base + "/import", {"items": []})  # 400
    do("GET", "/api/v1/integrations/globex")  # 403
    # SaaS: an API-token tool with its config, a toggle-only tool (400), the subscription toggles
    do("POST", base + "/github/setup", {"credentials": {"api_key": "ghp_" + "a" * 36}, "config": {"organization": "x"}})
    do("POST", base + "/canva/setup", {"credentials": {"api_key": "x" * 30}})  # 400
    subscriptions = "/api/v1/subscriptions/acme/providers"
    do("PUT", subscriptions + "/github", {"enabled": True})
    do("PUT", subscriptions + "/github", {"enabled": "yes"})  # 400
    do("PUT", subscriptions + "/openai", {"enabled": True})  # 404
    do("GET", subscriptions)
    do("GET", "/api/v1/subscriptions/globex/providers")  # 403
    do("POST", "/api/v1/admin/revalidate")  # 403: an org key on the admin route
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    revalidated = client.post("/api/v1/admin/revalidate", json={}, headers={"X-API-Key": admin_key})
    check_response("POST", "/api/v1/admin/revalidate", revalidated.status_code, revalidated.get_json())
    assert revalidated.status_code == 200
    for method, path in (("GET", "/api/v1/admin/keys"), ("POST", "/api/v1/admin/keys/rewrap")):
        answer = client.open(
            path, method=method, json={} if method == "POST" else None, headers={"X-API-Key": admin_key}
        )
        check_response(method, path, answer.status_code, answer.get_json())
        assert answer.status_code == 200, answer.get_json()
    health = client.get("/healthz")
    check_response("GET", "/healthz", health.status_code, health.get_json())


def test_provider_parameter_and_config_schemas_are_the_registry():
    """openapi.yaml is as strict as the server: the providers it serves and each one's config fields."""
    from shared.domain.providers import default_registry

    registry = default_registry()
    components = document()["components"]
    assert components["parameters"]["Provider"]["schema"]["enum"] == sorted(registry.providers)
    # Toggle-only SaaS tools are providers (the subscriptions path takes them) but take no setup, so no config.
    connectable = {provider_id: spec for provider_id, spec in registry.providers.items() if spec.connectable}
    referenced = [ref["$ref"].rsplit("/", 1)[1] for ref in components["schemas"]["ProviderConfig"]["anyOf"]]
    assert referenced == [f"{provider.capitalize()}Config" for provider in sorted(connectable)]
    for provider_id, spec in connectable.items():
        schema = components["schemas"][f"{provider_id.capitalize()}Config"]
        assert schema["additionalProperties"] is False
        documented = {name: field["pattern"] for name, field in schema["properties"].items()}
        assert documented == {name: field.pattern.pattern for name, field in spec.config_fields.items()}, provider_id


def test_request_schemas_refuse_what_the_server_refuses():
    import jsonschema

    schemas = document()["components"]["schemas"]

    def valid(name, value):
        validator = jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **document()})
        return validator.is_valid(value)

    assert not valid("WebhookRequest", {"url": ""})
    assert not valid("WebhookRequest", {"url": "http://hooks.example/x"})
    assert not valid("WebhookRequest", {"url": "https://user@hooks.example/x"})
    assert valid("WebhookRequest", {"url": "https://hooks.example/x"})
    assert not valid("SetupRequest", {"credentials": {}})
    assert not valid("SetupRequest", {"credentials": {"api_key": "k"}, "config": {"unknown": "x"}})
    assert not valid("SetupRequest", {"credentials": {"api_key": "k"}, "expires_at": "9999-12-31T23:59:59Z"})
    assert valid("SetupRequest", {"credentials": {"api_key": "k"}, "expires_at": "2027-01-31T00:00:00Z"})
    assert "ExpiryInput" in schemas
