"""DELETE /api/v1/integrations/{org}/{provider} — remove the integration and its credential."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("DELETE", "/api/v1/integrations/<org_slug>/<provider>")
def integration_delete(call: ApiCall) -> tuple[int, dict[str, Any]]:
    call.service.delete(call.caller, call.provider or "")
    return 200, {"message": "Integration deleted", "provider": call.provider}
