"""PUT /api/v1/integrations/{org}/{provider} — change config, expiry, or disable/enable.

Body: ``{"config"?: {...}, "enabled"?: bool, "expires_at"?: ISO-8601 | null}``.
``enabled: false`` disables the integration (revalidation skips it);
``enabled: true`` re-enables it as ``pending`` until validated again.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.errors import BadRequest
from shared.domain.inputs import parse_timestamp
from shared.domain.models import SettingsChange
from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("PUT", "/api/v1/integrations/<org_slug>/<provider>")
def integration_update(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(optional=("config", "enabled", "expires_at"))
    if not body:
        raise BadRequest("Request body must set at least one of 'config', 'enabled', 'expires_at'")
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise BadRequest("Field 'enabled' must be true or false")
    change = SettingsChange(
        config=body.get("config"),
        enabled=enabled,
        expires_at=parse_timestamp(body.get("expires_at"), "expires_at"),
        clear_expires_at="expires_at" in body and body["expires_at"] is None,
    )
    if "config" in body and not isinstance(body["config"], dict):
        raise BadRequest("Field 'config' must be an object")
    integration = call.service.update(call.caller, call.provider or "", change)
    return 200, {"integration": integration.to_info()}
