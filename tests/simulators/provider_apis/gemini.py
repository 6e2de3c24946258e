"""Gemini's API as the validators call it: the model list."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.simulators.provider_apis.common import (
    FAULT_DOWN,
    FAULT_OVERLOADED,
    FAULT_RATELIMIT,
    ParameterError,
    ProviderFake,
    Route,
    int_param,
    json_response,
)

GEMINI_MODELS = (
    {
        "name": "models/gemini-2.5-pro",
        "version": "2.5",
        "displayName": "Gemini 2.5 Pro",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
        ],
    },
    {
        "name": "models/gemini-2.5-flash",
        "version": "001",
        "displayName": "Gemini 2.5 Flash",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
        ],
    },
    {
        "name": "models/gemini-2.0-flash",
        "version": "2.0",
        "displayName": "Gemini 2.0 Flash",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    },
    {
        "name": "models/gemini-embedding-001",
        "version": "001",
        "displayName": "Gemini Embedding 001",
        "inputTokenLimit": 2048,
        "outputTokenLimit": 1,
        "supportedGenerationMethods": ["embedContent", "countTextTokens"],
    },
)


GEMINI_SERVICE = "generativelanguage.googleapis.com"


class GeminiProvider(ProviderFake):
    provider_id = "gemini"
    key_prefix = "AIza"
    forbidden_message = (
        f"Requests to this API {GEMINI_SERVICE} method "
        "google.ai.generativelanguage.v1beta.ModelService.ListModels are blocked."
    )

    def routes(self) -> dict[str, Route]:
        return {"/v1beta/models": self.models, "/v1/models": self.models}

    def error(
        self,
        code: int,
        status: str,
        message: str,
        details: Iterable[dict[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        error: dict[str, Any] = {"code": code, "message": message, "status": status}
        if details:
            error["details"] = list(details)
        return json_response({"error": error}, code, headers)

    @staticmethod
    def error_info(reason: str, **metadata: str) -> dict[str, Any]:
        return {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": GEMINI_SERVICE, **metadata},
        }

    def credential(self, request: Request) -> str | None:
        header = request.headers.get("x-goog-api-key", "").strip()
        return header or request.args.get("key", "").strip() or None

    def missing_credential(self) -> Response:
        return self.error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )

    def invalid_credential(self, credential: str) -> Response:
        message = "API key not valid. Please pass a valid API key."
        details = [
            self.error_info("API_KEY_INVALID"),
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ]
        return self.error(400, "INVALID_ARGUMENT", message, details)

    def fault(self, kind: str) -> Response:
        if kind == FAULT_RATELIMIT:
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": f"{GEMINI_SERVICE}/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "1s",
                },
            ]
            return self.error(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                details,
                {"Retry-After": "1"},
            )
        if kind == FAULT_DOWN:
            return self.error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
            )
        if kind == FAULT_OVERLOADED:
            return self.error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        return self.error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            headers={"Retry-After": "0"},
        )

    def forbidden(self, message: str) -> Response:
        details = [
            self.error_info(
                "API_KEY_SERVICE_BLOCKED",
                methodName="google.ai.generativelanguage.v1beta.ModelService.ListModels",
            )
        ]
        return self.error(403, "PERMISSION_DENIED", message, details)

    def bad_request(self, error: ParameterError) -> Response:
        return self.error(400, "INVALID_ARGUMENT", error.message)

    def not_found(self, request: Request) -> Response:
        subpath = request.path.removeprefix("/gemini")
        return self.error(404, "NOT_FOUND", f"The requested URL {subpath} was not found.")

    def method_not_allowed(self, request: Request, allowed: str) -> Response:
        return self.not_found(request)

    def models(self, request: Request, credential: str) -> Response:
        page_size = int_param(request, "pageSize", default=50, low=1)
        page_size = min(page_size, 1000)
        offset = 0
        token = request.args.get("pageToken")
        if token:
            try:
                offset = int(base64.urlsafe_b64decode(token.encode()).decode())
            except (ValueError, binascii.Error):
                offset = -1
            if offset < 0:
                raise ParameterError("pageToken", "Invalid page token.")
        page = GEMINI_MODELS[offset : offset + page_size]
        body: dict[str, Any] = {"models": [dict(model) for model in page]}
        if offset + page_size < len(GEMINI_MODELS):
            next_offset = str(offset + page_size).encode()
            body["nextPageToken"] = base64.urlsafe_b64encode(next_offset).decode()
        return json_response(body)
