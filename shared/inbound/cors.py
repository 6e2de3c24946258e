"""CORS for a browser frontend that calls the API (function URLs, the gateway
or the local server) directly.

Only origins in ``CORS_ALLOWED_ORIGINS`` get CORS headers; with the default
(empty) list no response carries any, so browsers keep the same-origin rule.
The allowed origin is echoed (never ``*``: requests carry ``X-API-Key``), and
``Vary: Origin`` keeps caches from serving one origin's answer to another.
"""

from __future__ import annotations

from collections.abc import Iterable

import flask

# What the frontend sends: the org key, a JSON body, the acting user, a correlation id.
ALLOWED_REQUEST_HEADERS = ("X-API-Key", "Content-Type", "X-User-Id", "X-Request-Id")
EXPOSED_HEADERS = ("X-Request-Id",)
# Behind API Gateway a path's preflight reaches one of that path's functions,
# whichever: a function therefore allows every API method in a preflight (the
# real request still goes to the function that serves it, or gets a 405).
API_METHODS = ("GET", "POST", "PUT", "DELETE")
PREFLIGHT_MAX_AGE_SECONDS = 600


def allowed_origin(request: flask.Request, origins: tuple[str, ...]) -> str | None:
    origin = request.headers.get("Origin")
    if not origin or not origins:
        return None
    return origin if origin.rstrip("/") in origins else None


def apply_cors(
    response: flask.Response, request: flask.Request, origins: tuple[str, ...], methods: Iterable[str]
) -> flask.Response:
    """Add CORS headers to ``response`` when the request's Origin is allowed."""
    if origins:
        response.vary.add("Origin")
    origin = allowed_origin(request, origins)
    if origin is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted({*methods, "OPTIONS"}))
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_REQUEST_HEADERS)
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    return response
