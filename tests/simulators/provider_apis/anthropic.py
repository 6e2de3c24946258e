"""Anthropic's API as the validators call it: models, the cost report and message usage."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
    rfc3339_param,
    utc_rfc3339,
)

ANTHROPIC_VERSIONS = ("2023-06-01", "2023-01-01")


ANTHROPIC_MODELS = (
    {
        "type": "model",
        "id": "claude-sonnet-4-5-20250929",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-opus-4-1-20250805",
        "display_name": "Claude Opus 4.1",
        "created_at": "2025-08-05T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-3-5-haiku-20241022",
        "display_name": "Claude Haiku 3.5",
        "created_at": "2024-10-22T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-3-haiku-20240307",
        "display_name": "Claude Haiku 3",
        "created_at": "2024-03-07T00:00:00Z",
    },
)


ANTHROPIC_BUCKET_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}


ANTHROPIC_USAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def _anthropic_rate_limit_headers(remaining_requests: int) -> dict[str, str]:
    reset = utc_rfc3339(datetime.now(UTC) + timedelta(seconds=1))
    return {
        "anthropic-ratelimit-requests-limit": "1000",
        "anthropic-ratelimit-requests-remaining": str(remaining_requests),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": "80000",
        "anthropic-ratelimit-tokens-remaining": "80000",
        "anthropic-ratelimit-tokens-reset": reset,
    }


class AnthropicProvider(ProviderFake):
    provider_id = "anthropic"
    key_prefix = "sk-ant-"
    forbidden_message = "Your API key does not have permission to use the specified resource."

    def routes(self) -> dict[str, Route]:
        return {
            "/v1/models": self.models,
            "/v1/organizations/cost_report": self.cost_report,
            "/v1/organizations/usage_report/messages": self.usage_report_messages,
        }

    @staticmethod
    def is_admin(credential: str) -> bool:
        return credential.startswith("sk-ant-admin")

    def error(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        merged = {"request-id": f"req_sim{secrets.token_hex(12)}", **(headers or {})}
        return json_response(body, status, merged)

    def precheck(self, request: Request) -> Response | None:
        version = request.headers.get("anthropic-version")
        if not version:
            return self.error(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in ANTHROPIC_VERSIONS:
            return self.error(
                400,
                "invalid_request_error",
                f"anthropic-version: invalid version {version!r}",
            )
        return None

    def credential(self, request: Request) -> str | None:
        return request.headers.get("x-api-key", "").strip() or None

    def missing_credential(self) -> Response:
        return self.error(401, "authentication_error", "x-api-key header is required")

    def invalid_credential(self, credential: str) -> Response:
        return self.error(401, "authentication_error", "invalid x-api-key")

    def fault(self, kind: str) -> Response:
        if kind == FAULT_RATELIMIT:
            headers = {**_anthropic_rate_limit_headers(0), "retry-after": "1"}
            return self.error(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 1,000 "
                "requests per minute. Please retry after the time in the retry-after header.",
                headers,
            )
        if kind == FAULT_OVERLOADED:
            return self.error(529, "overloaded_error", "Overloaded")
        if kind == FAULT_DOWN:
            return self.error(500, "api_error", "Internal server error")
        return self.error(503, "api_error", "Service unavailable", {"retry-after": "0"})

    def forbidden(self, message: str) -> Response:
        return self.error(403, "permission_error", message)

    def bad_request(self, error: ParameterError) -> Response:
        return self.error(400, "invalid_request_error", error.message)

    def not_found(self, request: Request) -> Response:
        return self.error(404, "not_found_error", "Not found")

    def method_not_allowed(self, request: Request, allowed: str) -> Response:
        response = self.error(405, "invalid_request_error", f"Method {request.method} not allowed")
        response.headers["Allow"] = allowed
        return response

    # Endpoints -----------------------------------------------------------------------
    def models(self, request: Request, credential: str) -> Response:
        if self.is_admin(credential):
            return self.forbidden(
                "Admin API keys cannot be used for this endpoint; use a standard API key (sk-ant-api03-...)."
            )
        limit = int_param(request, "limit", default=20, low=1, high=1000)
        ids = [model["id"] for model in ANTHROPIC_MODELS]
        models = list(ANTHROPIC_MODELS)
        after_id, before_id = (
            request.args.get("after_id"),
            request.args.get("before_id"),
        )
        for name, cursor in (("after_id", after_id), ("before_id", before_id)):
            if cursor and cursor not in ids:
                raise ParameterError(name, f"{name}: no model with id {cursor!r}")
        if after_id:
            models = models[ids.index(after_id) + 1 :]
        if before_id:
            models = models[: ids.index(before_id)]
            page = models[-limit:]
        else:
            page = models[:limit]
        body = {
            "data": [dict(model) for model in page],
            "has_more": len(models) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
        return json_response(body, headers=_anthropic_rate_limit_headers(999))

    def _report_window(
        self, request: Request, credential: str, limits: Mapping[str, tuple[int, int]]
    ) -> tuple[datetime, timedelta] | Response:
        if MARKER_COSTS_RATELIMIT in credential:
            return self.fault(FAULT_RATELIMIT)
        if not self.is_admin(credential) and MARKER_ORG_READ not in credential:
            return self.forbidden(
                "This endpoint requires an Admin API key (sk-ant-admin01-...); standard API "
                "keys cannot read organization reports."
            )
        starting_at = rfc3339_param(request, "starting_at", required=True)
        if starting_at is None:  # pragma: no cover - required=True raises instead
            raise ParameterError("starting_at", "starting_at: Field required")
        ending_at = rfc3339_param(request, "ending_at", required=False)
        if ending_at is not None and ending_at <= starting_at:
            raise ParameterError("ending_at", "ending_at: must be after starting_at")
        width_name = choice_param(request, "bucket_width", ANTHROPIC_BUCKET_WIDTHS, "1d")
        if width_name not in limits:
            allowed = ", ".join(sorted(limits))
            raise ParameterError("bucket_width", f"bucket_width: expected one of {allowed}")
        default_limit, max_limit = limits[width_name]
        int_param(request, "limit", default=default_limit, low=1, high=max_limit)
        width = ANTHROPIC_BUCKET_WIDTHS[width_name]
        start = datetime.fromtimestamp(floor_to(int(starting_at.timestamp()), width), UTC)
        return start, timedelta(seconds=width)

    @staticmethod
    def _report(start: datetime, width: timedelta, result: dict[str, Any]) -> Response:
        bucket = {
            "starting_at": utc_rfc3339(start),
            "ending_at": utc_rfc3339(start + width),
            "results": [result],
        }
        return json_response({"data": [bucket], "has_more": False, "next_page": None})

    def cost_report(self, request: Request, credential: str) -> Response:
        window = self._report_window(request, credential, {"1d": (7, 31)})
        if isinstance(window, Response):
            return window
        # Amounts are decimal strings in the currency's lowest unit (cents), as documented.
        result = {
            "currency": "USD",
            "amount": "1250.50",
            "workspace_id": None,
            "description": None,
            "cost_type": None,
            "context_window": None,
            "model": None,
            "service_tier": None,
            "token_type": None,
        }
        return self._report(*window, result)

    def usage_report_messages(self, request: Request, credential: str) -> Response:
        window = self._report_window(request, credential, ANTHROPIC_USAGE_LIMITS)
        if isinstance(window, Response):
            return window
        result = {
            "uncached_input_tokens": 12000,
            "cache_creation": {
                "ephemeral_1h_input_tokens": 0,
                "ephemeral_5m_input_tokens": 0,
            },
            "cache_read_input_tokens": 2000,
            "output_tokens": 3400,
            "server_tool_use": {"web_search_requests": 0},
            "api_key_id": None,
            "workspace_id": None,
            "model": None,
            "service_tier": None,
            "context_window": None,
        }
        return self._report(*window, result)
