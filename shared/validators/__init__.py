"""Credential validation: one entry point over every provider.

``validate_credential`` dispatches on the registry entry: declarative HTTP
checks (``http_check``) or a code validator named by the registry
(``CODE_VALIDATORS``). Every validator returns a ``ValidationResult`` whose
``details`` is the frontend's ``ValidationDetails`` plus per-capability
results; messages are the spec's, never provider text (which can echo a key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from shared.domain.providers import ProviderSpec

if TYPE_CHECKING:
    from shared.common.config import Settings


class Failure(StrEnum):
    INVALID_KEY = "invalid_key"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    MISSING_CAPABILITY = "missing_capability"


class FailureClass(StrEnum):
    CONFIG = "config"  # the user must change something: key, role, export
    TRANSIENT = "transient"  # 429, timeouts, network: try again later
    PROVIDER_OUTAGE = "provider_outage"  # the provider answers 5xx


# Which failure wins when several checks fail: the most actionable first.
FAILURE_PRECEDENCE = [
    Failure.INVALID_KEY,
    Failure.FORBIDDEN,
    Failure.MISSING_CAPABILITY,
    Failure.RATE_LIMITED,
    Failure.UNREACHABLE,
]


def failure_message(failure: Failure, display_name: str) -> str:
    """The spec's error table, word for word."""
    return {
        Failure.INVALID_KEY: f"{display_name} API key is invalid or expired",
        Failure.FORBIDDEN: "Service account lacks required permissions",
        Failure.MISSING_CAPABILITY: "Service account lacks required permissions",
        Failure.RATE_LIMITED: f"{display_name} rate limit exceeded during validation",
        Failure.UNREACHABLE: f"Unable to connect to {display_name}",
    }[failure]


@dataclass
class CheckResult:
    """One capability probe: tested tells "not checked" apart from "passed"."""

    capability: str
    tested: bool
    passed: bool
    failure: Failure | None = None
    failure_class: FailureClass | None = None
    reason: str | None = None
    http_status: int | None = None
    models: list[str] | None = None
    lists_models: bool = False  # this check is the one that would list the key's models
    headers: dict[str, str] = field(default_factory=dict)
    # Extra facts a check learned (e.g. billing export kind and freshness).
    facts: dict[str, Any] = field(default_factory=dict)

    def as_details(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"tested": self.tested, "passed": self.passed}
        if self.reason:
            summary["reason"] = self.reason
        if self.failure_class:
            summary["failure_class"] = str(self.failure_class)
        summary.update(self.facts)
        return summary


@dataclass
class ValidationResult:
    """A validator's verdict: ok or the failure that decided it, and the frontend's details."""

    ok: bool
    details: dict[str, Any]
    message: str | None = None
    failure: Failure | None = None
    failure_class: FailureClass | None = None
    expires_at: datetime | None = None


CodeValidator = Callable[[ProviderSpec, str, dict[str, Any], "ValidationContext"], ValidationResult]


class ValidationContext(NamedTuple):  # a NamedTuple, not a frozen dataclass: see shared.usecases.integrations.Caller
    """What a validator knows besides the credential: the provider's base URL and the operator's settings.

    Every knob a check reads (timeouts, attempts, the token and API endpoints of
    Google, AWS and Azure, the billing export's age limit) is a field of
    ``Settings``, declared and defaulted there once; a validator reads it as
    ``context.settings.<field>``.
    """

    base_url: str
    settings: Settings

    @classmethod
    def of(cls, settings: Settings, spec: ProviderSpec) -> ValidationContext:
        """The context for ``spec``'s checks: its base URL (``PROVIDER_<ID>_BASE_URL`` or the registry's)."""
        return cls(settings.provider_base_urls.get(spec.provider_id, spec.base_url), settings)


class MintedToken(NamedTuple):
    """An access token minted from a stored credential for a pipeline, and when it stops working."""

    access_token: str
    expires_at: datetime | None


def summarize(spec: ProviderSpec, checks: list[CheckResult]) -> ValidationResult:
    """Fold capability results into the ValidationDetails the frontend shows.

    Only the capabilities the registry's requirements need decide the verdict:
    a key that every needed check accepted is valid whatever its shape, and
    the other checks (listing models, say) only add facts. A needed check that
    got a definite refusal (401/403, a missing export) makes the credential
    invalid, with the fix of the pipeline that needs it; a needed check that
    never got an answer (429, 5xx, timeout) is reported as rate limiting or an
    unreachable provider, never as a missing permission.
    """
    checks = list(checks)
    by_capability = {check.capability: check for check in checks}
    needed = spec.needed_capabilities
    anything_passed = any(check.passed for check in checks)
    answered = [check for check in checks if check.http_status is not None or check.passed]
    # A 401 from every endpoint that answered is a dead key; a 401 from one
    # endpoint while another accepted the key is that endpoint refusing it.
    key_rejected = bool(answered) and not anything_passed and any(c.failure == Failure.INVALID_KEY for c in checks)
    for check in checks:
        if check.failure == Failure.INVALID_KEY and anything_passed:
            check.failure = Failure.FORBIDDEN
            check.reason = "key refused by this endpoint"
    for capability in needed:
        if capability not in by_capability:
            # A code validator stopped before it could run this check (its token was refused, say).
            missing = CheckResult(capability, tested=False, passed=False, reason="not checked: an earlier step failed")
            checks.append(missing)
            by_capability[capability] = missing
    needed_failures = [by_capability[c] for c in needed if not by_capability[c].passed]
    failures = [check for check in needed_failures if check.failure is not None]

    pipelines = {}
    for name, requirement in spec.requirements.items():
        blocking = [c for c in requirement.requires if not by_capability[c].passed]
        pipelines[name] = {
            "ready": not blocking,
            "requires": list(requirement.requires),
            "description": requirement.description,
        }
        if blocking:
            pipelines[name]["fix"] = requirement.fix
    details: dict[str, Any] = {
        "connection": bool(answered) and not key_rejected,
        "permissions": not needed_failures,
        "capabilities": {check.capability: check.as_details() for check in checks},
        "pipelines": pipelines,
    }
    models_check = next((check for check in checks if check.models is not None), None)
    if models_check is not None:
        details["models"] = models_check.models
    else:
        unavailable = next((check for check in checks if check.lists_models and not check.passed), None)
        if unavailable is not None:
            details["models_unavailable"] = unavailable.reason or "the key cannot list models"
    tier = _tier_hint(checks)
    if tier:
        details["tier"] = tier
    if not needed_failures:
        details["message"] = f"{spec.display_name} credential is valid"
        return ValidationResult(ok=True, details=details)
    if not failures:
        # Needed checks were skipped without an answer of their own: report the step that failed.
        failures = [check for check in checks if check.failure is not None] or needed_failures
    if key_rejected:
        failure = Failure.INVALID_KEY
        worst = next(c for c in checks if c.failure == Failure.INVALID_KEY)
    else:
        worst = min(failures, key=lambda check: FAILURE_PRECEDENCE.index(check.failure or Failure.UNREACHABLE))
        failure = worst.failure or Failure.UNREACHABLE
    message = failure_message(failure, spec.display_name)
    fixes = [r.fix for r in spec.requirements.values() if worst.capability in r.requires]
    if failure in (Failure.FORBIDDEN, Failure.MISSING_CAPABILITY):
        if fixes:
            details["fix"] = fixes[0]
        if anything_passed or failure == Failure.MISSING_CAPABILITY:
            # The key works but not for this capability: say which, and how to get it.
            fix = f" {fixes[0]}" if fixes else ""
            message = f"{message}: {worst.capability} refused ({worst.reason}).{fix}"
    details["message"] = message
    return ValidationResult(
        ok=False, details=details, message=message, failure=failure, failure_class=worst.failure_class
    )


def _tier_hint(checks: list[CheckResult]) -> str | None:
    for check in checks:
        if check.headers:
            return ", ".join(f"{name}={value}" for name, value in sorted(check.headers.items()))
    return None


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
    from shared.validators import aws, azure, gcp

    return {
        "gcp_service_account": gcp.validate_service_account,
        "azure_service_principal": azure.validate_service_principal,
        "aws_role": aws.validate_role,
    }
