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

Delivery retries on network errors, 408, 429 and 5xx (``shared.common.retries``);
a webhook that keeps failing marks its alerts ``failed`` and never fails the
revalidation run. Time and bytes are bounded: one alert's delivery, all its
attempts included, ends within ``WEBHOOK_TIMEOUT_SECONDS`` however slowly the
receiver answers (``shared.egress.http_client`` gives every connect and read only
the time left); at most ``ANSWER_BYTES`` of a receiver's answer are read; and
orgs are delivered to side by side, so one slow webhook delays no other org's
delivery.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.common.retries import RetryPolicy, attempt, retry_after_seconds
from shared.domain.models import Alert, Webhook, iso, utc_now
from shared.egress.guard import OutboundRefused, check_resolved, parse_target, resolve_public
from shared.egress.http_client import HttpClient, Response

logger = logging.getLogger("integrations.webhooks")

SIGNATURE_HEADER = "X-Integrations-Signature"
TIMESTAMP_HEADER = "X-Integrations-Timestamp"
DELIVERY_HEADER = "X-Integrations-Delivery"
DEFAULT_TOLERANCE_SECONDS = 300
# A receiver's answer matters by its status; this much of its body is read, the rest never is.
ANSWER_BYTES = 4 * 1024
# Orgs delivered to at once: as many slow webhooks as this before a healthy one waits.
DELIVERY_WORKERS = 8
BACKOFF_CAP_SECONDS = 8.0

# Deliveries connect to the address they checked (``connect_to``): the pool is keyed by it too.
DELIVERIES = HttpClient(pool_size=2)


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

    The URL must be canonical (see ``shared.egress.guard``) and its host must not
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

    ``timeout_seconds`` bounds one alert's delivery, all ``max_attempts`` included.
    Each org's alerts go in order; different orgs' go side by side (``DELIVERY_WORKERS``).
    The URL is checked again here and its host resolved once per attempt: a stored URL
    (or a DNS answer) that now points inside is never connected to.
    """
    by_org: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.org_slug in webhooks:
            by_org.setdefault(alert.org_slug, []).append(alert)
        else:
            alert.delivery_status = "no_webhook"
    policy = RetryPolicy(
        attempts=max_attempts,
        backoff_base_seconds=backoff_base_seconds,
        backoff_cap_seconds=BACKOFF_CAP_SECONDS,
        retry_after_cap_seconds=timeout_seconds,
    )

    def deliver_org(org_slug: str) -> None:
        for alert in by_org[org_slug]:
            _deliver_one(alert, webhooks[org_slug], pepper, policy, timeout_seconds, insecure_hosts)

    if len(by_org) <= 1:
        for org_slug in by_org:
            deliver_org(org_slug)
        return
    with ThreadPoolExecutor(max_workers=min(DELIVERY_WORKERS, len(by_org)), thread_name_prefix="webhook") as pool:
        # Each in a copy of this context: the request id stays on the workers' log lines.
        running = [pool.submit(contextvars.copy_context().run, deliver_org, org) for org in by_org]
        for future in running:
            future.result()


def _deliver_one(
    alert: Alert,
    webhook: Webhook,
    pepper: bytes,
    policy: RetryPolicy,
    timeout_seconds: float,
    insecure_hosts: tuple[str, ...],
) -> None:
    secret = signing_secret(pepper, webhook)
    body = json.dumps(alert_payload(alert), sort_keys=True).encode()
    deadline = time.monotonic() + timeout_seconds

    def send(number: int) -> Response:
        alert.delivery_attempts = number
        if time.monotonic() >= deadline:
            raise TimeoutError("the delivery's time is spent")
        target = parse_target(webhook.url, insecure_hosts=insecure_hosts)
        address = resolve_public(target, insecure_hosts=insecure_hosts)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: alert.alert_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        return DELIVERIES.request(
            "POST",
            target.request_url,
            data=body,
            headers=headers,
            timeout=timeout_seconds,
            deadline=deadline,
            max_body_bytes=ANSWER_BYTES,
            truncate_body=True,
            connect_to=address,
        )

    def worth_retrying(response: Response | None, error: Exception | None) -> bool:
        if error is not None:
            return isinstance(error, OSError)  # refused, reset, timed out; not OutboundRefused
        assert response is not None
        # 2xx: delivered. 3xx/4xx: refused or redirected, and retrying will not change that.
        return response.status_code >= 500 or response.status_code in (408, 429)

    tried = attempt(
        send,
        policy=policy,
        retryable=worth_retrying,
        deadline=deadline,
        retry_after=lambda response, _: retry_after_seconds(response.headers) if response is not None else None,
    )
    if tried.result is not None and 200 <= tried.result.status_code < 300:
        alert.delivery_status, alert.delivered_at = "delivered", utc_now()
        return
    alert.delivery_status = "failed"
    if isinstance(tried.error, OutboundRefused):
        logger.warning("webhook refused", extra={"org_slug": alert.org_slug, "reason": tried.error.message})
    elif tried.error is not None and not isinstance(tried.error, OSError):
        raise tried.error
    logger.warning("webhook delivery failed", extra={"org_slug": alert.org_slug, "attempts": alert.delivery_attempts})
