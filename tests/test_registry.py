"""The provider registry is schema-valid, and broken registries fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.errors import ConfigurationError
from shared.providers import REGISTRY_PATH, default_registry, load_registry


def test_registry_loads_every_provider():
    registry = default_registry()
    assert set(registry.providers) == {"gcp", "openai", "anthropic", "gemini", "azure", "aws"}
    assert registry.get("aws").category == "cloud" and registry.get("aws").credential_field == "role_arn"
    assert registry.get("gcp").display_name == "Google Cloud Platform"
    assert registry.get("openai").key_pattern.fullmatch("sk-proj-" + "a" * 24)


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
        (lambda d: d["providers"]["azure"]["credential"].update(field="api_key"), "must list credential.field"),
        (lambda d: d["providers"]["gcp"]["credential"].update(fields=["a_b", "c_d"]), "credential parser"),
    ],
)
def test_broken_registry_is_rejected(tmp_path, mutate, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        load_registry(_broken(tmp_path, mutate))
