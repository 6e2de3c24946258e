"""The provider registry is schema-valid, and broken registries fail loudly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.domain.errors import ConfigurationError
from shared.domain.providers import (
    REGISTRY_PATH,
    ProviderSpec,
    check_registry,
    checked_copy_path,
    default_registry,
    load_registry,
)
from shared.domain.providers import main as providers_main

REPO = Path(__file__).resolve().parent.parent

# The spec's SaaS table: AI, Design, Productivity, Development, three tools each.
SPEC_SAAS_TOOLS = {
    "ai": {"ChatGPT Plus", "Claude Pro", "Cursor"},
    "design": {"Canva", "Figma", "Adobe Creative Cloud"},
    "productivity": {"Notion", "Slack", "Asana"},
    "development": {"GitHub", "Vercel", "Railway"},
}
# Tools with an admin/billing API a token can read (docs/providers.md, SaaS tools); the rest are toggles.
API_TOKEN_TOOLS = {"github", "slack", "cursor", "vercel", "figma", "notion", "asana"}


def pattern(spec: ProviderSpec) -> re.Pattern[str]:
    """The spec's key pattern (the tests' providers all have one)."""
    assert spec.key_pattern is not None
    return spec.key_pattern


def test_registry_loads_every_provider():
    registry = default_registry()
    assert {"gcp", "openai", "anthropic", "gemini", "azure", "aws"} <= set(registry.providers)
    assert registry.providers["aws"].category == "cloud" and registry.providers["aws"].credential_field == "role_arn"
    assert registry.providers["gcp"].display_name == "Google Cloud Platform"
    assert pattern(registry.providers["openai"]).fullmatch("sk-proj-" + "a" * 24)


def test_every_spec_saas_tool_is_in_its_category():
    saas = [spec for spec in default_registry().providers.values() if spec.category == "saas"]
    by_category: dict[str, set[str]] = {}
    for spec in saas:
        by_category.setdefault(spec.saas_category or "", set()).add(spec.display_name)
    for category, tools in SPEC_SAAS_TOOLS.items():
        assert tools <= by_category.get(category, set()), category
    assert {spec.provider_id for spec in saas if spec.connection == "api_token"} == API_TOKEN_TOOLS
    for spec in saas:
        assert spec.connectable == (spec.connection != "toggle")
        if spec.connection == "toggle":
            assert (spec.credential_type, spec.validation, spec.base_url, spec.requirements) == ("", {}, "", {})
        else:
            # Each API tool proves what its pipeline needs (seat or spend read, the OAuth account), or the connection.
            assert spec.requirements and set(spec.requirements) <= {
                "saas/seats",
                "saas/spend",
                "saas/usage",
                "connection",
            }
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
    path = _broken(tmp_path, mutate)
    with pytest.raises(ConfigurationError, match=fragment):
        load_registry(path, check_schema=True)
    assert any(re.search(fragment, problem) for problem in check_registry(path))


def test_the_shipped_registry_passes_the_build_time_check(capsys):
    assert check_registry() == []
    assert providers_main(["--check"]) == 0
    assert f"OK ({len(default_registry().providers)} providers" in capsys.readouterr().out


def test_the_build_time_check_fails_on_a_broken_registry(tmp_path, capsys):
    path = _broken(tmp_path, lambda d: d["providers"]["openai"].update(base_url="http://plain"))
    assert providers_main(["--check", str(path)]) == 1
    assert "base_url" in capsys.readouterr().err


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["providers"]["openai"].pop("display_name"),
        lambda d: d["providers"]["openai"]["credential"].update(pattern="(unclosed"),
        lambda d: d["providers"]["openai"].update(validation="http"),
        lambda d: d.update(providers=[]),
    ],
)
def test_run_time_load_without_the_schema_still_refuses_a_malformed_registry(tmp_path, mutate):
    """Run time skips the JSON Schema (the build checked the shipped file); a broken shape still fails cleanly."""
    with pytest.raises(ConfigurationError, match=r"provider registry .* (is malformed|is invalid)"):
        load_registry(_broken(tmp_path, mutate))


def _copy_registry(tmp_path: Path) -> Path:
    path = tmp_path / "providers.yml"
    path.write_bytes(REGISTRY_PATH.read_bytes())
    return path


def test_a_checked_registry_loads_without_yaml_or_jsonschema(tmp_path):
    """The build-time check leaves the parsed registry beside the file; a cold start reads that."""
    path = _copy_registry(tmp_path)
    assert providers_main(["--check", str(path)]) == 0
    assert checked_copy_path(path).exists()
    probe = (
        "import sys; from pathlib import Path; from shared.domain.providers import load_registry; "
        f"registry = load_registry(Path({str(path)!r})); "
        "print(sorted(registry.providers), 'yaml' in sys.modules, 'jsonschema' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split("]")[1].split() == ["False", "False"]
    assert load_registry(path) == load_registry(path, check_schema=True)  # the copy is the YAML, nothing else


def test_patterns_compile_on_first_use_from_the_checked_copy_and_at_load_otherwise(tmp_path):
    """The schema check compiled the checked copy's patterns, so a cold start compiles only those it uses;
    a registry without a matching copy compiles all of them at load (a broken one fails there)."""
    path = _copy_registry(tmp_path)
    from_yaml = load_registry(path)
    assert all("key_pattern" in vars(spec) for spec in from_yaml.providers.values())
    assert all("pattern" in vars(f) for spec in from_yaml.providers.values() for f in spec.config_fields.values())
    assert providers_main(["--check", str(path)]) == 0
    openai = load_registry(path).providers["openai"]
    assert "key_pattern" not in vars(openai)
    assert not [name for name, f in openai.config_fields.items() if "pattern" in vars(f)]
    assert pattern(openai).fullmatch("sk-proj-" + "a" * 24)
    assert "key_pattern" in vars(openai)


def test_a_stale_checked_copy_is_ignored(tmp_path):
    path = _copy_registry(tmp_path)
    assert providers_main(["--check", str(path)]) == 0
    path.write_text(path.read_text().replace("display_name: OpenAI", "display_name: OpenAI Platform"))
    assert load_registry(path).providers["openai"].display_name == "OpenAI Platform"


def test_a_failing_check_writes_no_copy(tmp_path):
    path = _broken(tmp_path, lambda d: d["providers"]["openai"].update(base_url="http://plain"))
    assert providers_main(["--check", str(path)]) == 1
    assert not checked_copy_path(path).exists()


def test_oauth_providers_declare_their_flow_and_no_client_secret():
    registry = default_registry()
    canva, github = registry.providers["canva"], registry.providers["github_app"]
    assert canva.credential_type == github.credential_type == "oauth"
    assert canva.credential_field == github.credential_field == "oauth_token"
    assert canva.oauth is not None and github.oauth is not None
    assert canva.oauth.pkce and not canva.oauth.rotating_refresh_tokens and canva.oauth.token_lifetime_seconds == 14400
    assert github.oauth.pkce and github.oauth.rotating_refresh_tokens and github.oauth.token_lifetime_seconds == 28800
    text = REGISTRY_PATH.read_text()
    assert "client_secret:" not in text and "client_id:" not in text
