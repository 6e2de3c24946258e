"""GET /api/v1/integrations/{org} — every integration of the organization."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("GET", "/api/v1/integrations/<org_slug>")
def integration_list(call: ApiCall) -> tuple[int, dict[str, Any]]:
    integrations = call.service.list_integrations(call.caller)
    return 200, {"integrations": [integration.to_info() for integration in integrations], "count": len(integrations)}
