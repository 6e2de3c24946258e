"""HTTP plumbing shared by every Cloud Function: routing, auth, JSON in/out,
error mapping and the request id.

``endpoint`` turns a small operation ``(ApiCall) -> (status, payload)`` into
a Cloud Functions HTTP handler. All errors become JSON here, in one place:
``ServiceError`` subclasses carry their status and message; anything else is
logged by class name only (its text could hold a secret) and answered with a
generic 500.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import flask
from werkzeug.exceptions import MethodNotAllowed as RouteMethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, Rule

from shared.common import logs
from shared.common.jsonbody import loads_bounded
from shared.domain.caller import Caller
from shared.domain.errors import (
    BadRequest,
    ConfigurationError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unauthenticated,
)
from shared.domain.inputs import check_org_slug
from shared.domain.models import iso
from shared.inbound.cors import API_METHODS, apply_cors
from shared.usecases.integrations import IntegrationService

if TYPE_CHECKING:
    from shared.domain.models import Integration
    from shared.usecases.oauth_flow import AuthorizedFlow

logger = logging.getLogger("integrations.http")

REQUEST_ID_HEADER = "X-Request-Id"
USER_ID_HEADER = "X-User-Id"
# The frontend's user id (an auth provider's uid or an email): short and plain,
# because it lands in created_by columns, audit rows and logs.
USER_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+|-]{0,127}$")

# An operation answers (status, payload) as JSON, or a ready response (the OAuth callback's redirect).
Operation = Callable[["ApiCall"], "tuple[int, dict[str, Any]] | flask.Response"]

_service: IntegrationService | None = None
_service_lock = threading.Lock()


def get_service() -> IntegrationService:
    """The instance-wide service: settings read and adapters built once per warm instance."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                from shared.app.wiring import build_service

                _service = build_service()
    return _service


def use_service(service: IntegrationService | None) -> None:
    """Swap the instance-wide service (tests and the local server build their own)."""
    global _service
    _service = service


@dataclass
class ApiCall:
    """One authenticated request as a handler sees it: the request, the service, who called, which provider."""

    request: flask.Request
    service: IntegrationService
    caller: Caller
    provider: str | None
    # The path's organization: an org key's own (checked against it); an admin route's target.
    org_slug: str | None = None

    def json_body(
        self, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = (), max_bytes: int | None = None
    ) -> dict[str, Any]:
        """The body as a JSON object with exactly the allowed fields (at most ``max_bytes``, default the setting)."""
        limit = self.service.adapters.settings.max_body_bytes if max_bytes is None else max_bytes
        if self.request.content_length is not None and self.request.content_length > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        raw = self.request.stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        if not raw.strip():
            if required:
                raise BadRequest(f"Request body must be a JSON object with {', '.join(repr(f) for f in required)}")
            return {}
        body = loads_bounded(raw)
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        missing = [name for name in required if body.get(name) is None]
        if missing:
            raise BadRequest(f"Missing required field(s): {', '.join(missing)}")
        unknown = set(body) - set(required) - set(optional)
        if unknown:
            # Counted, not named: a field name is caller input, and a pasted secret must not come back.
            allowed = ", ".join(required + optional)
            raise BadRequest(f"Unknown field(s) in the request body ({len(unknown)}); allowed: {allowed}")
        return body

    def query_int(self, name: str, *, default: int, low: int, high: int) -> int:
        """An integer query parameter in [low, high]; ASCII digits only (``int`` takes other scripts' digits)."""
        raw = self.request.args.get(name)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
            raise BadRequest(f"Query parameter '{name}' must be a whole number from {low} to {high}")
        return int(raw)


def json_response(status: int, payload: dict[str, Any], request_id: str) -> flask.Response:
    response = flask.Response(json.dumps(payload, default=str), status=status, mimetype="application/json")
    response.headers[REQUEST_ID_HEADER] = request_id
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(error: ServiceError, request_id: str, *, status: int | None = None) -> flask.Response:
    payload: dict[str, Any] = {"success": False, "error": error.message, "code": error.code, "request_id": request_id}
    if error.details:
        payload["details"] = error.details
        payload.update({key: error.details[key] for key in error.top_level_details if key in error.details})
    response = json_response(status or error.status_code, payload, request_id)
    if isinstance(error, MethodNotAllowed) and error.allow:
        response.headers["Allow"] = ", ".join(error.allow)
    return response


def options_response(methods: tuple[str, ...], request_id: str) -> flask.Response:
    """OPTIONS (a CORS preflight, or a client asking): the path's methods, in JSON."""
    allow = tuple(sorted({*methods, "OPTIONS"}))
    response = json_response(200, {"success": True, "allow": list(allow)}, request_id)
    response.headers["Allow"] = ", ".join(allow)
    return response


def cors_origins() -> tuple[str, ...]:
    """The configured CORS allow-list; none when the service cannot be built (its error is answered anyway)."""
    try:
        return get_service().adapters.settings.cors_allowed_origins
    except (ConfigurationError, ServiceError):
        return ()


def _request_id(request: flask.Request) -> str:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    # Echo a caller's id only if it is short and plain; never trust it blindly into logs.
    if 0 < len(supplied) <= 64 and all(c.isalnum() or c in "-_." for c in supplied):
        return supplied
    return uuid.uuid4().hex


def acting_user(request: flask.Request) -> str | None:
    """The optional ``X-User-Id`` header, checked; None when absent."""
    supplied = request.headers.get(USER_ID_HEADER)
    if supplied is None:
        return None
    if not USER_ID_SHAPE.fullmatch(supplied):
        raise BadRequest(
            f"Header {USER_ID_HEADER} must be 1-128 characters of letters, digits and . _ @ : + | -,"
            " starting with a letter or digit"
        )
    return supplied


def platform_caller(request: flask.Request, request_id: str) -> Caller:
    """The caller of a function that only Cloud Scheduler may invoke.

    Cloud Run checked the OIDC token's signature and the invoker role before
    the request reached us; we read its ``email`` claim only to audit who it was.
    """
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or header.count(".") != 2:
        raise Unauthenticated("Missing OIDC bearer token")
    try:
        payload = header.split(".")[1]
        claims = loads_bounded(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)), what="Token")
        email = str(claims.get("email", "unknown"))[:128]
    except (ValueError, AttributeError, BadRequest):
        raise Unauthenticated("Malformed OIDC bearer token") from None
    return Caller(key_id=f"oidc:{email}", org_slug="*", is_admin=True, request_id=request_id)


def endpoint(
    method: str, rule: str, *, admin: bool = False, public: bool = False
) -> Callable[[Operation], Callable[[flask.Request], flask.Response]]:
    """Make ``operation`` a Cloud Functions handler for ``method rule``.

    ``<org_slug>`` and ``<provider>`` in ``rule`` are taken from the path.
    ``admin`` operations (revalidate) are not per organization: they take an
    admin key, or, with ``REVALIDATE_AUTH=platform`` (Cloud Scheduler), trust
    the OIDC token the platform verified before the request got here.
    ``public`` operations take no key at all and get an anonymous caller: the
    operation itself must prove who the request is for (the OAuth callback's
    single-use state does, and it is the only public one).
    """

    @functools.cache
    def url_map() -> Map:
        # Built on the first request, not at import: compiling a werkzeug rule costs ~0.3 ms, and
        # an instance imports entry points it never serves (a module's others; all, locally).
        # merge_slashes=False: werkzeug would answer "//" in a path with an HTML 308 to the merged path;
        # no route of ours has an empty segment, so such a path is simply not found (JSON 404).
        return Map([Rule(rule, endpoint="operation", methods=[method])], strict_slashes=False, merge_slashes=False)

    def decorate(operation: Operation) -> Callable[[flask.Request], flask.Response]:
        @functools.wraps(operation)
        def handler(request: flask.Request) -> flask.Response:
            request_id = _request_id(request)
            with logs.request_context(request_id, request.headers):
                response = _respond(request, request_id)
            return apply_cors(response, request, cors_origins(), API_METHODS)

        def _respond(request: flask.Request, request_id: str) -> flask.Response:
            if request.method == "OPTIONS":
                if not _path_matches(request.path):
                    return error_response(NotFound(f"No such path: {request.path[:200]}"), request_id)
                return options_response((method,), request_id)
            try:
                answer = _dispatch(request, request_id)
            except ServiceError as error:
                logger.info("request rejected", extra={"status": error.status_code, "code": error.code})
                return error_response(error, request_id)
            except Exception as error:  # noqa: BLE001 - the one place that turns surprises into a 500
                # Where it happened, not what it said: exception text can quote request data.
                frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(error.__traceback__)]
                logger.error(
                    "unhandled %s in %s",
                    error.__class__.__name__,
                    operation.__name__,
                    extra={"frames": frames[-8:]},
                )
                return error_response(
                    ServiceError("Internal error; the request id identifies it in the logs"), request_id
                )
            if isinstance(answer, flask.Response):
                answer.headers[REQUEST_ID_HEADER] = request_id
                answer.headers["Cache-Control"] = "no-store"
                logger.info("request handled", extra={"status": answer.status_code})
                return answer
            status, payload = answer
            logger.info("request handled", extra={"status": status})
            return json_response(status, {"success": True, **payload}, request_id)

        def _path_matches(path: str) -> bool:
            return bool(url_map().bind("").allowed_methods(path))

        def _dispatch(request: flask.Request, request_id: str) -> tuple[int, dict[str, Any]] | flask.Response:
            try:
                _, arguments = url_map().bind("").match(request.path, method=request.method)
            except RouteMethodNotAllowed:
                raise MethodNotAllowed(
                    f"{request.method[:16]} is not allowed here; use {method}", allow=(method, "OPTIONS")
                ) from None
            except RouteNotFound:
                raise NotFound(f"No such path: {request.path[:200]}") from None
            org_slug = arguments.get("org_slug", "")
            if public:
                anonymous = Caller(key_id="anonymous", org_slug="*", is_admin=False, request_id=request_id)
                return operation(ApiCall(request, get_service(), anonymous, arguments.get("provider")))
            if not admin:
                check_org_slug(org_slug)
            service = get_service()
            api_key = request.headers.get("X-API-Key")
            if admin:
                # Admin operations (revalidation, key rotation, rewrap, credential access) reach beyond the store (KMS,
                # providers): their key is confirmed before they start, at one lookup per AUTH_CACHE_SECONDS.
                if service.adapters.settings.revalidate_auth == "platform":
                    caller = platform_caller(request, request_id)
                else:
                    caller = service.authenticate(api_key, org_slug, request_id, admin=True)
                return _call(operation, request, service, caller, arguments)
            # An org key is confirmed by the operation's first store job: no round trip of its own.
            with service.authenticated(api_key, org_slug, request_id) as caller:
                return _call(operation, request, service, caller, arguments)

        handler.route = (method, rule)  # type: ignore[attr-defined]
        return handler

    return decorate


def _call(
    operation: Operation,
    request: flask.Request,
    service: IntegrationService,
    caller: Caller,
    arguments: Mapping[str, Any],
) -> tuple[int, dict[str, Any]] | flask.Response:
    user_id = acting_user(request)
    if user_id is not None:
        caller = caller._replace(user_id=user_id)
    # An operation may answer success: false with a 200 (a validation
    # that found the credential bad): its payload's "success" wins.
    return operation(ApiCall(request, service, caller, arguments.get("provider"), arguments.get("org_slug")))


def oauth_callback_response(outcome: AuthorizedFlow, frontend_url: str | None, request_id: str) -> flask.Response:
    """The callback's answer: a redirect to the frontend with the outcome, or JSON without one.

    On success the outcome is ``oauth=authorized`` with the one-time
    ``completion_code``, which the org's frontend sends, with the org's own
    key, to ``POST .../oauth/complete``: nothing is stored before that. Never
    a token: only the org, provider, code and our own message go in the URL (a
    URL ends up in browser history, proxies and referrers; the code is
    single-use, short-lived and useless without the org's key).
    """
    if outcome.error is None and outcome.completion_code is not None and outcome.org_slug and outcome.provider:
        complete_path = f"/api/v1/integrations/{outcome.org_slug}/{outcome.provider}/oauth/complete"
        status, payload = (
            200,
            {
                "success": True,
                "oauth": "authorized",
                "org_slug": outcome.org_slug,
                "provider": outcome.provider,
                "completion_code": outcome.completion_code,
                "completion_expires_at": iso(outcome.completion_expires_at),
                "message": (
                    f"Authorized; nothing is stored until the organization confirms: POST {complete_path}"
                    ' with {"completion_code": ...} and its API key'
                ),
            },
        )
        query = {
            "oauth": "authorized",
            "org": outcome.org_slug,
            "provider": outcome.provider,
            "completion_code": outcome.completion_code,
        }
    else:
        error = outcome.error or ServiceError("The OAuth callback did not complete")
        status, payload = (
            error.status_code,
            {
                "success": False,
                "oauth": "failed",
                "error": error.message,
                "code": error.code,
                "request_id": request_id,
            },
        )
        query = {"oauth": "failed", "code": error.code, "message": error.message}
        for key, value in (("org", outcome.org_slug), ("provider", outcome.provider)):
            if value:
                payload[{"org": "org_slug"}.get(key, key)] = value
                query[key] = value
    if not frontend_url:
        return json_response(status, payload, request_id)
    separator = "&" if "?" in frontend_url else "?"
    response = flask.Response(status=302, headers={"Location": frontend_url + separator + urlencode(query)})
    # The frontend URL must not learn the callback's URL (it carries the code) through Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def oauth_connected(integration: Integration) -> dict[str, Any]:
    """The answer of a completed OAuth connection (what the callback answered before completion existed)."""
    return {
        "oauth": "connected",
        "org_slug": integration.org_slug,
        "provider": integration.provider,
        "status": integration.status,
        "integration": integration.to_info(),
        "message": f"Connected; integration is {integration.status}",
    }
