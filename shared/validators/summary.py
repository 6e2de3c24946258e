"""Capability checks folded into the verdict and the ``ValidationDetails`` the frontend shows."""

from __future__ import annotations

from typing import Any

from shared.domain.providers import ProviderSpec
from shared.domain.validation import CheckResult, Failure, ValidationResult

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
