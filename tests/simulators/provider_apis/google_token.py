"""Google's OAuth2 token endpoint, as google-auth's service-account credentials call it (JWT-bearer grant)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.simulators.provider_apis.common import (
    JWT_BEARER_GRANT,
    MARKER_DOWN,
    MARKER_EXPIRING,
    MARKER_FLAKY,
    MARKER_NO_IAM,
    MARKER_REVOKED,
    MARKER_SLOW,
    SimulatorState,
    json_response,
    utc_rfc3339,
)


def decode_jwt_claims(assertion: str) -> dict[str, Any]:
    """The payload of a compact JWS, **without verifying its signature**.

    Deliberate: tests sign assertions with throwaway RSA keys that no one
    registers, and the simulator only needs ``iss`` to pick a behaviour.
    """
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS (expected three dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    if not isinstance(claims, dict):
        raise TypeError("JWT payload is not a JSON object")
    return claims


class GoogleTokenProvider:
    """``POST /google/token``: issues access tokens for service-account assertions.

    Markers are read from the assertion's ``iss`` (the ``client_email``):
    ``revoked`` -> 400 ``invalid_grant``; ``down`` -> 503; ``flaky`` -> 503 on
    the first request for that email; ``slow`` -> sleeps ``slow_seconds``.
    """

    provider_id = "google"

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    @staticmethod
    def error(status: int, error: str, description: str) -> Response:
        return json_response(
            {"error": error, "error_description": description},
            status,
            {"Cache-Control": "no-store"},
        )

    def iam_key(self, request: Request, subpath: str) -> Response:
        """``GET /google/iam/v1/projects/-/serviceAccounts/{email}/keys/{key_id}`` (IAM keys.get)."""
        parts = subpath.split("/")
        # ['', 'iam', 'v1', 'projects', '-', 'serviceAccounts', email, 'keys', key_id]
        if len(parts) != 9 or parts[5] != "serviceAccounts" or parts[7] != "keys" or request.method != "GET":
            return json_response({"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}, 404)
        if not request.headers.get("Authorization", "").startswith("Bearer sim-token-"):
            return json_response(
                {"error": {"code": 401, "message": "Unauthenticated", "status": "UNAUTHENTICATED"}}, 401
            )
        email, key_id = parts[6], parts[8]
        if MARKER_NO_IAM in email:
            return json_response(
                {
                    "error": {
                        "code": 403,
                        "message": f"Permission 'iam.serviceAccountKeys.get' denied on resource {email}",
                        "status": "PERMISSION_DENIED",
                    }
                },
                403,
            )
        valid_before = "9999-12-31T23:59:59Z"
        if MARKER_EXPIRING in email:
            valid_before = utc_rfc3339(datetime.now(UTC) + timedelta(days=5))
        return json_response(
            {
                "name": f"projects/-/serviceAccounts/{email}/keys/{key_id}",
                "validAfterTime": "2026-01-01T00:00:00Z",
                "validBeforeTime": valid_before,
                "keyAlgorithm": "KEY_ALG_RSA_2048",
                "keyOrigin": "GOOGLE_PROVIDED",
                "keyType": "USER_MANAGED",
            }
        )

    def handle(self, request: Request, subpath: str) -> Response:
        if subpath.startswith("/iam/"):
            return self.iam_key(request, subpath)
        if subpath != "/token":
            return json_response(
                {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}},
                404,
            )
        if request.method != "POST":
            response = self.error(405, "invalid_request", "Use POST for the token endpoint.")
            response.headers["Allow"] = "POST"
            return response
        grant_type = request.form.get("grant_type", "")
        if grant_type != JWT_BEARER_GRANT:
            return self.error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        assertion = request.form.get("assertion", "")
        if not assertion:
            return self.error(400, "invalid_request", "Missing required parameter: assertion")
        try:
            claims = decode_jwt_claims(assertion)
        except (ValueError, TypeError):
            return self.error(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            return self.error(400, "invalid_grant", "Invalid JWT: iss claim is missing")
        if MARKER_SLOW in issuer:
            time.sleep(self.state.slow_seconds)
        if MARKER_REVOKED in issuer:
            return self.error(400, "invalid_grant", "Invalid JWT Signature.")
        if MARKER_DOWN in issuer or (MARKER_FLAKY in issuer and self.state.next_attempt(self.provider_id, issuer) == 1):
            return self.error(503, "temporarily_unavailable", "The service is currently unavailable.")
        return json_response(
            {
                "access_token": f"sim-token-{secrets.token_urlsafe(24)}",
                "expires_in": 3599,
                "token_type": "Bearer",
            },
            headers={"Cache-Control": "no-store"},
        )
