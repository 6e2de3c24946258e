"""GET /api/v1/integrations/{org}/{provider} — one integration.

The spec answers this path with an ``IntegrationInfo``, so its fields sit at the
top level (a client written from the spec reads ``status`` there); the same
object under ``integration`` keeps clients of the wrapped shape (the spec's
``getIntegrationStatus`` action) working too.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("GET", "/api/v1/integrations/<org_slug>/<provider>")
def integration_get(call: ApiCall) -> tuple[int, dict[str, Any]]:
    info = call.service.get(call.caller, call.provider or "").to_info()
    return 200, {**info, "integration": info}
