"""What a validation concludes: per capability (``CheckResult``) and as a whole (``ValidationResult``),
with the failure that decided it and its class (the user must fix something, or try again later).

The validators (``shared.validators``) produce these; the lifecycle folds them into an integration
(``shared.domain.lifecycle.apply_validation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


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
