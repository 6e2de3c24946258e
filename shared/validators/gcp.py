"""Google Cloud service-account validation.

``parse_service_account`` is the format check run at setup and rotate: the
uploaded JSON must be a service-account key whose ``token_uri`` is Google's
(or an operator-allowed host) - a validator that posts to a user-chosen URL
could be aimed at internal addresses.

``validate_service_account`` is the live check (see ``gcp_live``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from shared.errors import InvalidCredentialFormat
from shared.providers import ProviderSpec
from shared.validators import ValidationContext, ValidationResult

REQUIRED_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")


def parse_service_account(text: str, display_name: str, allowed_token_hosts: tuple[str, ...]) -> dict[str, Any]:
    """The key as a dict, or ``InvalidCredentialFormat`` naming every problem."""
    message = f"Invalid API key format for {display_name}"
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidCredentialFormat(
            message, details={"problems": ["service_account_json is not valid JSON"]}
        ) from None
    if not isinstance(document, dict):
        raise InvalidCredentialFormat(message, details={"problems": ["service_account_json must be a JSON object"]})
    problems = [
        f"missing field {name}"
        for name in REQUIRED_FIELDS
        if not isinstance(document.get(name), str) or not document[name]
    ]
    if document.get("type") not in (None, "service_account") and isinstance(document.get("type"), str):
        problems.append("type must be service_account")
    private_key = document.get("private_key")
    if isinstance(private_key, str) and private_key and "-----BEGIN PRIVATE KEY-----" not in private_key:
        problems.append("private_key is not a PEM private key")
    email = document.get("client_email")
    if isinstance(email, str) and email and "@" not in email:
        problems.append("client_email is not an email address")
    token_uri = document.get("token_uri")
    if isinstance(token_uri, str) and token_uri:
        parts = urlsplit(token_uri)
        host = parts.hostname or ""
        local_http = parts.scheme == "http" and host in ("127.0.0.1", "localhost")
        if host not in allowed_token_hosts or (parts.scheme != "https" and not local_http):
            problems.append(f"token_uri host {host or '(none)'} is not an allowed Google token endpoint")
    if problems:
        raise InvalidCredentialFormat(message, details={"problems": problems})
    return document


def validate_service_account(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> ValidationResult:
    from shared.validators.gcp_live import check_service_account

    return check_service_account(spec, secret, config, context)
