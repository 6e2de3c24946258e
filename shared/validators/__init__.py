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
from typing import Any

from shared.providers import ProviderSpec


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
    ok: bool
    details: dict[str, Any]
    message: str | None = None
    failure: Failure | None = None
    failure_class: FailureClass | None = None
    expires_at: datetime | None = None


CodeValidator = Callable[[ProviderSpec, str, dict[str, Any], "ValidationContext"], ValidationResult]


@dataclass(frozen=True)
class ValidationContext:
    """Operator settings a validator needs; built once from ``Settings``."""

    base_url: str
    request_timeout_seconds: float = 5.0
    deadline_seconds: float = 10.0
    max_attempts: int = 3
    retry_after_cap_seconds: float = 5.0
    backoff_base_seconds: float = 0.25
    allowed_token_hosts: tuple[str, ...] = ("oauth2.googleapis.com", "accounts.google.com")
    bigquery_endpoint: str | None = None  # GCP live check; None = Google's


def summarize(spec: ProviderSpec, checks: list[CheckResult]) -> ValidationResult:
    """Fold capability results into the ValidationDetails the frontend shows."""
    failures = [check for check in checks if check.tested and not check.passed]
    connection = any(check.http_status is not None and check.failure != Failure.INVALID_KEY for check in checks) or any(
        check.passed for check in checks
    )
    details: dict[str, Any] = {
        "connection": connection and not any(check.failure == Failure.INVALID_KEY for check in checks),
        "permissions": bool(checks) and not failures,
        "capabilities": {check.capability: check.as_details() for check in checks},
    }
    models = next((check.models for check in checks if check.models is not None), None)
    if models is not None:
        details["models"] = models
    tier = _tier_hint(checks)
    if tier:
        details["tier"] = tier
    if not failures:
        details["message"] = f"{spec.display_name} credential is valid"
        return ValidationResult(ok=True, details=details)
    worst = min(failures, key=lambda check: FAILURE_PRECEDENCE.index(check.failure or Failure.UNREACHABLE))
    failure = worst.failure or Failure.UNREACHABLE
    message = failure_message(failure, spec.display_name)
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


def code_validators() -> dict[str, CodeValidator]:
    from shared.validators import gcp

    return {"gcp_service_account": gcp.validate_service_account}
