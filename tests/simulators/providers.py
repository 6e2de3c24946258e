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

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.simulators._serving import ServedInThread
from tests.simulators.provider_apis.anthropic import AnthropicProvider
from tests.simulators.provider_apis.common import (
    DEFAULT_SLOW_SECONDS,
    MAX_BODY_BYTES,
    PROVIDER_IDS,
    ProviderFake,
    SimulatorState,
    json_response,
)
from tests.simulators.provider_apis.gemini import GeminiProvider
from tests.simulators.provider_apis.google_token import GoogleTokenProvider
from tests.simulators.provider_apis.openai import OpenAIProvider, mask_openai_key


class SimulatorApp:
    """The WSGI application: dispatches by path prefix, counts, and applies latency."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.providers: dict[str, ProviderFake | GoogleTokenProvider] = {
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
            return json_response(
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
            return json_response(self.state.stats())
        if subpath == "/reset" and request.method == "POST":
            self.state.reset()
            return json_response({"ok": True})
        if subpath == "/revoke" and request.method == "POST":
            body = request.get_json(silent=True, force=True)  # `curl -d` sends no JSON content type
            api_key = body.get("api_key") if isinstance(body, dict) else None
            if not isinstance(api_key, str) or not api_key:
                return json_response({"error": 'expected {"api_key": "<the key to revoke>"}'}, 400)
            self.state.revoke(api_key)
            return json_response({"revoked": mask_openai_key(api_key)})
        if subpath == "/config" and request.method == "GET":
            return json_response(self.state.config())
        if subpath == "/config" and request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return json_response({"error": "expected a JSON object"}, 400)
            unknown = sorted(set(body) - {"latency_ms", "slow_seconds"})
            if unknown:
                return json_response({"error": f"unknown settings: {', '.join(unknown)}"}, 400)
            try:
                return json_response(self.state.configure(**body))
            except (TypeError, ValueError) as error:
                return json_response({"error": str(error)}, 400)
        return json_response({"error": f"no control endpoint {request.method} {request.path}"}, 404)


def create_app(latency_ms: float = 0.0, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> SimulatorApp:
    """A simulator WSGI app with fresh state (usable with ``werkzeug.test.Client``)."""
    return SimulatorApp(SimulatorState(latency_ms=latency_ms, slow_seconds=slow_seconds))


def request_handler(
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
        handler = request_handler(self._connections, self._connections_lock, self._log_requests)
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
