"""POST /api/v1/integrations/{org}/{provider}/oauth/start — begin connecting an OAuth provider.

Body (optional): ``{"config": {...}}``, applied when the flow completes.
Answers the provider's ``authorize_url`` (send the user's browser there), the
single-use ``state`` it carries and when that state expires.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.models import iso
from shared.inbound.http import ApiCall, endpoint
from shared.usecases import oauth_flow


@functions_framework.http
@endpoint("POST", "/api/v1/integrations/<org_slug>/<provider>/oauth/start")
def oauth_start(call: ApiCall) -> tuple[int, dict[str, Any]]:
    body = call.json_body(optional=("config",))
    flow = oauth_flow.start(call.service, call.caller, call.provider or "", body.get("config"))
    return 200, {
        "provider": flow.provider,
        "authorize_url": flow.authorize_url,
        "state": flow.state,
        "state_expires_at": iso(flow.expires_at),
        "code_challenge_method": flow.code_challenge_method,
        "message": "Send the user's browser to authorize_url; the provider returns it to the OAuth callback",
    }
