"""GET /api/v1/oauth/callback — where the provider sends the browser back after consent.

No X-API-Key: the single-use ``state`` (bound to the org and provider that
started the flow) is the proof. Exchanges the code, validates and stores the
tokens encrypted, then redirects to ``OAUTH_FRONTEND_URL`` with the outcome
(``oauth=connected|failed``, org, provider, status or code and message; never
a token). Without a frontend URL it answers the same outcome as JSON.
"""

from __future__ import annotations

import flask
import functions_framework

from shared.http import ApiCall, endpoint, oauth_callback_response


@functions_framework.http
@endpoint("GET", "/api/v1/oauth/callback", public=True)
def oauth_callback(call: ApiCall) -> flask.Response:
    arguments = {name: value for name in ("state", "code", "error") if (value := call.request.args.get(name))}
    outcome = call.service.complete_oauth(arguments, call.caller.request_id)
    return oauth_callback_response(outcome, call.service.adapters.settings.oauth_frontend_url, call.caller.request_id)
