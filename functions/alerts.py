"""GET /api/v1/organizations/{org}/alerts — the organization's recent alerts and their delivery.

Query: ``limit`` (1-500, default 100), newest first.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("GET", "/api/v1/organizations/<org_slug>/alerts")
def alerts_list(call: ApiCall) -> tuple[int, dict[str, Any]]:
    limit = call.query_int("limit", default=100, low=1, high=500)
    alerts = call.service.list_alerts(call.caller, limit=limit)
    return 200, {"alerts": [alert.to_info() for alert in alerts], "count": len(alerts)}
