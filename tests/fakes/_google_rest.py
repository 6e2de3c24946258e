"""Shared plumbing for the loopback stand-ins of Google Cloud REST APIs.

Owns what every fake needs and nothing service-specific: a threaded Werkzeug
server on ``127.0.0.1`` (free port), routing by regular expression on the
path, Google's JSON error shape, proto3-JSON helpers (base64 bytes, int64 as
strings, enums as names or numbers) and fault injection for tests.

Wire details reproduced from the generated ``google-cloud-*`` REST transports:

- every request carries ``$alt=json;enum-encoding=int`` in the query string;
  the client then sends enums as numbers and expects numbers back (it accepts
  names too). Responses here follow the caller's choice.
- request bodies are proto3 JSON with lowerCamelCase names (``plaintextCrc32c``);
  snake_case is accepted as proto3 JSON parsers do.
- errors are ``{"error": {"code": <http>, "message": ..., "status": <NAME>}}``;
  ``google.api_core.exceptions.from_http_response`` maps the HTTP code to an
  exception class (400 -> ``BadRequest``, 403 -> ``PermissionDenied``,
  404 -> ``NotFound``, 503 -> ``ServiceUnavailable``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

UINT32_MASK = 0xFFFFFFFF


class ApiError(Exception):
    """An error response in Google's JSON shape."""

    def __init__(self, http_code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.message = message
        self.status = status or HTTP_STATUS_NAMES.get(http_code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.http_code, "message": self.message, "status": self.status}}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, message, "FAILED_PRECONDITION")


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "NOT_FOUND")


def already_exists(message: str) -> ApiError:
    return ApiError(409, message, "ALREADY_EXISTS")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_field(body: Mapping[str, Any], camel: str) -> Any:
    """A field by its lowerCamelCase JSON name, or by its proto (snake_case) name."""
    if camel in body:
        return body[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return body.get(snake)


def bytes_field(body: Mapping[str, Any], camel: str, *, required: bool = False) -> bytes:
    """Decode a proto3-JSON ``bytes`` field (standard or URL-safe base64)."""
    value = json_field(body, camel)
    if value is None:
        if required:
            raise invalid_argument(f"Missing required field {camel}.")
        return b""
    if not isinstance(value, str):
        raise invalid_argument(f"Invalid value at '{camel}' (TYPE_BYTES), expected a base64 string.")
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_argument(f"Invalid value at '{camel}' (TYPE_BYTES), Base64 decoding failed.") from exc


def int64_field(body: Mapping[str, Any], camel: str) -> int | None:
    """Decode an ``Int64Value``/``int64`` field: a JSON string (or number); None when absent."""
    value = json_field(body, camel)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise invalid_argument(f"Invalid value at '{camel}' (TYPE_INT64), {value!r}.") from exc


def int64_json(value: int) -> str:
    """proto3 JSON writes 64-bit integers as strings."""
    return str(value)


@dataclass(frozen=True)
class Route:
    http_method: str
    pattern: re.Pattern[str]
    rpc: str  # the client method's name, e.g. "encrypt"; key of ``calls``
    handler: Callable[..., dict[str, Any]]


@dataclass
class RecordedRequest:
    rpc: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """A WSGI app (``_wsgi``) served on 127.0.0.1 from a daemon thread; ``with`` starts and stops it."""

    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.server_port


class FakeGoogleRestServer(LoopbackServer):
    """Base of the fakes: lifecycle, routing, errors, fault injection.

    Subclasses fill ``ENUMS`` (field name -> {enum name: number}) and return
    their routes from ``routes()``. Handlers take ``(match, body, query)`` and
    return a JSON-ready dict whose enum fields hold names; ``ApiError`` becomes
    an error response.

    Test controls (thread-safe):

    - ``calls``: ``Counter`` of requests per RPC, counted when a request reaches
      its route, including requests answered with an injected failure (so
      client-side retries are visible);
    - ``requests``: every request body as received, for asserting wire shapes;
    - ``fail_next(n, status=503)``: the next ``n`` requests (optionally of one
      RPC) get that HTTP error;
    - ``permission_denied = True``: every RPC answers 403 until reset;
    - ``delay_next(seconds)``: the next request sleeps before answering;
    - ``required_bearer``: a callable giving the one access token accepted;
      when set, a request without ``Authorization: Bearer <that token>`` gets
      401 UNAUTHENTICATED, as Google's APIs answer a missing or stale token;
      ``authorizations`` records every request's Authorization header;
    - ``reset_faults()``: clears all of the above except stored resources.
    """

    ENUMS: Mapping[str, Mapping[str, int]] = {}
    PERMISSIONS: Mapping[str, str] = {}  # rpc -> IAM permission named in 403 messages

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._routes = self.routes()
        self.calls: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self.permission_denied = False
        self.required_bearer: Callable[[], str] | None = None
        self.authorizations: list[str | None] = []
        self._failures: deque[tuple[int, str | None, str]] = deque()
        self._delays: deque[float] = deque()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, the value for ``client_options={"api_endpoint": ...}``."""
        return f"http://127.0.0.1:{self.port}"

    # --- fault injection -------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, *, rpc: str | None = None, message: str | None = None) -> None:
        """Answer the next ``n`` requests (of ``rpc`` only, when given) with HTTP ``status``."""
        text = message or ("The service is currently unavailable." if status == 503 else f"Injected failure {status}.")
        with self._lock:
            self._failures.extend([(status, rpc, text)] * n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        with self._lock:
            self._delays.extend([seconds] * n)

    def reset_faults(self) -> None:
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self.permission_denied = False
            self.required_bearer = None
            self._reset_extra_faults()

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self.authorizations.clear()

    def _reset_extra_faults(self) -> None:
        """Subclasses clear their own injected faults here."""

    def _take_failure(self, rpc: str) -> tuple[int, str] | None:
        with self._lock:
            for index, (status, only_rpc, text) in enumerate(self._failures):
                if only_rpc is None or only_rpc == rpc:
                    del self._failures[index]
                    return status, text
        return None

    # --- subclass API ----------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def route(self, http_method: str, pattern: str, rpc: str, handler: Callable[..., dict[str, Any]]) -> Route:
        return Route(http_method.upper(), re.compile(pattern), rpc, handler)

    def enum_name(self, field: str, value: Any) -> str:
        """Accept an enum as its name or its number (the REST client sends numbers)."""
        table = self.ENUMS[field]
        if isinstance(value, int):
            for name, number in table.items():
                if number == value:
                    return name
        elif isinstance(value, str) and value in table:
            return value
        raise invalid_argument(f"Invalid value at '{field}', {value!r}.")

    # --- WSGI --------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        numeric_enums = "enum-encoding=int" in request.args.get("$alt", "")
        try:
            payload = self._dispatch(request)
            status = 200
        except ApiError as error:
            payload, status = error.body(), error.http_code
        if numeric_enums:
            payload = self._encode_enums(payload)
        response = Response(json.dumps(payload), status=status, content_type="application/json; charset=UTF-8")
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> dict[str, Any]:
        authorization = request.headers.get("Authorization")
        with self._lock:
            self.authorizations.append(authorization)
        if self.required_bearer is not None and authorization != f"Bearer {self.required_bearer()}":
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        for route in self._routes:
            if route.http_method != request.method:
                continue
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            body = self._parse_body(request)
            with self._lock:
                self.calls[route.rpc] += 1
                self.requests.append(RecordedRequest(route.rpc, request.path, dict(request.args), body))
                delay = self._delays.popleft() if self._delays else 0.0
            if delay:
                time.sleep(delay)
            failure = self._take_failure(route.rpc)
            if failure is not None:
                raise ApiError(*failure)
            if self.permission_denied:
                permission = self.PERMISSIONS.get(route.rpc, route.rpc)
                resource = next((value for value in match.groupdict().values() if value), request.path)
                raise ApiError(403, f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")
            return route.handler(match, body, request.args)
        raise not_found(f"The requested URL {request.path} was not found on this server.")

    @staticmethod
    def _parse_body(request: Request) -> dict[str, Any]:
        raw = request.get_data()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise invalid_argument("Invalid JSON payload received.") from exc
        if not isinstance(body, dict):
            raise invalid_argument("Invalid JSON payload received. Expected an object.")
        return body

    def _encode_enums(self, payload: Any) -> Any:
        if isinstance(payload, dict):
            encoded = {}
            for key, value in payload.items():
                if key in self.ENUMS and isinstance(value, str):
                    encoded[key] = self.ENUMS[key].get(value, 0)
                else:
                    encoded[key] = self._encode_enums(value)
            return encoded
        if isinstance(payload, list):
            return [self._encode_enums(item) for item in payload]
        return payload
