"""Loads and checks the provider registry, ``configs/providers.yml``.

The JSON Schema (``configs/providers.schema.json``) checks shapes; the
cross-field rules below check what a schema cannot (every key kind names a
declared check, every pipeline needs a capability some check provides).
A broken registry fails at start-up with ``ConfigurationError``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from shared.errors import ConfigurationError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
REGISTRY_PATH = CONFIG_DIR / "providers.yml"
SCHEMA_PATH = CONFIG_DIR / "providers.schema.json"

# Capabilities that code validators report (declarative ones are their check names).
CODE_VALIDATOR_CAPABILITIES = {
    "gcp_service_account": {"list_datasets", "read_billing_export", "run_queries"},
    "aws_role": {"assume_role", "caller_identity", "external_id_required", "list_export", "read_cost_export"},
}


@dataclass(frozen=True)
class ConfigField:
    name: str
    pattern: re.Pattern[str]
    required: bool
    description: str


@dataclass(frozen=True)
class ProviderSpec:
    provider_id: str
    display_name: str
    category: str
    credential_type: str
    credential_field: str
    key_pattern: re.Pattern[str] | None
    config_fields: dict[str, ConfigField]
    base_url: str
    validation: dict[str, Any]
    pipelines: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Registry:
    providers: dict[str, ProviderSpec]

    def get(self, provider_id: str) -> ProviderSpec | None:
        return self.providers.get(provider_id)


def _check_cross_fields(document: dict[str, Any]) -> list[str]:
    problems = []
    for provider_id, entry in document["providers"].items():
        validation = entry["validation"]
        if entry["credential"]["field"] != entry["credential"]["type"]:
            problems.append(f"{provider_id}: credential.field must equal credential.type")
        if validation["kind"] == "http":
            capabilities = set(validation["checks"])
            for kind in validation["key_kinds"]:
                for check in kind["checks"]:
                    if check not in capabilities:
                        problems.append(f"{provider_id}: key kind {kind['name']} names unknown check {check}")
            if entry["credential"]["type"] != "api_key":
                problems.append(f"{provider_id}: declarative validation needs an api_key credential")
        else:
            module = validation["module"]
            if module not in CODE_VALIDATOR_CAPABILITIES:
                problems.append(f"{provider_id}: unknown validator module {module}")
            capabilities = CODE_VALIDATOR_CAPABILITIES.get(module, set())
        for pipeline_id, pipeline in entry["pipelines"].items():
            if pipeline["requires"] not in capabilities:
                problems.append(
                    f"{provider_id}: pipeline {pipeline_id} requires unknown capability {pipeline['requires']}"
                )
    return problems


def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    import jsonschema

    try:
        document = yaml.safe_load(path.read_text())
        schema = json.loads(SCHEMA_PATH.read_text())
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigurationError(f"cannot read provider registry {path}: {exc}") from exc
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    problems = [f"{'/'.join(map(str, error.path)) or '<root>'}: {error.message}" for error in errors]
    if not problems:
        problems = _check_cross_fields(document)
    if problems:
        raise ConfigurationError(f"provider registry {path} is invalid: " + "; ".join(problems))

    providers = {}
    for provider_id, entry in document["providers"].items():
        credential = entry["credential"]
        providers[provider_id] = ProviderSpec(
            provider_id=provider_id,
            display_name=entry["display_name"],
            category=entry["category"],
            credential_type=credential["type"],
            credential_field=credential["field"],
            key_pattern=re.compile(credential["pattern"]) if "pattern" in credential else None,
            config_fields={
                name: ConfigField(
                    name=name,
                    pattern=re.compile(spec["pattern"]),
                    required=bool(spec.get("required", False)),
                    description=spec["description"],
                )
                for name, spec in entry.get("config_fields", {}).items()
            },
            base_url=entry["base_url"].rstrip("/"),
            validation=entry["validation"],
            pipelines=entry["pipelines"],
        )
    return Registry(providers)


@cache
def default_registry() -> Registry:
    return load_registry()
