"""/api/v1/subscriptions/{org}/providers — which SaaS tools the organization pays for.

GET lists the registry's SaaS catalog with the org's toggles (never touched =
``enabled: false``) and the status of each tool's API integration, if any.
PUT ``.../providers/{provider}`` with ``{"enabled": true|false}`` switches one
tool (idempotent, audited). Switching a tool off keeps its API integration and
encrypted credential; deleting the integration keeps the toggle.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint
from shared.usecases.subscriptions import list_subscription_providers, set_subscription_provider


@functions_framework.http
@endpoint("GET", "/api/v1/subscriptions/<org_slug>/providers")
def subscription_providers_list(call: ApiCall) -> tuple[int, dict[str, Any]]:
    providers = list_subscription_providers(call.service, call.caller)
    return 200, {"providers": providers, "count": len(providers)}


@functions_framework.http
@endpoint("PUT", "/api/v1/subscriptions/<org_slug>/providers/<provider>")
def subscription_provider_update(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(required=("enabled",))
    provider, message = set_subscription_provider(call.service, call.caller, call.provider or "", body["enabled"])
    return 200, {"provider": provider, "message": message}
