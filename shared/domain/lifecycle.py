"""Status transitions of an integration, in one place.

``pending`` (stored, not yet checked) -> ``active`` | ``error`` by validation;
``disabled`` only by the user; ``expired`` once ``expires_at`` has passed.
``validating`` is never persisted: a validation reads and writes once (the
BigQuery job budget), so nobody could observe a stored ``validating`` that
is not stale. The BigQuery adapter encodes ``status_after_settings_change`` in
SQL; the contract suite checks both stores follow this function.
"""

from __future__ import annotations

from shared.domain.models import Status


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
