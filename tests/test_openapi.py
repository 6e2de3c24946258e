"""openapi.yaml is a valid document, covers every entry point, and is served locally."""

from __future__ import annotations

from openapi_spec_validator import validate

import main
from tests.openapi_contract import check_response, document


def test_document_is_valid_openapi():
    validate(document())


def test_every_entry_point_is_documented_once():
    operation_ids = [
        operation["operationId"]
        for item in document()["paths"].values()
        for key, operation in item.items()
        if key in ("get", "post", "put", "delete")
    ]
    public = [name for name, handler in main.ENTRY_POINTS.items() if not handler.route[1].startswith("/api/v1/admin/")]
    assert sorted(operation_ids) == sorted(public)


def test_served_at_openapi_json(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.get_json()["openapi"].startswith("3.1")


def test_responses_match_the_document(client, org_key):
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


def test_provider_parameter_and_config_schemas_are_the_registry():
    """openapi.yaml is as strict as the server: the providers it serves and each one's config fields."""
    from shared.providers import default_registry

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
