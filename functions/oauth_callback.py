"""GET /api/v1/oauth/callback — where the provider sends the browser back after consent.

No X-API-Key: the single-use ``state`` (bound to the org and provider that
started the flow) is the proof that the flow exists, not that this browser is
the org's. So the callback stores no integration: it exchanges the code, keeps
the tokens encrypted against the flow and redirects to ``OAUTH_FRONTEND_URL``
with the outcome (``oauth=authorized`` with a one-time ``completion_code``, or
``oauth=failed`` with code and message; never a token). The org's frontend then
confirms with ``POST .../oauth/complete`` and the org's own key
(``functions/oauth_complete.py``). Without a frontend URL it answers the same
outcome as JSON.
"""

from __future__ import annotations

import flask
import functions_framework

from shared.inbound.http import ApiCall, endpoint, oauth_callback_response
from shared.usecases import oauth_flow


@functions_framework.http
@endpoint("GET", "/api/v1/oauth/callback", public=True)
def oauth_callback(call: ApiCall) -> flask.Response:
    arguments = {name: value for name in ("state", "code", "error") if (value := call.request.args.get(name))}
    outcome = oauth_flow.callback(call.service, arguments)
    return oauth_callback_response(outcome, call.service.adapters.settings.oauth_frontend_url, call.caller.request_id)
