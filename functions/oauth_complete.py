"""POST /api/v1/integrations/{org}/{provider}/oauth/complete — the org confirms an authorized OAuth flow.

Body: ``{"completion_code": ...}``, the one-time code the callback answered
(in its redirect to the frontend, or its JSON). With the org's own key, and
only for a flow that org started for that provider, within
``OAUTH_STATE_TTL_MINUTES`` of the callback and once: the held tokens are
validated and stored as the integration's credential. Answers
``{success, oauth: "connected", integration, ...}``.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.inbound.http import ApiCall, endpoint, oauth_connected
from shared.usecases import oauth_flow


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/<provider>/oauth/complete")
def oauth_complete(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(required=("completion_code",))
    completed = oauth_flow.complete(call.service, call.caller, call.provider or "", body["completion_code"])
    return 200, oauth_connected(completed.integration)
