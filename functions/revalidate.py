"""POST /api/v1/admin/revalidate — revalidate every integration (Cloud Scheduler).

Body (optional): ``{"max_seconds": <number>}`` to shorten the time box.
Answers a summary: checked, active, error, expired, skipped, alerts, read, pages, more
(true when integrations are left for the next run), duration_seconds.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.errors import BadRequest
from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("POST", "/api/v1/admin/revalidate", admin=True)
def integration_revalidate(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(optional=("max_seconds",))
    max_seconds = body.get("max_seconds")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float)):
        raise BadRequest("Field 'max_seconds' must be a number")
    if max_seconds is not None and not 0 < max_seconds <= 3600:
        raise BadRequest("Field 'max_seconds' must be a number of seconds from 0 (exclusive) to 3600")
    # Imported here: main.py loads every entry point, and only this one needs the worker pool.
    from shared.jobs.revalidation import revalidate_all

    return 200, {"summary": revalidate_all(call.service, call.caller, max_seconds=max_seconds)}
