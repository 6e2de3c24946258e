"""GET /api/v1/integrations/{org}/{provider} — one integration."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.http import ApiCall, endpoint


@functions_framework.http
@endpoint("GET", "/api/v1/integrations/<org_slug>/<provider>")
def integration_get(call: ApiCall) -> tuple[int, dict[str, Any]]:
    return 200, {"integration": call.service.get(call.caller, call.provider or "").to_info()}
