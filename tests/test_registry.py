"""The provider registry is schema-valid, and broken registries fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.errors import ConfigurationError
from shared.providers import REGISTRY_PATH, default_registry, load_registry

# The spec's SaaS table: AI, Design, Productivity, Development, three tools each.
SPEC_SAAS_TOOLS = {
    "ai": {"ChatGPT Plus", "Claude Pro", "Cursor"},
    "design": {"Canva", "Figma", "Adobe Creative Cloud"},
    "productivity": {"Notion", "Slack", "Asana"},
    "development": {"GitHub", "Vercel", "Railway"},
}
# Tools with an admin/billing API a token can read (the list); the rest are toggles.
API_TOKEN_TOOLS = {"github", "slack", "cursor", "vercel", "figma", "notion", "asana"}


def test_registry_loads_every_provider():
    registry = default_registry()
    assert {"gcp", "openai", "anthropic", "gemini", "azure", "aws"} <= set(registry.providers)
    assert registry.get("aws").category == "cloud" and registry.get("aws").credential_field == "role_arn"
    assert registry.get("gcp").display_name == "Google Cloud Platform"
    assert registry.get("openai").key_pattern.fullmatch("sk-proj-" + "a" * 24)


def test_every_spec_saas_tool_is_in_its_category():
    saas = [spec for spec in default_registry().providers.values() if spec.category == "saas"]
    by_category: dict[str, set[str]] = {}
    for spec in saas:
        by_category.setdefault(spec.saas_category, set()).add(spec.display_name)
    for category, tools in SPEC_SAAS_TOOLS.items():
        assert tools <= by_category.get(category, set()), category
    assert {spec.provider_id for spec in saas if spec.connection == "api_token"} == API_TOKEN_TOOLS
    for spec in saas:
        assert spec.connectable == (spec.connection != "toggle")
        if spec.connection == "toggle":
            assert (spec.credential_type, spec.validation, spec.base_url, spec.requirements) == ("", {}, "", {})
        else:
            # Each API tool proves what its pipeline needs (seat or spend read), or the connection alone.
            assert spec.requirements and set(spec.requirements) <= {"saas/seats", "saas/spend", "connection"}
    others = [spec for spec in default_registry().providers.values() if spec.category != "saas"]
    assert all(spec.saas_category is None and spec.connectable for spec in others)


def test_every_example_key_matches_its_own_pattern():
    for spec in default_registry().providers.values():
        if spec.key_pattern is not None:
            document = yaml.safe_load(REGISTRY_PATH.read_text())
            example = document["providers"][spec.provider_id]["credential"]["example"]
            assert spec.key_pattern.fullmatch(example), spec.provider_id


def _broken(tmp_path: Path, mutate) -> Path:
    document = yaml.safe_load(REGISTRY_PATH.read_text())
    mutate(document)
    path = tmp_path / "providers.yml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["providers"]["openai"].pop("display_name"), "display_name"),
        (lambda d: d["providers"]["openai"].update(base_url="http://plain"), "base_url"),
        (lambda d: d["providers"]["openai"]["credential"].pop("pattern"), "pattern"),
        (lambda d: d["providers"]["openai"]["validation"]["key_hints"][0].update(order=["nope"]), "unknown check"),
        (lambda d: d["providers"]["gcp"]["validation"].update(module="nope"), "unknown validator"),
        (
            lambda d: d["providers"]["openai"]["validation"]["requirements"]["cost/usage_cost"].update(requires=["x"]),
            "unknown capability",
        ),
        (lambda d: d["providers"]["openai"].update(pipelines=["cost/other"]), "has no requirement"),
        (lambda d: d["providers"]["gcp"].update(required_fields=["nope"]), "not a config field"),
        (lambda d: d["providers"]["gcp"].update(credential_type="service_account_json"), "credential_type"),
        (lambda d: d["providers"]["openai"].update(key_prefix="xx-"), "key_prefix"),
        (lambda d: d["providers"]["gcp"]["validation"].update(headers={}), "validation"),
        (lambda d: d["providers"]["canva"].pop("oauth"), "oauth block goes with credential_type oauth"),
        (
            lambda d: d["providers"]["openai"].update(oauth=d["providers"]["canva"]["oauth"]),
            "oauth block goes with credential_type oauth",
        ),
        (lambda d: d["providers"]["canva"]["oauth"].update(pkce="plain"), "pkce"),
        (lambda d: d["providers"]["canva"]["oauth"].update(token_url="http://plain"), "token_url"),
        (lambda d: d["providers"]["canva"]["oauth"].update(client_secret="x"), "client_secret"),
        (lambda d: d["providers"]["canva"]["credential"].update(field="api_key"), "credential.field must be"),
        (lambda d: d["providers"]["azure"]["credential"].update(field="api_key"), "must list credential.field"),
        (lambda d: d["providers"]["gcp"]["credential"].update(fields=["a_b", "c_d"]), "credential parser"),
        # SaaS catalog rules
        (lambda d: d["providers"]["canva"].pop("saas_category"), "saas_category"),
        (lambda d: d["providers"]["canva"].update(saas_category="games"), "saas_category"),
        (lambda d: d["providers"]["openai"].update(saas_category="ai"), "saas_category"),
        (lambda d: d["providers"]["canva"].pop("connection"), "connection"),
        (lambda d: d["providers"]["canva"].update(credential={"field": "api_key"}), "credential"),
        (lambda d: d["providers"]["slack"].pop("validation"), "validation"),
        (lambda d: d["providers"]["slack"].update(connection="toggle"), "validation. should not be valid"),
        (
            lambda d: d["providers"]["cursor"]["validation"]["headers"].update(Authorization="Basic {secret_b64}"),
            "unknown placeholder",
        ),
        (
            lambda d: d["providers"]["vercel"]["validation"]["checks"]["read_user"].update(query={"t": "{secret}"}),
            "may not carry the secret",
        ),
        (lambda d: d["providers"]["github"].update(required_fields=[]), "to be required"),
        (
            lambda d: d["providers"]["asana"]["validation"]["checks"]["read_me"].update(path="/u/{config.nope}"),
            "unknown config field",
        ),
        (
            lambda d: d["providers"]["slack"]["validation"]["responses"].update(success=[{"status": 200, "json": {}}]),
            "success",
        ),
    ],
)
def test_broken_registry_is_rejected(tmp_path, mutate, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        load_registry(_broken(tmp_path, mutate))


def test_oauth_providers_declare_their_flow_and_no_client_secret():
    registry = default_registry()
    canva, github = registry.get("canva"), registry.get("github_app")
    assert canva.credential_type == github.credential_type == "oauth"
    assert canva.credential_field == github.credential_field == "oauth_token"
    assert canva.oauth.pkce and not canva.oauth.rotating_refresh_tokens and canva.oauth.token_lifetime_seconds == 14400
    assert github.oauth.pkce and github.oauth.rotating_refresh_tokens and github.oauth.token_lifetime_seconds == 28800
    text = REGISTRY_PATH.read_text()
    assert "client_secret:" not in text and "client_id:" not in text
