"""POST /api/v1/integrations/{org}/{provider}/rotate — replace the credential after validating the new one."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.inputs import parse_timestamp
from shared.domain.models import iso
from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/<provider>/rotate")
def integration_rotate(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(required=("new_credentials",), optional=("expires_at",))
    outcome = call.service.rotate(
        call.caller, call.provider or "", body["new_credentials"], parse_timestamp(body.get("expires_at"), "expires_at")
    )
    expires_at = iso(outcome.integration.expires_at)
    if expires_at is None:
        expiry = "no expires_at"
    elif body.get("expires_at") is None:
        expiry = f"expires_at kept from the previous credential: {expires_at} (send expires_at to change it)"
    else:
        expiry = f"expires_at now {expires_at}"
    return 200, {
        "integration": outcome.integration.to_info(),
        "details": outcome.result.details,
        "message": f"Credential replaced and validated; {expiry}",
    }
