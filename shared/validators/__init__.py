"""Credential validation: one entry point over every provider.

``validate_credential`` dispatches on the registry entry: declarative HTTP
checks (``http_check``) or a code validator the registry names
(``code_validators``: the live checks of ``gcp_live``, ``azure_live`` and
``aws_live``, each loaded, with its client library, only when a credential of
its kind is checked). Every validator returns a ``ValidationResult``
(``shared.domain.validation``) whose ``details`` is the frontend's
``ValidationDetails`` plus per-capability results (``summary``); messages are
the spec's, never provider text (which can echo a key).

The format checks a setup runs before anything is stored are ``gcp``,
``azure`` and ``aws``; ``context`` is what every check is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.domain.providers import ProviderSpec
from shared.domain.validation import CheckResult, Failure, FailureClass, ValidationResult
from shared.validators.context import CodeValidator, MintedToken, ValidationContext
from shared.validators.summary import FAILURE_PRECEDENCE, failure_message, summarize

__all__ = [
    "FAILURE_PRECEDENCE",
    "CheckResult",
    "CodeValidator",
    "Failure",
    "FailureClass",
    "MintedToken",
    "ValidationContext",
    "ValidationResult",
    "code_validators",
    "credential_parsers",
    "failure_message",
    "summarize",
    "validate_credential",
]


def validate_credential(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> ValidationResult:
    """Check ``secret`` against the provider; never raises for provider faults."""
    validation = spec.validation
    if validation["kind"] == "http":
        from shared.validators.http_check import run_http_checks

        return summarize(spec, run_http_checks(spec, secret, config, context))
    validator = code_validators()[validation["module"]]
    return validator(spec, secret, config, context)


def credential_parsers() -> dict[str, Callable[[dict[str, Any], str], str]]:
    """Format checks of credentials made of several fields, by validator module.

    Each takes the request's ``credentials`` object and the display name and
    returns the canonical secret to encrypt, or raises a 400 naming the field.
    """
    from shared.validators import azure

    return {"azure_service_principal": azure.parse_service_principal}


def code_validators() -> dict[str, CodeValidator]:
    """The code validators by the registry's ``validation.module``."""
    return {
        "gcp_service_account": _gcp_service_account,
        "azure_service_principal": _azure_service_principal,
        "aws_role": _aws_role,
    }


# Each live check is imported when a credential of its kind is checked: boto3, msal and google-auth
# load with the check that needs them, never with the dispatch.


def _gcp_service_account(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> ValidationResult:
    from shared.validators.gcp_live import check_service_account

    return check_service_account(spec, secret, config, context)


def _azure_service_principal(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> ValidationResult:
    from shared.validators.azure_live import check_service_principal

    return check_service_principal(spec, secret, config, context)


def _aws_role(spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext) -> ValidationResult:
    from shared.validators.aws_live import check_role

    return check_role(spec, secret, config, context)
