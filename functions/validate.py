"""POST /api/v1/integrations/{org}/{provider}/validate — check the stored credential with the provider."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/<provider>/validate")
def integration_validate(call: ApiCall) -> tuple[int, dict[str, Any]]:
    call.json_body()  # no fields, but reject a malformed or oversized body
    outcome = call.service.validate(call.caller, call.provider or "")
    payload: dict[str, Any] = {
        # The spec answers a rejected credential with 200 and status "error".
        "success": outcome.result.ok,
        "status": outcome.integration.status,
        "details": outcome.result.details,
        "integration": outcome.integration.to_info(),
    }
    if not outcome.result.ok:
        payload["error"] = outcome.result.message
    return 200, payload
