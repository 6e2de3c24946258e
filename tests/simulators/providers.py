"""Local HTTP simulator of the provider APIs that the validators call.

Owns one threaded WSGI server on 127.0.0.1 that reproduces, under one path
prefix per provider, the request and response shapes written down in
``docs/providers.md``:

====================  ==========================================================
prefix                endpoints
====================  ==========================================================
``/openai``           ``GET /v1/models``, ``GET /v1/organization/costs``,
                      ``GET /v1/organization/usage/completions``
``/anthropic``        ``GET /v1/models``, ``GET /v1/organizations/cost_report``,
                      ``GET /v1/organizations/usage_report/messages``
``/gemini``           ``GET /v1beta/models`` (``/v1/models`` too)
``/google``           ``POST /token`` (OAuth2 JWT-bearer grant, as google-auth's
                      service-account credentials send it)
``/_sim``             control API: ``GET stats``, ``POST reset``,
                      ``GET|POST config``, ``POST revoke`` (``{"api_key": ...}``:
                      from now on that exact key is rejected as ``bad`` is, as
                      when someone revokes it in the provider's console)
====================  ==========================================================

A validator whose base URL is ``http://127.0.0.1:PORT/openai`` therefore asks
``http://127.0.0.1:PORT/openai/v1/models``.

What a request gets is decided by marker substrings inside the credential (the
API key, or the service account's ``client_email`` for the token endpoint), so
tests running in parallel never share state through the simulator. The only
per-key state is the request count behind ``flaky`` and ``flap`` and the keys
revoked through the control API, all keyed by the exact credential.

============== ================================================================
marker         answer
============== ================================================================
(none)         200 with the provider's list body and rate-limit headers
``bad``        invalid key (OpenAI 401 echoing a masked key, Anthropic 401,
               Gemini 400 ``API_KEY_INVALID``)
``forbidden``  403 permission error
``ratelimit``  429 with ``Retry-After: 1``
``down``       500 (token endpoint: 503)
``overloaded`` Anthropic 529 ``overloaded_error``; OpenAI/Gemini 503
``flaky``      first request seen for that exact key: 503 with
               ``Retry-After: 0``; later requests behave as without it
``flap``       503 / normal / 503 / normal ... per request for that key
``slow``       sleeps ``slow_seconds`` (default 3) before answering
``drip``       the answer's body arrives one byte per 0.5 s (its headers at once): a
               slow-drip server, which no per-read timeout stops
``revoked``    token endpoint only: 400 ``invalid_grant``
``orgread``    OpenAI/Anthropic: the organization (cost) endpoints accept the key
               although it has no admin prefix (models work too)
``costlimit``  OpenAI/Anthropic: only the organization (cost) endpoints answer 429
============== ================================================================

The token endpoint reads ``revoked``, ``down``, ``flaky`` and ``slow`` from the
assertion's ``iss``; the other markers mean nothing there.

Markers are matched case-sensitively and combine (``sk-admin-ratelimit-...``).
A request is decided in this order: Anthropic's ``anthropic-version`` header,
missing credential, ``slow`` (sleep), unrecognised prefix or ``bad``,
``ratelimit``, ``overloaded``, ``down``, ``flaky``/``flap``, ``forbidden``,
admin/standard key kind versus endpoint, query parameters, success. That is
authentication, then availability, then authorisation, as the real services do
it; it also means a ``flaky`` key spends its one failure on its first request
whichever endpoint that is.

Key kinds: OpenAI ``sk-admin-...`` keys serve only ``/v1/organization/*`` and
get 403 on ``/v1/models``; other ``sk-...`` keys get 403 on the organization
endpoints. Anthropic ``sk-ant-admin...`` keys serve only
``/v1/organizations/*``; other ``sk-ant-...`` keys get 403 there. A key without
its provider's prefix (``sk-``, ``sk-ant-``, ``AIza``) is treated as invalid.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.simulators._serving import ServedInThread, dripping

PROVIDER_IDS = ("openai", "anthropic", "gemini", "google")
"""Path prefixes served, one per provider family (``google`` = OAuth2 token endpoint)."""

DEFAULT_SLOW_SECONDS = 3.0
MAX_BODY_BYTES = 1024 * 1024

MARKER_BAD = "bad"
MARKER_FORBIDDEN = "forbidden"
MARKER_RATELIMIT = "ratelimit"
MARKER_DOWN = "down"
MARKER_OVERLOADED = "overloaded"
MARKER_FLAKY = "flaky"
MARKER_FLAP = "flap"
MARKER_SLOW = "slow"
MARKER_DRIP = "drip"
MARKER_REVOKED = "revoked"
MARKER_EXPIRING = "expiring"  # IAM: the service-account key expires in 5 days
MARKER_NO_IAM = "noiam"  # IAM: the account may not read its own key's metadata
# A key the provider lets read the organization endpoints although it is not an
# admin key (and so can also list models): validation must not judge by prefix.
MARKER_ORG_READ = "orgread"
# Only the organization (cost) endpoints answer 429: one check rate-limited.
MARKER_COSTS_RATELIMIT = "costlimit"

# Fault kinds a provider renders in its own error format.
FAULT_RATELIMIT = "ratelimit"
FAULT_OVERLOADED = "overloaded"
FAULT_DOWN = "down"
FAULT_UNAVAILABLE = "unavailable"

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

Route = Callable[[Request, str], Response]


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        headers=dict(headers or {}),
        mimetype="application/json",
    )


def _utc_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_to(unix_seconds: int, width_seconds: int) -> int:
    return unix_seconds - unix_seconds % width_seconds


class ParameterError(ValueError):
    """A query or form parameter is missing or malformed; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def _int_param(
    request: Request,
    name: str,
    *,
    default: int | None,
    low: int,
    high: int | None = None,
) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ParameterError(name, f"Missing query parameter '{name}'")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError(name, f"Invalid value for '{name}': expected an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ParameterError(name, f"Invalid value for '{name}': must be {bound}")
    return value


def _choice_param(request: Request, name: str, choices: Mapping[str, int], default: str) -> str:
    value = request.args.get(name) or default
    if value not in choices:
        allowed = ", ".join(sorted(choices))
        raise ParameterError(name, f"Invalid value for '{name}': expected one of {allowed}")
    return value


def _rfc3339_param(request: Request, name: str, *, required: bool) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        if required:
            raise ParameterError(name, f"{name}: Field required")
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ParameterError(name, f"{name}: Input should be a valid RFC 3339 datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SimulatorState:
    """Counters, per-key attempt counts and settings shared by all request threads."""

    def __init__(self, latency_ms: float = 0.0, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> None:
        self._lock = threading.Lock()
        self.latency_ms = float(latency_ms)
        self.slow_seconds = float(slow_seconds)
        self._requests = dict.fromkeys(PROVIDER_IDS, 0)
        self._in_flight = dict.fromkeys(PROVIDER_IDS, 0)
        self._max_concurrent = dict.fromkeys(PROVIDER_IDS, 0)
        self._attempts: dict[tuple[str, str], int] = {}
        self._revoked: set[str] = set()

    def enter(self, provider: str) -> None:
        with self._lock:
            self._requests[provider] += 1
            self._in_flight[provider] += 1
            self._max_concurrent[provider] = max(self._max_concurrent[provider], self._in_flight[provider])

    def leave(self, provider: str) -> None:
        with self._lock:
            self._in_flight[provider] -= 1

    def next_attempt(self, provider: str, credential: str) -> int:
        """Count one more request of ``credential`` at ``provider``; return the 1-based count."""
        with self._lock:
            attempt = self._attempts.get((provider, credential), 0) + 1
            self._attempts[(provider, credential)] = attempt
            return attempt

    def revoke(self, credential: str) -> None:
        with self._lock:
            self._revoked.add(credential)

    def is_revoked(self, credential: str) -> bool:
        with self._lock:
            return credential in self._revoked

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "requests": dict(self._requests),
                "max_concurrent": dict(self._max_concurrent),
                "in_flight": dict(self._in_flight),
            }

    def reset(self) -> None:
        """Clear counters, flaky/flap state and revocations; settings and live in-flight counts stay."""
        with self._lock:
            self._revoked.clear()
            self._requests = dict.fromkeys(PROVIDER_IDS, 0)
            # A request still running keeps counting towards the new peak.
            self._max_concurrent = dict(self._in_flight)
            self._attempts.clear()

    def config(self) -> dict[str, float]:
        with self._lock:
            return {"latency_ms": self.latency_ms, "slow_seconds": self.slow_seconds}

    def configure(self, latency_ms: float | None = None, slow_seconds: float | None = None) -> dict[str, float]:
        for name, value in (("latency_ms", latency_ms), ("slow_seconds", slow_seconds)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        with self._lock:
            if latency_ms is not None:
                self.latency_ms = float(latency_ms)
            if slow_seconds is not None:
                self.slow_seconds = float(slow_seconds)
            return {"latency_ms": self.latency_ms, "slow_seconds": self.slow_seconds}


class _Provider:
    """One provider family: its routes, credential extraction and error format."""

    provider_id = ""
    key_prefix = ""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    # Hooks every provider fills in -------------------------------------------------
    def routes(self) -> dict[str, Route]:
        raise NotImplementedError

    def credential(self, request: Request) -> str | None:
        raise NotImplementedError

    def missing_credential(self) -> Response:
        raise NotImplementedError

    def invalid_credential(self, credential: str) -> Response:
        raise NotImplementedError

    def fault(self, kind: str) -> Response:
        raise NotImplementedError

    def forbidden(self, message: str) -> Response:
        raise NotImplementedError

    def bad_request(self, error: ParameterError) -> Response:
        raise NotImplementedError

    def not_found(self, request: Request) -> Response:
        raise NotImplementedError

    def method_not_allowed(self, request: Request, allowed: str) -> Response:
        raise NotImplementedError

    def precheck(self, request: Request) -> Response | None:
        """A request-level rejection that comes before the credential is looked at."""
        return None

    # Shared decision path ------------------------------------------------------------
    def handle(self, request: Request, subpath: str) -> Response:
        response = self.decide(request, subpath)
        return dripping(response) if MARKER_DRIP in (self.credential(request) or "") else response

    def decide(self, request: Request, subpath: str) -> Response:
        route = self.routes().get(subpath.rstrip("/") or "/")
        if route is None:
            return self.not_found(request)
        if request.method not in ("GET", "HEAD"):
            return self.method_not_allowed(request, "GET")
        rejection = self.precheck(request)
        if rejection is not None:
            return rejection
        credential = self.credential(request)
        if not credential:
            return self.missing_credential()
        if MARKER_SLOW in credential:
            time.sleep(self.state.slow_seconds)
        if not credential.startswith(self.key_prefix) or MARKER_BAD in credential or self.state.is_revoked(credential):
            return self.invalid_credential(credential)
        fault = transient_fault(self.state, self.provider_id, credential)
        if fault is not None:
            return self.fault(fault)
        if MARKER_FORBIDDEN in credential:
            return self.forbidden(self.forbidden_message)
        try:
            return route(request, credential)
        except ParameterError as error:
            return self.bad_request(error)

    forbidden_message = "Permission denied."


def transient_fault(state: SimulatorState, provider: str, credential: str) -> str | None:
    """The availability fault the markers in ``credential`` ask for on this request, if any."""
    if MARKER_RATELIMIT in credential:
        return FAULT_RATELIMIT
    if MARKER_OVERLOADED in credential:
        return FAULT_OVERLOADED
    if MARKER_DOWN in credential:
        return FAULT_DOWN
    flaky = MARKER_FLAKY in credential
    flap = MARKER_FLAP in credential
    if flaky or flap:
        attempt = state.next_attempt(provider, credential)
        if (flaky and attempt == 1) or (flap and attempt % 2 == 1):
            return FAULT_UNAVAILABLE
    return None


# --------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------

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


class OpenAIProvider(_Provider):
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
        return _json(body, status, merged)

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
        return _json(
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
        start_time = _int_param(request, "start_time", default=None, low=0)
        end_time = request.args.get("end_time")
        if end_time:
            _int_param(request, "end_time", default=None, low=start_time + 1)
        width_name = _choice_param(request, "bucket_width", OPENAI_BUCKET_WIDTHS, "1d")
        if width_name not in limits:
            allowed = ", ".join(sorted(limits))
            raise ParameterError("bucket_width", f"Invalid value for 'bucket_width': {allowed}")
        default_limit, max_limit = limits[width_name]
        _int_param(request, "limit", default=default_limit, low=1, high=max_limit)
        width = OPENAI_BUCKET_WIDTHS[width_name]
        return _floor_to(start_time, width), width

    @staticmethod
    def _page(bucket_start: int, width: int, result: dict[str, Any]) -> Response:
        bucket = {
            "object": "bucket",
            "start_time": bucket_start,
            "end_time": bucket_start + width,
            "results": [result],
        }
        return _json({"object": "page", "data": [bucket], "has_more": False, "next_page": None})

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


# --------------------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------------------

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
    reset = _utc_rfc3339(datetime.now(UTC) + timedelta(seconds=1))
    return {
        "anthropic-ratelimit-requests-limit": "1000",
        "anthropic-ratelimit-requests-remaining": str(remaining_requests),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": "80000",
        "anthropic-ratelimit-tokens-remaining": "80000",
        "anthropic-ratelimit-tokens-reset": reset,
    }


class AnthropicProvider(_Provider):
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
        return _json(body, status, merged)

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
        limit = _int_param(request, "limit", default=20, low=1, high=1000)
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
        return _json(body, headers=_anthropic_rate_limit_headers(999))

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
        starting_at = _rfc3339_param(request, "starting_at", required=True)
        if starting_at is None:  # pragma: no cover - required=True raises instead
            raise ParameterError("starting_at", "starting_at: Field required")
        ending_at = _rfc3339_param(request, "ending_at", required=False)
        if ending_at is not None and ending_at <= starting_at:
            raise ParameterError("ending_at", "ending_at: must be after starting_at")
        width_name = _choice_param(request, "bucket_width", ANTHROPIC_BUCKET_WIDTHS, "1d")
        if width_name not in limits:
            allowed = ", ".join(sorted(limits))
            raise ParameterError("bucket_width", f"bucket_width: expected one of {allowed}")
        default_limit, max_limit = limits[width_name]
        _int_param(request, "limit", default=default_limit, low=1, high=max_limit)
        width = ANTHROPIC_BUCKET_WIDTHS[width_name]
        start = datetime.fromtimestamp(_floor_to(int(starting_at.timestamp()), width), UTC)
        return start, timedelta(seconds=width)

    @staticmethod
    def _report(start: datetime, width: timedelta, result: dict[str, Any]) -> Response:
        bucket = {
            "starting_at": _utc_rfc3339(start),
            "ending_at": _utc_rfc3339(start + width),
            "results": [result],
        }
        return _json({"data": [bucket], "has_more": False, "next_page": None})

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


# --------------------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------------------

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


class GeminiProvider(_Provider):
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
        return _json({"error": error}, code, headers)

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
        page_size = _int_param(request, "pageSize", default=50, low=1)
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
        return _json(body)


# --------------------------------------------------------------------------------------
# Google OAuth2 token endpoint (service-account JWT-bearer grant)
# --------------------------------------------------------------------------------------


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
        return _json(
            {"error": error, "error_description": description},
            status,
            {"Cache-Control": "no-store"},
        )

    def iam_key(self, request: Request, subpath: str) -> Response:
        """``GET /google/iam/v1/projects/-/serviceAccounts/{email}/keys/{key_id}`` (IAM keys.get)."""
        parts = subpath.split("/")
        # ['', 'iam', 'v1', 'projects', '-', 'serviceAccounts', email, 'keys', key_id]
        if len(parts) != 9 or parts[5] != "serviceAccounts" or parts[7] != "keys" or request.method != "GET":
            return _json({"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}, 404)
        if not request.headers.get("Authorization", "").startswith("Bearer sim-token-"):
            return _json({"error": {"code": 401, "message": "Unauthenticated", "status": "UNAUTHENTICATED"}}, 401)
        email, key_id = parts[6], parts[8]
        if MARKER_NO_IAM in email:
            return _json(
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
            valid_before = _utc_rfc3339(datetime.now(UTC) + timedelta(days=5))
        return _json(
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
            return _json(
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
        return _json(
            {
                "access_token": f"sim-token-{secrets.token_urlsafe(24)}",
                "expires_in": 3599,
                "token_type": "Bearer",
            },
            headers={"Cache-Control": "no-store"},
        )


# --------------------------------------------------------------------------------------
# WSGI application and server
# --------------------------------------------------------------------------------------


class SimulatorApp:
    """The WSGI application: dispatches by path prefix, counts, and applies latency."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.providers: dict[str, _Provider | GoogleTokenProvider] = {
            "openai": OpenAIProvider(state),
            "anthropic": AnthropicProvider(state),
            "gemini": GeminiProvider(state),
            "google": GoogleTokenProvider(state),
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        _, _, rest = request.path.partition("/")
        prefix, _, subpath = rest.partition("/")
        subpath = "/" + subpath
        if prefix == "_sim":
            return self.control(request, subpath)
        provider = self.providers.get(prefix)
        if provider is None:
            return _json(
                {
                    "error": {
                        "code": 404,
                        "message": f"No simulated provider at {request.path}; "
                        f"prefixes: {', '.join(PROVIDER_IDS)}, _sim",
                        "status": "NOT_FOUND",
                    }
                },
                404,
            )
        self.state.enter(prefix)
        try:
            latency = self.state.latency_ms
            if latency:
                time.sleep(latency / 1000)
            return provider.handle(request, subpath)
        finally:
            self.state.leave(prefix)

    def control(self, request: Request, subpath: str) -> Response:
        if subpath == "/stats" and request.method == "GET":
            return _json(self.state.stats())
        if subpath == "/reset" and request.method == "POST":
            self.state.reset()
            return _json({"ok": True})
        if subpath == "/revoke" and request.method == "POST":
            body = request.get_json(silent=True, force=True)  # `curl -d` sends no JSON content type
            api_key = body.get("api_key") if isinstance(body, dict) else None
            if not isinstance(api_key, str) or not api_key:
                return _json({"error": 'expected {"api_key": "<the key to revoke>"}'}, 400)
            self.state.revoke(api_key)
            return _json({"revoked": mask_openai_key(api_key)})
        if subpath == "/config" and request.method == "GET":
            return _json(self.state.config())
        if subpath == "/config" and request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return _json({"error": "expected a JSON object"}, 400)
            unknown = sorted(set(body) - {"latency_ms", "slow_seconds"})
            if unknown:
                return _json({"error": f"unknown settings: {', '.join(unknown)}"}, 400)
            try:
                return _json(self.state.configure(**body))
            except (TypeError, ValueError) as error:
                return _json({"error": str(error)}, 400)
        return _json({"error": f"no control endpoint {request.method} {request.path}"}, 404)


def create_app(latency_ms: float = 0.0, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> SimulatorApp:
    """A simulator WSGI app with fresh state (usable with ``werkzeug.test.Client``)."""
    return SimulatorApp(SimulatorState(latency_ms=latency_ms, slow_seconds=slow_seconds))


def _request_handler(
    connections: set[socket.socket], lock: threading.Lock, log_requests: bool
) -> type[WSGIRequestHandler]:
    """A handler class that records open connections so ``stop()`` can close idle keep-alives."""

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with lock:
                connections.add(self.connection)

        def finish(self) -> None:
            with lock:
                connections.discard(self.connection)
            super().finish()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if log_requests:
                super().log_request(code, size)

    return Handler


class ProviderSimulator(ServedInThread):
    """The simulator as a background server on 127.0.0.1.

    >>> with ProviderSimulator() as sim:            # doctest: +SKIP
    ...     requests.get(sim.base_url("openai") + "/v1/models",
    ...                  headers={"Authorization": "Bearer sk-proj-test"})
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        log_requests: bool = False,
    ) -> None:
        self._requested_port = port
        self._state = SimulatorState(latency_ms=latency_ms, slow_seconds=slow_seconds)
        self._state.configure(latency_ms=latency_ms, slow_seconds=slow_seconds)
        self._app = SimulatorApp(self._state)
        self._log_requests = log_requests
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # Lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        handler = _request_handler(self._connections, self._connections_lock, self._log_requests)
        # Threaded: one thread per connection, so latency and `slow` never serialise
        # clients; werkzeug listens with a backlog of 128, above the 64 we promise.
        server = make_server(
            self.host,
            self._requested_port,
            self._app,
            threaded=True,
            request_handler=handler,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"provider-simulator:{server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        # Idle keep-alive connections would otherwise go on being served after stop().
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    # Addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, provider_id: str) -> str:
        if provider_id not in PROVIDER_IDS:
            raise ValueError(f"unknown provider {provider_id!r}; known: {', '.join(PROVIDER_IDS)}")
        return f"{self.url}/{provider_id}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url('google')}/token"

    def env(self) -> dict[str, str]:
        """Settings (only names the service reads) that point the service at this simulator."""
        return {
            "PROVIDER_OPENAI_BASE_URL": self.base_url("openai"),
            "PROVIDER_ANTHROPIC_BASE_URL": self.base_url("anthropic"),
            "PROVIDER_GEMINI_BASE_URL": self.base_url("gemini"),
            "GCP_TOKEN_URI": self.token_uri,
        }

    # Control -------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        return self._state.stats()

    def reset(self) -> None:
        self._state.reset()

    def configure(self, *, latency_ms: float | None = None, slow_seconds: float | None = None) -> dict[str, float]:
        """Change settings; returns all settings now in force."""
        return self._state.configure(latency_ms=latency_ms, slow_seconds=slow_seconds)

    @property
    def config(self) -> dict[str, float]:
        return self._state.config()
