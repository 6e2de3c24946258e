"""GET /api/v1/organizations/{org}/alerts — the organization's recent alerts and their delivery.

Query: ``limit`` (1-500, default 100), newest first.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.errors import BadRequest
from shared.http import ApiCall, endpoint


@functions_framework.http
@endpoint("GET", "/api/v1/organizations/<org_slug>/alerts")
def alerts_list(call: ApiCall) -> tuple[int, dict[str, Any]]:
    raw_limit = call.request.args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        raise BadRequest("Query parameter 'limit' must be a whole number from 1 to 500")
    alerts = call.service.list_alerts(call.caller, limit=int(raw_limit))
    return 200, {"alerts": [alert.to_info() for alert in alerts], "count": len(alerts)}
