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

# Where a Cloud Function gets a Google-signed ID token for its service account.
METADATA_IDENTITY_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"


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
    # A billing export whose newest data is older than this has stopped feeding the pipeline.
    billing_export_max_age_hours: float = 72.0
    # Where a service-account key's expiry is read (IAM keys.get).
    gcp_iam_base_url: str = "https://iam.googleapis.com"
    # AWS: the platform's own role (assumed with a Google-signed ID token), chained into the customer's.
    aws_platform_role_arn: str | None = None
    aws_web_identity_audience: str = "provider-integrations-aws"
    aws_id_token_url: str = METADATA_IDENTITY_URL


def summarize(spec: ProviderSpec, checks: list[CheckResult], *, key_kind: str | None = None) -> ValidationResult:
    """Fold capability results into the ValidationDetails the frontend shows.

    The registry's pipelines decide what "working" means: a key that logs in
    but cannot provide a capability a pipeline needs (an OpenAI project key
    cannot read organization costs) is not valid, and the message says which
    capability is missing and how to fix it.
    """
    checks = list(checks)
    key_rejected = any(check.failure == Failure.INVALID_KEY for check in checks)
    run = {check.capability for check in checks}
    if key_kind is not None and not key_rejected:
        # The key's kind decided which checks ran; a pipeline capability it
        # cannot have is a config problem, not something left unchecked.
        for pipeline in spec.pipelines.values():
            if pipeline["requires"] not in run:
                checks.append(
                    CheckResult(
                        pipeline["requires"],
                        tested=False,
                        passed=False,
                        failure=Failure.MISSING_CAPABILITY,
                        failure_class=FailureClass.CONFIG,
                        reason=f"not available to {key_kind} keys",
                    )
                )
                run.add(pipeline["requires"])
    failures = [check for check in checks if not check.passed and check.failure is not None]
    answered = any(check.passed or check.http_status is not None for check in checks)
    by_capability = {check.capability: check for check in checks}
    pipelines = {}
    for pipeline_id, pipeline in spec.pipelines.items():
        check = by_capability.get(pipeline["requires"])
        ready = check is not None and check.passed
        pipelines[pipeline_id] = {
            "ready": ready,
            "requires": pipeline["requires"],
            "description": pipeline["description"],
        }
        if not ready:
            pipelines[pipeline_id]["fix"] = pipeline["fix"]
    details: dict[str, Any] = {
        "connection": answered and not key_rejected,
        "permissions": bool(checks) and not failures,
        "capabilities": {check.capability: check.as_details() for check in checks},
        "pipelines": pipelines,
    }
    if key_kind:
        details["key_kind"] = key_kind
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
    if failure == Failure.MISSING_CAPABILITY:
        missing = [p for p in spec.pipelines.values() if p["requires"] == worst.capability]
        fix = f" {missing[0]['fix']}" if missing else ""
        message = f"{message}: {worst.capability} is missing ({worst.reason}).{fix}"
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
        from shared.validators.http_check import key_kind, run_http_checks

        kind = key_kind(spec, secret)["name"]
        return summarize(spec, run_http_checks(spec, secret, config, context), key_kind=kind)
    validator = code_validators()[validation["module"]]
    return validator(spec, secret, config, context)


def code_validators() -> dict[str, CodeValidator]:
    from shared.validators import aws, gcp

    return {"gcp_service_account": gcp.validate_service_account, "aws_role": aws.validate_role}
