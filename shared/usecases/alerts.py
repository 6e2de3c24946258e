"""Status alerts and their delivery, shared by revalidation and the use cases that
change a status outside it (an OAuth refresh token refused while validating).

Below the service: it sees only the ports, so the service may use it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from shared.domain.models import Alert, Integration, Status, iso

if TYPE_CHECKING:
    from shared.usecases.ports import ServicePorts


def status_alert(before: str, integration: Integration, display_name: str, now: datetime) -> Alert | None:
    after = integration.status
    if after == before:
        return None
    if after in (Status.ERROR, Status.EXPIRED):
        kind = after
        message = f"{display_name} integration is {after}: {integration.error_message}"
    elif after == Status.ACTIVE and before in (Status.ERROR, Status.EXPIRED):
        kind, message = "recovered", f"{display_name} integration recovered and is active again"
    else:
        return None
    return Alert(
        dedupe_key=f"{integration.integration_id}:status:{kind}:{iso(now)}",
        org_slug=integration.org_slug,
        provider=integration.provider,
        integration_id=integration.integration_id,
        kind=str(kind),
        message=message,
        created_at=now,
    )


def deliver_alerts(ports: ServicePorts, alerts: list[Alert]) -> None:
    """Send newly stored alerts to their orgs' webhooks and record the outcome (two store jobs)."""
    from shared.egress.webhooks import deliver

    settings, store = ports.settings, ports.store
    webhooks = store.get_webhooks(sorted({alert.org_slug for alert in alerts}))
    if webhooks:
        deliver(
            alerts,
            webhooks,
            ports.api_key_pepper,
            timeout_seconds=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            insecure_hosts=settings.webhook_insecure_hosts,
        )
    else:
        for alert in alerts:
            alert.delivery_status = "no_webhook"
    store.record_alert_deliveries(alerts)
