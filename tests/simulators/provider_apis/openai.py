"""OpenAI's API as the validators call it: models, organization costs and completion usage."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.simulators.provider_apis.common import (
    FAULT_DOWN,
    FAULT_OVERLOADED,
    FAULT_RATELIMIT,
    MARKER_COSTS_RATELIMIT,
    MARKER_ORG_READ,
    ParameterError,
    ProviderFake,
    Route,
    choice_param,
    floor_to,
    int_param,
    json_response,
)

OPENAI_MODELS = (
    {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
    {
        "id": "gpt-4o-mini",
        "object": "model",
        "created": 1721172741,
        "owned_by": "system",
    },
    {"id": "gpt-4.1", "object": "model", "created": 1744316542, "owned_by": "system"},
    {
        "id": "gpt-4.1-mini",
        "object": "model",
        "created": 1744318173,
        "owned_by": "system",
    },
)


OPENAI_RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-limit-tokens": "800000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-remaining-tokens": "799999",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-reset-tokens": "0s",
}


OPENAI_BUCKET_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}


# Largest `limit` each bucket width accepts on the usage endpoints (costs: 1d only, 180).
OPENAI_USAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def mask_openai_key(key: str) -> str:
    """How OpenAI echoes a rejected key: first 8 and last 4 characters, stars between.

    Keys of 12 characters or fewer are echoed whole, as the real service does.
    """
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


class OpenAIProvider(ProviderFake):
    provider_id = "openai"
    key_prefix = "sk-"
    forbidden_message = (
        "You have insufficient permissions for this operation. Missing scopes: api.model.read. "
        "Check that you have the correct role in your organization (Reader, Writer, Owner) and "
        "project (Member, Owner), and if you're using a restricted API key, that it has the "
        "necessary scopes."
    )

    def routes(self) -> dict[str, Route]:
        return {
            "/v1/models": self.models,
            "/v1/organization/costs": self.costs,
            "/v1/organization/usage/completions": self.usage_completions,
        }

    @staticmethod
    def is_admin(credential: str) -> bool:
        return credential.startswith("sk-admin-")

    def error(
        self,
        status: int,
        message: str,
        error_type: str,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body = {
            "error": {
                "message": message,
                "type": error_type,
                "param": param,
                "code": code,
            }
        }
        merged = {"x-request-id": f"req_{secrets.token_hex(16)}", **(headers or {})}
        return json_response(body, status, merged)

    def credential(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def missing_credential(self) -> Response:
        return self.error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
            "field (with blank username) if you're accessing the API from your browser and are "
            "prompted for a username and password. You can obtain an API key from "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
        )

    def invalid_credential(self, credential: str) -> Response:
        # The real service echoes part of the key; the validators must redact it.
        return self.error(
            401,
            f"Incorrect API key provided: {mask_openai_key(credential)}. You can find your API "
            "key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            code="invalid_api_key",
        )

    def fault(self, kind: str) -> Response:
        if kind == FAULT_RATELIMIT:
            headers = {
                **OPENAI_RATE_LIMIT_HEADERS,
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s",
                "Retry-After": "1",
            }
            return self.error(
                429,
                "Rate limit reached for requests in organization org-sim on requests per min "
                "(RPM): Limit 5000, Used 5000, Requested 1. Please try again in 1s.",
                "requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if kind == FAULT_DOWN:
            return self.error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
            )
        if kind == FAULT_OVERLOADED:
            return self.error(
                503,
                "The engine is currently overloaded, please try again later.",
                "server_error",
            )
        return self.error(
            503,
            "The server is temporarily unavailable, please try again later.",
            "server_error",
            headers={"Retry-After": "0"},
        )

    def forbidden(self, message: str) -> Response:
        return self.error(403, message, "invalid_request_error", code="insufficient_permissions")

    def bad_request(self, error: ParameterError) -> Response:
        return self.error(400, error.message, "invalid_request_error", param=error.param)

    def not_found(self, request: Request) -> Response:
        subpath = request.path.removeprefix("/openai")
        return self.error(404, f"Invalid URL ({request.method} {subpath})", "invalid_request_error")

    def method_not_allowed(self, request: Request, allowed: str) -> Response:
        return self.not_found(request)

    # Endpoints -----------------------------------------------------------------------
    def models(self, request: Request, credential: str) -> Response:
        if self.is_admin(credential):
            return self.forbidden(
                "This admin key cannot be used for this endpoint. Admin keys serve only the "
                "administration API (/v1/organization/*); use a project or user API key."
            )
        return json_response(
            {"object": "list", "data": [dict(model) for model in OPENAI_MODELS]},
            headers={
                "x-request-id": f"req_{secrets.token_hex(16)}",
                **OPENAI_RATE_LIMIT_HEADERS,
            },
        )

    def _organization_window(
        self, request: Request, credential: str, limits: Mapping[str, tuple[int, int]]
    ) -> tuple[int, int] | Response:
        """(bucket start, bucket width) of the one bucket answered, or a 403 for a non-admin key."""
        if MARKER_COSTS_RATELIMIT in credential:
            return self.fault(FAULT_RATELIMIT)
        if not self.is_admin(credential) and MARKER_ORG_READ not in credential:
            return self.forbidden(
                "You have insufficient permissions for this operation. Missing scopes: "
                "api.usage.read. The organization API requires an admin key (sk-admin-...) "
                "created by an organization owner."
            )
        start_time = int_param(request, "start_time", default=None, low=0)
        end_time = request.args.get("end_time")
        if end_time:
            int_param(request, "end_time", default=None, low=start_time + 1)
        width_name = choice_param(request, "bucket_width", OPENAI_BUCKET_WIDTHS, "1d")
        if width_name not in limits:
            allowed = ", ".join(sorted(limits))
            raise ParameterError("bucket_width", f"Invalid value for 'bucket_width': {allowed}")
        default_limit, max_limit = limits[width_name]
        int_param(request, "limit", default=default_limit, low=1, high=max_limit)
        width = OPENAI_BUCKET_WIDTHS[width_name]
        return floor_to(start_time, width), width

    @staticmethod
    def _page(bucket_start: int, width: int, result: dict[str, Any]) -> Response:
        bucket = {
            "object": "bucket",
            "start_time": bucket_start,
            "end_time": bucket_start + width,
            "results": [result],
        }
        return json_response({"object": "page", "data": [bucket], "has_more": False, "next_page": None})

    def costs(self, request: Request, credential: str) -> Response:
        window = self._organization_window(request, credential, {"1d": (7, 180)})
        if isinstance(window, Response):
            return window
        result = {
            "object": "organization.costs.result",
            "amount": {"value": 12.5, "currency": "usd"},
            "line_item": None,
            "project_id": None,
        }
        return self._page(*window, result)

    def usage_completions(self, request: Request, credential: str) -> Response:
        window = self._organization_window(request, credential, OPENAI_USAGE_LIMITS)
        if isinstance(window, Response):
            return window
        result = {
            "object": "organization.usage.completions.result",
            "input_tokens": 12000,
            "output_tokens": 3400,
            "input_cached_tokens": 2000,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": 42,
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": None,
            "batch": None,
        }
        return self._page(*window, result)
