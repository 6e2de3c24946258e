"""Status transitions of an integration, in one place.

``pending`` (stored, not yet checked) -> ``active`` | ``error`` by validation;
``disabled`` only by the user; ``expired`` once ``expires_at`` has passed.
``validating`` is never persisted: a validation reads and writes once (the
BigQuery job budget), so nobody could observe a stored ``validating`` that
is not stale. The BigQuery adapter encodes ``status_after_settings_change`` in
SQL; the contract suite checks both stores follow this function.

``apply_validation`` folds a validation's result into an integration (a
``config`` failure turns it to ``error`` at once, a transient one only after
it repeats), and ``expired_result`` is the verdict on a credential past its
``expires_at``, reached without calling the provider.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.domain.models import Integration, Status

# shared.domain.validation is imported where a validation is folded in, not here: list, get and
# an API key's setup never need it, and every cold start imports this module.
if TYPE_CHECKING:
    from shared.domain.providers import ProviderSpec
    from shared.domain.validation import ValidationResult


def status_after_settings_change(current: str, *, config_changed: bool, enabled: bool | None) -> str:
    if enabled is False:
        return Status.DISABLED
    if current == Status.DISABLED:
        # Re-enabling needs a fresh validation before the pipelines trust it.
        return Status.PENDING if enabled else Status.DISABLED
    if config_changed and current in (Status.ACTIVE, Status.ERROR, Status.EXPIRED):
        # The old result was about the old config (e.g. another billing dataset).
        return Status.PENDING
    return current


def expired_result(spec: ProviderSpec, expires_at: datetime) -> ValidationResult:
    from shared.domain.validation import Failure, FailureClass, ValidationResult

    message = f"{spec.display_name} credential expired at {expires_at.astimezone(UTC).isoformat()}"
    return ValidationResult(
        ok=False,
        details={"connection": False, "permissions": False, "message": message, "expired": True},
        message=message,
        failure=Failure.INVALID_KEY,
        failure_class=FailureClass.CONFIG,
    )


def apply_validation(
    integration: Integration, result: ValidationResult, now: datetime, *, transient_tolerance: int
) -> None:
    """Fold one validation result into the integration's lifecycle fields.

    A transient failure (429, 5xx, network) only turns a working integration
    into ``error`` once it has repeated more than ``transient_tolerance``
    times in a row; a config failure (bad key, missing role) does at once.
    """
    integration.last_checked_at = now
    integration.updated_at = now
    if result.ok:
        integration.status = Status.ACTIVE
        integration.validated_at = now
        integration.last_success_at = now
        integration.error_message = None
        integration.consecutive_failures = 0
        integration.details = result.details
        if result.expires_at is not None and result.expires_at != integration.expires_at:
            integration.expires_at = result.expires_at  # the provider knows when the key stops working
            integration.expiry_alert_window = None
        return
    from shared.domain.validation import FailureClass

    integration.consecutive_failures += 1
    if result.details.get("expired"):
        integration.status = Status.EXPIRED
    elif (
        result.failure_class != FailureClass.CONFIG
        and integration.status == Status.ACTIVE
        and integration.consecutive_failures <= transient_tolerance
    ):
        # Keep the last good result; record that this run could not confirm it.
        integration.details = {
            **(integration.details or {}),
            "last_transient_failure": result.message,
        }
        return
    else:
        integration.status = Status.ERROR
    # validated_at keeps the last *successful* validation (the spec's meaning).
    integration.error_message = result.message
    integration.details = result.details
