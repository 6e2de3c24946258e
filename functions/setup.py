"""POST /api/v1/integrations/{org}/{provider}/setup — store a new credential (status pending)."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.inputs import parse_timestamp
from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/<provider>/setup")
def integration_setup(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(required=("credentials",), optional=("config", "expires_at"))
    integration = call.service.setup(
        call.caller,
        call.provider or "",
        body["credentials"],
        body.get("config"),
        parse_timestamp(body.get("expires_at"), "expires_at"),
    )
    return 201, {
        "integration_id": integration.integration_id,
        "integration": integration.to_info(),
        "message": "Integration created; validate it to activate",
    }
