"""Admin: the credential key and where the credentials sit on it (``shared.jobs.key_rotation``).

- GET  /api/v1/admin/keys         — primary version, credentials per version, share on primary
- POST /api/v1/admin/keys/rotate  — a new key version, made primary
- POST /api/v1/admin/keys/rewrap  — move credentials onto the primary; body ``{batch_size?, max_seconds?}``

Admin key (or, with ``REVALIDATE_AUTH=platform``, the platform-verified OIDC caller), like revalidation.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.errors import BadRequest
from shared.inbound.http import ApiCall, endpoint

# shared.jobs.key_rotation (and its worker pool) is imported inside each handler: main.py loads
# every entry point, so a module-level import would be paid by every function's cold start.


@functions_framework.http
@endpoint("GET", "/api/v1/admin/keys", admin=True)
def admin_keys(call: ApiCall) -> tuple[int, dict[str, Any]]:
    from shared.jobs.key_rotation import key_report

    return 200, {"keys": key_report(call.service)}


@functions_framework.http
@endpoint("POST", "/api/v1/admin/keys/rotate", admin=True)
def admin_key_rotate(call: ApiCall) -> tuple[int, dict[str, Any]]:
    from shared.jobs.key_rotation import key_report, rotate_key

    call.json_body()
    return 200, {"rotation": rotate_key(call.service, call.caller), "keys": key_report(call.service)}


@functions_framework.http
@endpoint("POST", "/api/v1/admin/keys/rewrap", admin=True)
def admin_key_rewrap(call: ApiCall) -> tuple[int, dict[str, Any]]:
    from shared.jobs.key_rotation import key_report, rewrap_all

    body = call.json_body(optional=("batch_size", "max_seconds"))
    for name in ("batch_size", "max_seconds"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise BadRequest(f"Field '{name}' must be a positive number")
    batch_size = body.get("batch_size")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size > 5000):
        raise BadRequest("Field 'batch_size' must be a whole number up to 5000")
    summary = rewrap_all(call.service, call.caller, batch_size=batch_size, max_seconds=body.get("max_seconds"))
    return 200, {"summary": summary, "keys": key_report(call.service)}
