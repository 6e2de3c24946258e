"""POST /api/v1/integrations/{org}/import — connect up to 100 providers in one call.

Body: ``{items: [{provider, credentials, config?, expires_at?}], validate?, dry_run?}``.
Answers one result per item, in order, and a summary (``shared.jobs.bulk_import``).
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.errors import BadRequest
from shared.inbound.http import ApiCall, endpoint


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/import")
def integration_import(call: ApiCall) -> tuple[int, dict[str, Any]]:
    # Imported here: main.py loads every entry point, and only this one needs the worker pool.
    from shared.jobs.bulk_import import import_integrations

    body = call.json_body(
        required=("items",),
        optional=("validate", "dry_run"),
        max_bytes=call.service.adapters.settings.import_max_body_bytes,
    )
    for flag in ("validate", "dry_run"):
        if not isinstance(body.get(flag, False), bool):
            raise BadRequest(f"Field '{flag}' must be true or false")
    report = import_integrations(
        call.service,
        call.caller,
        body["items"],
        validate=body.get("validate", False),
        dry_run=body.get("dry_run", False),
    )
    return 200, report
