"""A request's credentials and config, checked against the registry before anything is stored.

Setup, rotate, bulk import and the OAuth start run these same checks (through
``IntegrationService.check_credentials`` and ``check_config``), so each refuses
what the others refuse. No message quotes what the caller sent: a secret pasted
into the wrong field must not come back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.domain.errors import BadRequest, InvalidCredentialFormat
from shared.domain.providers import ROLE_ARN_FIELD, ProviderSpec

if TYPE_CHECKING:
    from shared.common.config import Settings

MAX_SECRET_CHARS = 16 * 1024


def credential_secret(spec: ProviderSpec, credentials: Any, settings: Settings) -> str:
    """The plaintext secret of ``credentials`` after the provider's format check (400 saying what is
    wrong, never quoting it)."""
    if not isinstance(credentials, dict):
        raise BadRequest("Field 'credentials' must be an object")
    if spec.credential_fields:
        return _multi_field_secret(spec, credentials)
    field_name = spec.credential_field
    if spec.credential_type == "oauth":
        raise BadRequest(
            f"{spec.display_name} connects through OAuth, not a pasted token: "
            f"POST /api/v1/integrations/{{org}}/{spec.provider_id}/oauth/start"
        )
    unknown = set(credentials) - {field_name}
    if unknown:
        raise BadRequest(
            f"Field 'credentials' for {spec.display_name} takes only '{field_name}';"
            f" {_count(len(unknown), 'other field was', 'other fields were')} sent"
        )
    value = credentials.get(field_name)
    # Both GCP keys and AWS roles are the spec's service_account; the request field tells them apart.
    if field_name == "service_account_json" and isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Field 'credentials.{field_name}' is required and must be a non-empty string")
    if len(value) > MAX_SECRET_CHARS:
        raise BadRequest(f"Field 'credentials.{field_name}' is longer than {MAX_SECRET_CHARS} characters")
    if field_name == "service_account_json":
        from shared.validators.gcp import parse_service_account

        document = parse_service_account(value, spec.display_name, settings.allowed_token_hosts, settings.gcp_token_uri)
        return json.dumps(document, sort_keys=True)
    if field_name == ROLE_ARN_FIELD:
        from shared.validators.aws import parse_role_arn

        return parse_role_arn(value, spec.display_name).arn
    value = value.strip()
    if spec.key_pattern is not None and not spec.key_pattern.fullmatch(value):
        raise InvalidCredentialFormat(f"Invalid API key format for {spec.display_name}")
    return value


def _multi_field_secret(spec: ProviderSpec, credentials: dict[str, Any]) -> str:
    """A credential of several named fields (an Azure service principal), as canonical JSON."""
    from shared.validators import credential_parsers

    unknown = set(credentials) - set(spec.credential_fields)
    if unknown:
        allowed = ", ".join(spec.credential_fields)
        raise BadRequest(
            f"Field 'credentials' for {spec.display_name} takes {allowed};"
            f" {_count(len(unknown), 'other field was', 'other fields were')} sent"
        )
    too_long = [name for name, value in credentials.items() if isinstance(value, str) and len(value) > MAX_SECRET_CHARS]
    if too_long:
        raise BadRequest(f"Field 'credentials.{too_long[0]}' is longer than {MAX_SECRET_CHARS} characters")
    return credential_parsers()[spec.validation["module"]](credentials, spec.display_name)


def checked_config(spec: ProviderSpec, config: Any) -> dict[str, str]:
    """``config`` checked against the provider's config fields (400 naming what is wrong)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise BadRequest("Field 'config' must be an object")
    unknown = set(config) - set(spec.config_fields)
    if unknown:
        allowed = ", ".join(sorted(spec.config_fields)) or "none"
        raise BadRequest(
            f"Unknown config field(s) for {spec.display_name}"
            f" ({_count(len(unknown), 'field', 'fields')} it does not take); allowed: {allowed}"
        )
    problems = []
    for name, field_spec in spec.config_fields.items():
        value = config.get(name)
        if value is None:
            if field_spec.required:
                problems.append(f"'{name}' is required ({field_spec.description})")
            continue
        if not isinstance(value, str) or not field_spec.pattern.fullmatch(value):
            shape = f"look like {field_spec.example}" if field_spec.example else f"match {field_spec.pattern.pattern}"
            problems.append(f"'{name}' must {shape}")
    if problems:
        raise BadRequest(f"Invalid config for {spec.display_name}: " + "; ".join(problems))
    return {name: value for name, value in config.items() if value is not None}


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
