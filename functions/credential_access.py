"""POST /api/v1/integrations/{org}/{provider}/access — a usable credential for a cost pipeline.

Body ``{"pipeline": "<one of the provider's pipelines>"}``. Internal: not on the
public gateway; in Google Cloud only the pipelines' service account may invoke
it, locally an admin key. An organization's own key gets 403. See
``shared.usecases.credential_access`` for what each kind of credential becomes.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.errors import ServiceError
from shared.inbound.http import ApiCall, endpoint
from shared.usecases.credential_access import access, audit_refusal, check_pipeline_caller


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/<provider>/access", admin=True)
def credential_access(call: ApiCall) -> tuple[int, dict[str, Any]]:
    org_slug, provider = call.org_slug or "", call.provider or ""
    try:
        check_pipeline_caller(call.caller, call.service.adapters.settings.pipelines_service_account)
        body = call.json_body(required=("pipeline",))
    except ServiceError as error:  # refused before ``access``: audited all the same
        audit_refusal(call.service, call.caller, org_slug, provider, error)
        raise
    answer = access(call.service, call.caller, org_slug, provider, body["pipeline"])
    return 200, answer.to_answer()
