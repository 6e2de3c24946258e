"""Loads and checks the provider registry, ``configs/system/providers.yml``.

The file sits where the spec (and the cost pipelines, which read it by the
spec's keys) expect it. The JSON Schema (``providers.schema.json`` beside it)
checks shapes; the cross-field rules below check what a schema cannot (every
requirement names a declared check, every pipeline has a requirement, every
required field is a declared config field, every placeholder is known).

The full check (schema + cross-field rules) runs where the file can still
change: in the tests and at build time (``python -m shared.providers --check``,
part of ``make lint``/``make test`` and so of Cloud Build). A passing check
writes the parsed document beside the file (``providers.checked.json``, keyed
by the YAML's SHA-256, git-ignored, shipped in the function archive). At run
time the registry loads from that copy when its hash matches the YAML, so a
cold start imports neither ``jsonschema`` nor ``yaml`` (together 40-100 ms of
a first request on the dev machine); without a matching copy it parses the
YAML with libyaml. Either way the cheap cross-field rules run again, and a
registry broken anyway fails at start-up with ``ConfigurationError``, never
with a half-built spec.

SaaS tools carry ``saas_category`` and ``connection``; a ``toggle`` tool has
no credential, base URL or validation (its ProviderSpec says so with
``connectable`` False), so only the subscription toggles know it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, NamedTuple

from shared.domain.errors import ConfigurationError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "system"
REGISTRY_PATH = CONFIG_DIR / "providers.yml"
SCHEMA_PATH = CONFIG_DIR / "providers.schema.json"

# The request field that carries each credential type (the spec's CredentialInput).
# A cross-account IAM role is a service account in the spec's terms, carried as role_arn.
ROLE_ARN_FIELD = "role_arn"
CREDENTIAL_FIELDS = {
    "api_key": ("api_key",),
    "service_account": ("service_account_json", ROLE_ARN_FIELD),
    "oauth": ("oauth_token",),
}

SAAS_CATEGORIES = ("ai", "design", "productivity", "development")

# Placeholders a declarative check may use besides {config.<field>} (shared/validators/http_check.py).
REQUEST_PLACEHOLDERS = frozenset(
    {"secret", "secret_basic", "window_start_unix", "window_start_rfc3339", "window_end_unix", "window_end_rfc3339"}
)
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

# Capabilities that code validators report (declarative ones are their check names).
CODE_VALIDATOR_CAPABILITIES = {
    "gcp_service_account": {"list_datasets", "read_billing_export", "run_queries"},
    "aws_role": {"assume_role", "caller_identity", "external_id_required", "list_export", "read_cost_export"},
    "azure_service_principal": {"authenticate", "list_exports", "read_cost_export"},
}

# Code validators that parse a credential of several request fields (shared.validators.credential_parsers).
MULTI_FIELD_MODULES = {"azure_service_principal"}

# Code validators whose credential is exchanged for an access token before a pipeline gets it
# (shared.usecases.credential_access): their providers declare the token's scopes per pipeline (`access.scopes`).
TOKEN_ACCESS_MODULES = {"gcp_service_account", "azure_service_principal"}


@dataclass(frozen=True)
class ConfigField:
    """One provider config field from the registry: its pattern, whether it is required, what it means."""

    name: str
    regex: str
    required: bool
    description: str
    example: str | None = None

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        # Compiled on first use: an instance serves one or two providers of the dozens of
        # patterns in the registry, and a cold start should not compile them all.
        return re.compile(self.regex)


class Requirement(NamedTuple):  # not a frozen dataclass: see shared.domain.caller.Caller
    """What one pipeline (or, for a provider without pipelines, the connection) needs."""

    name: str
    requires: tuple[str, ...]
    description: str
    fix: str


class OAuthSpec(NamedTuple):  # not a frozen dataclass: see shared.domain.caller.Caller
    """The registry's ``oauth:`` block: how the authorization-code flow runs for a provider."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    pkce: bool  # S256 code challenge
    client_auth: str  # basic (HTTP Basic) | body (client_id/client_secret form fields)
    rotating_refresh_tokens: bool  # each refresh token works once
    token_lifetime_seconds: int  # documented access-token lifetime (used when the answer has no expires_in)


@dataclass(frozen=True)
class ProviderSpec:
    """One provider of ``configs/system/providers.yml``, as the service uses it."""

    provider_id: str
    display_name: str
    category: str
    credential_type: str  # api_key | service_account | oauth (the spec's values); "" for a toggle
    credential_field: str  # the CredentialInput field that carries it; "" for a toggle
    key_regex: str | None  # the credential's format (key_pattern compiles it on first use)
    config_fields: dict[str, ConfigField]
    base_url: str  # "" for a toggle
    validation: dict[str, Any]  # {} for a toggle
    pipelines: tuple[str, ...] = ()
    requirements: dict[str, Requirement] = field(default_factory=dict)
    key_prefix: str | None = None
    oauth: OAuthSpec | None = None
    # The request fields of a credential made of several (empty: just credential_field).
    credential_fields: tuple[str, ...] = ()
    saas_category: str | None = None  # ai | design | productivity | development (category saas only)
    connection: str | None = None  # toggle | api_token | oauth (category saas; None elsewhere)
    # Pipeline -> the scopes of the access token a pipeline gets instead of the stored key (GCP, Azure).
    access_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @cached_property
    def key_pattern(self) -> re.Pattern[str] | None:
        return None if self.key_regex is None else re.compile(self.key_regex)

    @property
    def connectable(self) -> bool:
        """Whether an org can store a credential for it (a toggle-only SaaS tool cannot)."""
        return self.connection != "toggle"

    @property
    def needed_capabilities(self) -> tuple[str, ...]:
        """Every capability some requirement needs, in declaration order, once."""
        return tuple(dict.fromkeys(c for r in self.requirements.values() for c in r.requires))


class Registry(NamedTuple):  # not a frozen dataclass: see shared.domain.caller.Caller
    """Every provider of the registry file, by id."""

    providers: dict[str, ProviderSpec]

    def get(self, provider_id: str) -> ProviderSpec | None:
        return self.providers.get(provider_id)


def _check_cross_fields(document: dict[str, Any]) -> list[str]:
    problems = []
    for provider_id, entry in document["providers"].items():
        if entry.get("connection") == "toggle":
            continue  # nothing to connect: the schema already refused credential and validation
        validation = entry["validation"]
        credential_type = entry["credential_type"]
        if entry.get("connection") == "api_token" and credential_type != "api_key":
            problems.append(f"{provider_id}: connection api_token needs credential_type api_key")
        if (entry.get("connection") == "oauth") != (credential_type == "oauth" and entry["category"] == "saas"):
            problems.append(
                f"{provider_id}: a SaaS tool has connection oauth exactly when its credential_type is oauth"
            )
        credential = entry["credential"]
        if "fields" in credential:
            # A credential of several request fields (Azure): the secret field is one of them.
            if credential["field"] not in credential["fields"] or validation.get("module") not in MULTI_FIELD_MODULES:
                problems.append(
                    f"{provider_id}: credential.fields needs a validator module with a credential parser"
                    f" ({', '.join(sorted(MULTI_FIELD_MODULES))}) and must list credential.field"
                )
        elif credential["field"] not in CREDENTIAL_FIELDS[credential_type]:
            problems.append(
                f"{provider_id}: credential.field must be one of {', '.join(CREDENTIAL_FIELDS[credential_type])}"
                f" for {credential_type}"
            )
        config_fields = entry.get("config_fields", {})
        for name in entry["required_fields"]:
            if name not in config_fields:
                problems.append(f"{provider_id}: required field {name} is not a config field")
        prefix, example = entry.get("key_prefix"), entry["credential"].get("example")
        if prefix and example and not example.startswith(prefix):
            problems.append(f"{provider_id}: credential.example must start with key_prefix {prefix}")
        if validation["kind"] == "http":
            capabilities = set(validation["checks"])
            for hint in validation.get("key_hints", []):
                for check in hint["order"]:
                    if check not in capabilities:
                        problems.append(f"{provider_id}: key hint {hint['prefix']} names unknown check {check}")
            if credential_type not in ("api_key", "oauth"):
                problems.append(f"{provider_id}: declarative validation needs an api_key or oauth credential")
            if credential_type == "api_key" and ("pattern" not in entry["credential"] or not example):
                problems.append(f"{provider_id}: an api_key credential needs a pattern and an example")
            problems += _placeholder_problems(provider_id, entry)
        else:
            module = validation["module"]
            if module not in CODE_VALIDATOR_CAPABILITIES:
                problems.append(f"{provider_id}: unknown validator module {module}")
            capabilities = CODE_VALIDATOR_CAPABILITIES.get(module, set())
        if (credential_type == "oauth") != ("oauth" in entry):
            problems.append(f"{provider_id}: an oauth block goes with credential_type oauth, and only with it")
        scopes = entry.get("access", {}).get("scopes", {})
        for pipeline in scopes:
            if pipeline not in entry["pipelines"]:
                problems.append(f"{provider_id}: access.scopes names {pipeline}, which is not a listed pipeline")
        if validation.get("module") in TOKEN_ACCESS_MODULES:
            for pipeline in entry["pipelines"]:
                if pipeline not in scopes:
                    problems.append(f"{provider_id}: pipeline {pipeline} needs its token scopes in access.scopes")
        elif scopes:
            problems.append(
                f"{provider_id}: access.scopes goes with a validator module that mints tokens"
                f" ({', '.join(sorted(TOKEN_ACCESS_MODULES))})"
            )
        requirements = validation["requirements"]
        for pipeline in entry["pipelines"]:
            if pipeline not in requirements:
                problems.append(f"{provider_id}: pipeline {pipeline} has no requirement in validation.requirements")
        for name, requirement in requirements.items():
            if name not in entry["pipelines"] and name != "connection":
                problems.append(f"{provider_id}: requirement {name} is neither a listed pipeline nor 'connection'")
            for capability in requirement["requires"]:
                if capability not in capabilities:
                    problems.append(f"{provider_id}: requirement {name} requires unknown capability {capability}")
    return problems


def _placeholder_problems(provider_id: str, entry: dict[str, Any]) -> list[str]:
    """Every {name} in headers, paths and queries is one the checks can fill."""
    validation, config_fields = entry["validation"], entry.get("config_fields", {})
    templates = [(f"header {name}", value, False) for name, value in validation["headers"].items()]
    for check_name, check in validation["checks"].items():
        templates.append((f"check {check_name} path", check["path"], True))
        templates += [(f"check {check_name} query {name}", v, False) for name, v in check.get("query", {}).items()]
    problems = []
    for where, template, in_path in templates:
        for name in PLACEHOLDER.findall(template):
            field_name = name.removeprefix("config.")
            if name.startswith("config."):
                if field_name not in config_fields:
                    problems.append(f"{provider_id}: {where} names unknown config field {field_name}")
                elif in_path and field_name not in entry["required_fields"]:
                    problems.append(f"{provider_id}: {where} needs config field {field_name} to be required")
            elif name not in REQUEST_PLACEHOLDERS:
                problems.append(f"{provider_id}: {where} names unknown placeholder {{{name}}}")
            elif name.startswith("secret") and not where.startswith("header"):
                problems.append(f"{provider_id}: {where} may not carry the secret (only headers may)")
    return problems


def checked_copy_path(path: Path) -> Path:
    """Where a passing check leaves the parsed registry: ``providers.yml`` -> ``providers.checked.json``."""
    return path.with_name(f"{path.stem}.checked.json")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read provider registry {path}: {exc}") from exc


def _parse_yaml(path: Path, raw: bytes) -> Any:
    import yaml

    # libyaml's loader when PyYAML has it (the wheels do): a tenth of the pure-Python parse time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader either way
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigurationError(f"cannot read provider registry {path}: {exc}") from exc


def _checked_copy(path: Path, raw: bytes) -> Any | None:
    """The document the build-time check wrote, if it was written for exactly these bytes."""
    try:
        copy = json.loads(checked_copy_path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(copy, dict) or copy.get("source_sha256") != hashlib.sha256(raw).hexdigest():
        return None
    return copy.get("document")


def _read_document(path: Path) -> tuple[Any, bool]:
    """The document, and whether it is the checked copy (whose patterns the schema check compiled)."""
    raw = _read_bytes(path)
    checked = _checked_copy(path, raw)
    return (checked, True) if checked is not None else (_parse_yaml(path, raw), False)


def write_checked_copy(path: Path, raw: bytes, document: Any) -> Path:
    """Leave the checked document beside the registry (atomically: readers never see half a file)."""
    import tempfile  # build time only, like argparse below: a cold start never writes the copy

    target = checked_copy_path(path)
    payload = {"source": path.name, "source_sha256": hashlib.sha256(raw).hexdigest(), "document": document}
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(payload, handle, separators=(",", ":"))
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def schema_problems(document: Any) -> list[str]:
    """What the JSON Schema finds wrong with ``document`` (tests and the build-time check only)."""
    import jsonschema

    try:
        schema = json.loads(SCHEMA_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read provider registry schema {SCHEMA_PATH}: {exc}") from exc
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    return [f"{'/'.join(map(str, error.path)) or '<root>'}: {error.message}" for error in errors]


def check_registry(path: Path = REGISTRY_PATH, *, write_copy: bool = False) -> list[str]:
    """Every problem of the registry file (from the YAML itself): the JSON Schema, then the cross-field
    rules. With ``write_copy``, a registry without problems also gets its checked copy written."""
    raw = _read_bytes(path)
    document = _parse_yaml(path, raw)
    problems = schema_problems(document)
    if not problems:
        try:
            problems = _check_cross_fields(document)
        except (KeyError, TypeError, AttributeError) as exc:
            problems = [f"malformed ({exc.__class__.__name__}: {exc})"]
    if not problems and write_copy:
        write_checked_copy(path, raw, document)
    return problems


def load_registry(path: Path = REGISTRY_PATH, *, check_schema: bool = False) -> Registry:
    """The registry as specs. ``check_schema`` adds the full JSON Schema check on the YAML itself
    (tests); otherwise the checked copy is used when it matches the YAML."""
    if check_schema:
        document, checked = _parse_yaml(path, _read_bytes(path)), False
    else:
        document, checked = _read_document(path)
    problems = schema_problems(document) if check_schema else []
    try:
        if not problems:
            problems = _check_cross_fields(document)
        if problems:
            raise ConfigurationError(f"provider registry {path} is invalid: " + "; ".join(problems))
        registry = _build(document)
        if not checked:
            # Specs compile their patterns on first use; the checked copy's were compiled by the
            # schema check (format: regex), any other document's are compiled here, so a broken
            # one fails at load as before, not in a request.
            _compile_patterns(registry)
        return registry
    except (KeyError, TypeError, AttributeError, re.error) as exc:
        # A shape the schema would have refused: the build-time check was skipped.
        raise ConfigurationError(
            f"provider registry {path} is malformed ({exc.__class__.__name__}: {exc}); "
            "run `python -m shared.providers --check` for the full report"
        ) from None


def _build(document: dict[str, Any]) -> Registry:
    providers = {}
    for provider_id, entry in document["providers"].items():
        credential = entry.get("credential", {})
        validation = entry.get("validation", {})
        providers[provider_id] = ProviderSpec(
            provider_id=provider_id,
            display_name=entry["display_name"],
            category=entry["category"],
            credential_type=entry.get("credential_type", ""),
            credential_field=credential.get("field", ""),
            key_regex=credential.get("pattern"),
            config_fields={
                name: ConfigField(
                    name=name,
                    regex=spec["pattern"],
                    required=name in entry["required_fields"],
                    description=spec["description"],
                    example=spec.get("example"),
                )
                for name, spec in entry.get("config_fields", {}).items()
            },
            base_url=entry.get("base_url", "").rstrip("/"),
            validation=validation,
            pipelines=tuple(entry["pipelines"]),
            requirements={
                name: Requirement(name, tuple(item["requires"]), item["description"], item["fix"])
                for name, item in validation.get("requirements", {}).items()
            },
            key_prefix=entry.get("key_prefix"),
            oauth=_oauth_spec(entry.get("oauth")),
            saas_category=entry.get("saas_category"),
            connection=entry.get("connection"),
            credential_fields=tuple(credential.get("fields", ())),
            access_scopes={
                pipeline: tuple(scopes) for pipeline, scopes in entry.get("access", {}).get("scopes", {}).items()
            },
        )
    return Registry(providers)


def _compile_patterns(registry: Registry) -> None:
    """Compile every pattern now rather than on first use (``re.error`` if one is broken)."""
    for spec in registry.providers.values():
        _ = spec.key_pattern
        for config_field in spec.config_fields.values():
            _ = config_field.pattern


def _oauth_spec(block: dict[str, Any] | None) -> OAuthSpec | None:
    if block is None:
        return None
    return OAuthSpec(
        authorize_url=block["authorize_url"],
        token_url=block["token_url"],
        scopes=tuple(block["scopes"]),
        pkce=block["pkce"] == "S256",
        client_auth=block["client_auth"],
        rotating_refresh_tokens=bool(block["rotating_refresh_tokens"]),
        token_lifetime_seconds=int(block["token_lifetime_seconds"]),
    )


@cache
def default_registry() -> Registry:
    return load_registry()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Check the provider registry against its schema and rules.")
    parser.add_argument(
        "--check", action="store_true", help="check the registry and, if it passes, write its checked copy"
    )
    parser.add_argument("path", nargs="?", type=Path, default=REGISTRY_PATH)
    arguments = parser.parse_args(argv)
    if not arguments.check:
        parser.error("nothing to do: pass --check")
    try:
        problems = check_registry(arguments.path, write_copy=True)
    except ConfigurationError as exc:
        problems = [str(exc)]
    if problems:
        print(f"{arguments.path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    registry = load_registry(arguments.path)
    print(
        f"{arguments.path}: OK ({len(registry.providers)} providers: {', '.join(registry.providers)}); "
        f"checked copy in {checked_copy_path(arguments.path).name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
