"""Local simulator of OAuth providers: consent, token endpoint and one API call each.

Owns one threaded WSGI server on 127.0.0.1, one path prefix per provider:

===============  ============================================================================
prefix           endpoints
===============  ============================================================================
``/canva``       ``GET /oauth/authorize``, ``POST /oauth/token`` (client id and secret as
                 HTTP Basic), ``GET /rest/v1/users/me``. Refresh tokens are reusable.
``/github_app``  ``GET /login/oauth/authorize``, ``POST /login/oauth/access_token`` (client
                 id and secret in the form; errors come back with HTTP 200 and an ``error``
                 field, and the answer is form-encoded unless ``Accept: application/json``,
                 as GitHub does), ``GET /user``. Refresh tokens rotate: each works once, and
                 presenting a spent one revokes every token of its family.
``/_sim``        ``GET stats``, ``POST reset``, ``POST config``, ``POST revoke``
===============  ============================================================================

The consent page consents at once: it redirects to ``redirect_uri`` with a
``code`` and the ``state`` (or ``error=access_denied`` when ``consent`` is
``deny``). Codes are single use, live 60 s and are bound to the client, the
redirect URI and the PKCE challenge (S256 is checked at the token endpoint).

Modes (``POST /_sim/config`` or ``configure()``): ``access_token_seconds`` (the
``expires_in`` of new access tokens), ``token_delay_seconds`` (slow token
endpoint), ``token_drip_seconds`` (the token answer, decided at once, arrives
one byte per that many seconds: a slow-drip endpoint), ``token_status`` (e.g. 503: the token endpoint fails, 5xx mode),
``consent`` (``allow`` | ``deny``). ``revoke(provider)`` revokes every refresh
token of a provider, so its next refresh gets ``invalid_grant``.

``stats()["token_calls"][provider][grant]`` counts token-endpoint calls per
grant type (``authorization_code``, ``refresh_token``), so tests can assert
exactly one refresh per expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import unquote, urlencode

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.simulators._serving import ServedInThread, dripping, print_exports, serve_until_stopped
from tests.simulators.providers import request_handler


@dataclass(frozen=True)
class SimulatedProvider:
    provider_id: str
    authorize_path: str
    token_path: str
    api_path: str
    client_id: str
    client_secret: str
    basic_auth: bool  # client authentication: HTTP Basic, else form fields
    rotating: bool
    github_errors: bool  # errors with HTTP 200 (GitHub's token endpoint does this)
    default_lifetime: int
    api_body: dict[str, Any]


PROVIDERS = {
    "canva": SimulatedProvider(
        "canva",
        "/oauth/authorize",
        "/oauth/token",
        "/rest/v1/users/me",
        "sim-canva-client",
        "sim-canva-client-secret-0123456789",
        basic_auth=True,
        rotating=False,
        github_errors=False,
        default_lifetime=14400,
        api_body={"team_user": {"user_id": "oUnPjZ2k2yuhftbWF7873o", "team_id": "oBpVhLW22VrqtwKgaayRbP"}},
    ),
    "github_app": SimulatedProvider(
        "github_app",
        "/login/oauth/authorize",
        "/login/oauth/access_token",
        "/user",
        "Iv1.simgithubclient",
        "sim-github-client-secret-0123456789",
        basic_auth=False,
        rotating=True,
        github_errors=True,
        default_lifetime=28800,
        api_body={"login": "octocat", "id": 583231, "type": "User"},
    ),
}
GRANT_ERRORS_GITHUB = {"authorization_code": "bad_verification_code", "refresh_token": "bad_refresh_token"}
CODE_LIFETIME_SECONDS = 60
GITHUB_REFRESH_TOKEN_SECONDS = 15897600  # about six months


@dataclass
class _Code:
    provider: str
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str | None
    scope: str
    expires: float
    used: bool = False


@dataclass
class _RefreshToken:
    provider: str
    family: str
    used: bool = False
    revoked: bool = False


@dataclass
class OAuthState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    codes: dict[str, _Code] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    refresh_tokens: dict[str, _RefreshToken] = field(default_factory=dict)
    revoked_families: set[str] = field(default_factory=set)
    token_calls: dict[str, dict[str, int]] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def reset(self) -> None:
        with self.lock:
            self.codes.clear()
            self.access_tokens.clear()
            self.refresh_tokens.clear()
            self.revoked_families.clear()
            self.token_calls = {p: {"authorization_code": 0, "refresh_token": 0} for p in PROVIDERS}
            self.api_calls = dict.fromkeys(PROVIDERS, 0)
            self.settings = {
                "access_token_seconds": None,
                "token_delay_seconds": 0.0,
                "token_drip_seconds": 0.0,
                "token_status": None,
            }
            self.settings["consent"] = "allow"


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers={"Cache-Control": "no-store"})


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OAuthSimulatorApp:
    def __init__(self, state: OAuthState) -> None:
        self.state = state
        state.reset()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request.max_content_length = 64 * 1024
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        _, _, rest = request.path.partition("/")
        prefix, _, subpath = rest.partition("/")
        subpath = "/" + subpath
        if prefix == "_sim":
            return self.control(request, subpath)
        provider = PROVIDERS.get(prefix)
        if provider is None:
            return _json({"error": f"no simulated OAuth provider at {request.path}"}, 404)
        if subpath == provider.authorize_path and request.method == "GET":
            return self.authorize(provider, request)
        if subpath == provider.token_path and request.method == "POST":
            return self.token(provider, request)
        if subpath == provider.api_path and request.method == "GET":
            return self.api(provider, request)
        return _json({"error": f"no route {request.method} {request.path}"}, 404)

    # --- consent -------------------------------------------------------------------------
    def authorize(self, provider: SimulatedProvider, request: Request) -> Response:
        args = request.args
        redirect_uri, state = args.get("redirect_uri", ""), args.get("state", "")
        if args.get("client_id") != provider.client_id or not redirect_uri.startswith(("http://", "https://")):
            # RFC 6749 4.1.2.1: never redirect to an unverified redirect URI.
            return _json({"error": "invalid_request", "error_description": "unknown client or redirect_uri"}, 400)
        if args.get("response_type") != "code" or not state:
            return self._redirect(redirect_uri, {"error": "invalid_request", "state": state})
        method = args.get("code_challenge_method")
        challenge = args.get("code_challenge")
        if challenge is not None and method != "S256":
            return self._redirect(redirect_uri, {"error": "invalid_request", "state": state})
        if self.state.settings["consent"] == "deny":
            return self._redirect(redirect_uri, {"error": "access_denied", "state": state})
        code = "simcode_" + secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.codes[code] = _Code(
                provider.provider_id,
                provider.client_id,
                redirect_uri,
                challenge,
                method,
                args.get("scope", ""),
                time.monotonic() + CODE_LIFETIME_SECONDS,
            )
        return self._redirect(redirect_uri, {"code": code, "state": state})

    @staticmethod
    def _redirect(redirect_uri: str, query: dict[str, str]) -> Response:
        separator = "&" if "?" in redirect_uri else "?"
        return Response(status=302, headers={"Location": redirect_uri + separator + urlencode(query)})

    # --- token endpoint ------------------------------------------------------------------
    def token(self, provider: SimulatedProvider, request: Request) -> Response:
        response = self._token(provider, request)
        with self.state.lock:
            drip = float(self.state.settings["token_drip_seconds"] or 0)
        # Decided (and a rotating refresh token spent) before the first byte goes out, as a real endpoint does.
        return dripping(response, drip) if drip else response

    def _token(self, provider: SimulatedProvider, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type", "")
        with self.state.lock:
            calls = self.state.token_calls[provider.provider_id]
            calls[grant] = calls.get(grant, 0) + 1
            delay = float(self.state.settings["token_delay_seconds"] or 0)
            forced_status = self.state.settings["token_status"]
        if delay:
            time.sleep(delay)
        if forced_status:
            return _json({"error": "temporarily_unavailable"}, int(forced_status))
        if not self._client_ok(provider, request):
            return self._error(provider, "invalid_client", 401)
        if grant == "authorization_code":
            return self._code_grant(provider, request)
        if grant == "refresh_token":
            return self._refresh_grant(provider, request)
        return self._error(provider, "unsupported_grant_type", 400)

    @staticmethod
    def _client_ok(provider: SimulatedProvider, request: Request) -> bool:
        if provider.basic_auth:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            try:
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (unquote(client_id), unquote(secret)) == (provider.client_id, provider.client_secret)
        return (request.form.get("client_id"), request.form.get("client_secret")) == (
            provider.client_id,
            provider.client_secret,
        )

    def _error(self, provider: SimulatedProvider, error: str, status: int, grant: str | None = None) -> Response:
        if provider.github_errors:
            if error == "invalid_grant" and grant:
                error = GRANT_ERRORS_GITHUB[grant]
            return _json({"error": error, "error_description": "The request was refused."}, 200)
        return _json({"error": error, "error_description": "The request was refused."}, status)

    def _code_grant(self, provider: SimulatedProvider, request: Request) -> Response:
        form = request.form
        code = form.get("code", "")
        with self.state.lock:
            issued = self.state.codes.get(code)
            valid = (
                issued is not None
                and not issued.used
                and issued.provider == provider.provider_id
                and issued.expires > time.monotonic()
                and issued.redirect_uri == form.get("redirect_uri")
                and (issued.challenge is None or _s256(form.get("code_verifier", "")) == issued.challenge)
            )
            if issued is not None:
                issued.used = True  # a code is spent by any attempt, right or wrong
            if not valid or issued is None:
                return self._error(provider, "invalid_grant", 400, "authorization_code")
            return self._issue(provider, request, family=secrets.token_hex(8), scope=issued.scope)

    def _refresh_grant(self, provider: SimulatedProvider, request: Request) -> Response:
        presented = request.form.get("refresh_token", "")
        with self.state.lock:
            token = self.state.refresh_tokens.get(presented)
            if token is None or token.provider != provider.provider_id or token.revoked:
                return self._error(provider, "invalid_grant", 400, "refresh_token")
            if token.family in self.state.revoked_families:
                return self._error(provider, "invalid_grant", 400, "refresh_token")
            if provider.rotating:
                if token.used:
                    # Reuse of a spent rotating token: the whole family is revoked.
                    self.state.revoked_families.add(token.family)
                    return self._error(provider, "invalid_grant", 400, "refresh_token")
                token.used = True
                return self._issue(provider, request, family=token.family, scope="")
            return self._issue(provider, request, family=token.family, scope="", reuse_refresh=presented)

    def _issue(
        self,
        provider: SimulatedProvider,
        request: Request,
        *,
        family: str,
        scope: str,
        reuse_refresh: str | None = None,
    ) -> Response:
        """New tokens (the caller holds the lock)."""
        lifetime = int(self.state.settings["access_token_seconds"] or provider.default_lifetime)
        access = f"sim_at_{provider.provider_id}_" + secrets.token_urlsafe(24)
        refresh = reuse_refresh or f"sim_rt_{provider.provider_id}_" + secrets.token_urlsafe(24)
        self.state.access_tokens[access] = (provider.provider_id, time.time() + lifetime)
        if reuse_refresh is None:
            self.state.refresh_tokens[refresh] = _RefreshToken(provider.provider_id, family)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": scope,
        }
        if provider.rotating:
            body["refresh_token_expires_in"] = GITHUB_REFRESH_TOKEN_SECONDS
        if provider.github_errors and "application/json" not in request.headers.get("Accept", ""):
            return Response(urlencode(body), mimetype="application/x-www-form-urlencoded")
        return _json(body)

    # --- the provider's API --------------------------------------------------------------
    def api(self, provider: SimulatedProvider, request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.state.lock:
            self.state.api_calls[provider.provider_id] += 1
            issued = self.state.access_tokens.get(token)
        if issued is None or issued[0] != provider.provider_id or issued[1] <= time.time():
            return _json({"message": "Bad credentials"}, 401)
        return _json(provider.api_body)

    # --- control -------------------------------------------------------------------------
    def control(self, request: Request, subpath: str) -> Response:
        if subpath == "/stats" and request.method == "GET":
            return _json(self.stats())
        if subpath == "/reset" and request.method == "POST":
            self.state.reset()
            return _json({"ok": True})
        if subpath == "/config" and request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or set(body) - set(self.state.settings):
                return _json({"error": f"expected an object with keys among {sorted(self.state.settings)}"}, 400)
            with self.state.lock:
                self.state.settings.update(body)
                return _json(dict(self.state.settings))
        if subpath == "/revoke" and request.method == "POST":
            body = request.get_json(silent=True) or {}
            self.revoke(str(body.get("provider", "")))
            return _json({"ok": True})
        return _json({"error": f"no control endpoint {request.method} {request.path}"}, 404)

    def stats(self) -> dict[str, Any]:
        with self.state.lock:
            return {
                "token_calls": {p: dict(calls) for p, calls in self.state.token_calls.items()},
                "api_calls": dict(self.state.api_calls),
            }

    def revoke(self, provider_id: str) -> None:
        with self.state.lock:
            for token in self.state.refresh_tokens.values():
                if token.provider == provider_id:
                    token.revoked = True


class OAuthSimulator(ServedInThread):
    """The simulator as a background server on 127.0.0.1 (``with OAuthSimulator() as sim: ...``)."""

    host = "127.0.0.1"

    def __init__(self, port: int = 0, *, log_requests: bool = False) -> None:
        self._requested_port = port
        self.app = OAuthSimulatorApp(OAuthState())
        self._log_requests = log_requests
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def start(self) -> Self:
        handler = request_handler(self._connections, self._connections_lock, self._log_requests)
        self._server = make_server(self.host, self._requested_port, self.app, threaded=True, request_handler=handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="oauth-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"http://{self.host}:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        """Settings that point the service at this simulator, with the simulator's client ids and secrets."""
        values = {}
        for provider in PROVIDERS.values():
            name = provider.provider_id.upper()
            base = f"{self.url}/{provider.provider_id}"
            values[f"PROVIDER_{name}_BASE_URL"] = base
            values[f"PROVIDER_{name}_AUTHORIZE_URL"] = base + provider.authorize_path
            values[f"PROVIDER_{name}_TOKEN_URL"] = base + provider.token_path
            values[f"INTEGRATIONS_SECRET_OAUTH_{name}_CLIENT_ID"] = provider.client_id
            values[f"INTEGRATIONS_SECRET_OAUTH_{name}_CLIENT_SECRET"] = provider.client_secret
        return values

    def stats(self) -> dict[str, Any]:
        return self.app.stats()

    def reset(self) -> None:
        self.app.state.reset()

    def configure(self, **settings: Any) -> None:
        unknown = set(settings) - set(self.app.state.settings)
        if unknown:
            raise ValueError(f"unknown simulator settings: {sorted(unknown)}")
        with self.app.state.lock:
            self.app.state.settings.update(settings)

    def revoke(self, provider_id: str) -> None:
        self.app.revoke(provider_id)

    def refresh_calls(self, provider_id: str) -> int:
        return self.stats()["token_calls"][provider_id]["refresh_token"]


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.simulators.oauth``: serve in the foreground, print the exports.

    ``make demo`` runs this simulator for the OAuth walkthrough (docs/walkthroughs/oauth.md; tests/demo.py).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.simulators.oauth", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument(
        "--access-token-seconds", type=int, help="expires_in of new access tokens (default: provider's)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    with OAuthSimulator(args.port, log_requests=not args.quiet) as simulator:
        if args.access_token_seconds:
            simulator.configure(access_token_seconds=args.access_token_seconds)
        print_exports(f"# OAuth simulator on {simulator.url} (Ctrl-C to stop)", simulator.env())
        serve_until_stopped()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
