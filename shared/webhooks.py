"""Signed alert deliveries to an organization's webhook.

Wire format of one delivery (HTTP POST, JSON body)::

    X-Integrations-Delivery:  <alert_id>          receivers dedupe on it
    X-Integrations-Timestamp: <unix seconds>
    X-Integrations-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

A receiver recomputes the signature over the raw body and rejects timestamps
outside a tolerance (``verify_signature``), which makes a captured delivery
useless to replay later. The signing secret is never stored: it is derived
from the service pepper and the webhook id (``signing_secret``) and shown to
the organization once, when the webhook is set.

Delivery retries on network errors and 5xx with backoff; a webhook that keeps
failing marks its alerts ``failed`` and never fails the revalidation run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import urllib3

from shared.models import Alert, Webhook, iso, utc_now
from shared.outbound import OutboundRefused, check_resolved, parse_target, post_pinned, resolve_public

logger = logging.getLogger("integrations.webhooks")

SIGNATURE_HEADER = "X-Integrations-Signature"
TIMESTAMP_HEADER = "X-Integrations-Timestamp"
DELIVERY_HEADER = "X-Integrations-Delivery"
DEFAULT_TOLERANCE_SECONDS = 300


def signing_secret(pepper: bytes, webhook: Webhook) -> str:
    """The secret an organization verifies deliveries with (derived, never stored)."""
    material = f"webhook:v1:{webhook.org_slug}:{webhook.webhook_id}".encode()
    return "whsec_" + hmac.new(pepper, material, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver runs: right signature, and not older (or newer) than the tolerance."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)


def check_webhook_url(url: str, insecure_hosts: tuple[str, ...]) -> str:
    """HTTPS to a public host only: the service posts there from inside the platform.

    The URL must be canonical (see ``shared.outbound``) and its host must not
    name or resolve to an internal address now; every delivery checks again.
    Operator-listed hosts (``WEBHOOK_INSECURE_HOSTS``, tests only) may use
    plain HTTP, any port and internal addresses.
    """
    target = parse_target(url, insecure_hosts=insecure_hosts)
    check_resolved(target, insecure_hosts=insecure_hosts)
    return url


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "type": f"integration.{alert.kind}",
        "alert_id": alert.alert_id,
        "org_slug": alert.org_slug,
        "provider": alert.provider,
        "integration_id": alert.integration_id,
        "message": alert.message,
        "created_at": iso(alert.created_at),
    }


def deliver(
    alerts: Sequence[Alert],
    webhooks: dict[str, Webhook],
    pepper: bytes,
    *,
    timeout_seconds: float = 5.0,
    max_attempts: int = 3,
    backoff_base_seconds: float = 0.5,
    insecure_hosts: tuple[str, ...] = (),
) -> None:
    """POST each alert to its org's webhook; record the outcome on the alert objects.

    The URL is checked again here and its host resolved once per attempt: a
    stored URL (or a DNS answer) that now points inside is never connected to.
    """
    for alert in alerts:
        webhook = webhooks.get(alert.org_slug)
        if webhook is None:
            alert.delivery_status = "no_webhook"
            continue
        secret = signing_secret(pepper, webhook)
        body = json.dumps(alert_payload(alert), sort_keys=True).encode()
        for attempt in range(1, max_attempts + 1):
            alert.delivery_attempts = attempt
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                DELIVERY_HEADER: alert.alert_id,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(secret, timestamp, body),
            }
            status: int | None = None
            try:
                target = parse_target(webhook.url, insecure_hosts=insecure_hosts)
                address = resolve_public(target, insecure_hosts=insecure_hosts)
            except OutboundRefused as refused:
                alert.delivery_status = "failed"
                logger.warning("webhook refused", extra={"org_slug": alert.org_slug, "reason": refused.message})
                break
            try:
                status = post_pinned(target, address, body, headers, timeout_seconds=timeout_seconds).status
            except (urllib3.exceptions.HTTPError, OSError):
                status = None
            if status is not None and 200 <= status < 300:
                alert.delivery_status, alert.delivered_at = "delivered", utc_now()
                break
            if status is not None and 300 <= status < 500 and status not in (408, 429):
                alert.delivery_status = "failed"  # refused or redirected: retrying will not help
                break
            alert.delivery_status = "failed"
            if attempt < max_attempts:
                time.sleep(random.uniform(0, backoff_base_seconds * 2 ** (attempt - 1)))
        if alert.delivery_status == "failed":
            logger.warning(
                "webhook delivery failed", extra={"org_slug": alert.org_slug, "attempts": alert.delivery_attempts}
            )
