"""Alerts and the webhook they go to.

- ``status_alert`` and ``deliver_alerts``: the alert a status change raises and its
  delivery, shared by revalidation and the use cases that change a status outside
  it (a validation, an OAuth refresh token refused while validating);
- ``AlertsAndWebhooks``: an organization's webhook (set, read, removed) and its
  recent alerts, a mixin of ``IntegrationService``.

It sees only the ports (the signed delivery itself is ``shared.egress.webhooks``,
loaded when an alert is delivered or a webhook set), so the service may use it.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.errors import BadRequest, NotFound
from shared.domain.inputs import check_org_slug
from shared.domain.models import Alert, AuditEvent, Integration, Status, Webhook, iso

if TYPE_CHECKING:
    from shared.domain.caller import Caller
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


class AlertsAndWebhooks:
    """An organization's webhook and its alerts (a mixin of ``IntegrationService``, which provides the ports)."""

    adapters: ServicePorts

    def set_webhook(self, org_slug: str, url: Any, caller: Caller | None = None) -> tuple[Webhook, str]:
        """Point the org's alerts at ``url``; returns the signing secret, shown once.

        A new webhook id (so a new secret) every time: setting the webhook again
        is how an organization rotates its signing secret.
        """
        from shared.egress.webhooks import check_webhook_url, signing_secret

        check_org_slug(org_slug)
        if not isinstance(url, str):
            raise BadRequest("Field 'url' must be a string")
        webhook = Webhook(
            org_slug=org_slug,
            webhook_id=secrets.token_hex(8),
            url=check_webhook_url(url, self.adapters.settings.webhook_insecure_hosts),
        )
        self.adapters.store.set_webhook(webhook)
        if caller is not None:
            self.adapters.store.append_audit(self._webhook_audit(caller, "webhook_set"))
        return webhook, signing_secret(self.adapters.api_key_pepper, webhook)

    def get_webhook(self, caller: Caller) -> Webhook:
        webhook = self.adapters.store.get_webhooks([caller.org_slug]).get(caller.org_slug)
        if webhook is None:
            raise NotFound("No webhook is set for this organization")
        return webhook

    def delete_webhook(self, caller: Caller) -> None:
        if not self.adapters.store.delete_webhook(caller.org_slug):
            raise NotFound("No webhook is set for this organization")
        self.adapters.store.append_audit(self._webhook_audit(caller, "webhook_delete"))

    def list_alerts(self, caller: Caller, limit: int = 100) -> list[Alert]:
        return self.adapters.store.list_alerts(caller.org_slug, limit=limit)

    def _webhook_audit(self, caller: Caller, action: str) -> AuditEvent:
        # Appended (streamed in BigQuery) after the write: the write is the request's one job,
        # and it already confirmed the caller's key.
        return caller.audit(caller.org_slug, "webhook", action)
