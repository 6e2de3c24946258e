"""/api/v1/organizations/{org}/webhook — where an organization's alerts are delivered.

PUT ``{"url": "https://..."}`` sets (or replaces) the webhook and answers the
signing secret once; GET shows the URL; DELETE stops deliveries.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.models import Webhook, iso
from shared.inbound.http import ApiCall, endpoint

WEBHOOK_PATH = "/api/v1/organizations/<org_slug>/webhook"


def _info(webhook: Webhook) -> dict[str, Any]:
    return {"org_slug": webhook.org_slug, "url": webhook.url, "created_at": iso(webhook.created_at)}


@functions_framework.http
@endpoint("PUT", WEBHOOK_PATH)
def webhook_set(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(required=("url",))
    webhook, signing_secret = call.service.set_webhook(call.caller.org_slug, body["url"], call.caller)
    return 200, {"webhook": _info(webhook), "signing_secret": signing_secret}


@functions_framework.http
@endpoint("GET", WEBHOOK_PATH)
def webhook_get(call: ApiCall) -> tuple[int, dict[str, Any]]:
    return 200, {"webhook": _info(call.service.get_webhook(call.caller))}


@functions_framework.http
@endpoint("DELETE", WEBHOOK_PATH)
def webhook_delete(call: ApiCall) -> tuple[int, dict[str, Any]]:
    call.service.delete_webhook(call.caller)
    return 200, {"message": "Webhook removed"}
