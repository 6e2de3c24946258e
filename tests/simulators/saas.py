"""Local HTTP simulator of the SaaS admin APIs the SaaS validators call.

One threaded WSGI server on 127.0.0.1, one path prefix per tool, reproducing
the request and response shapes of ``docs/providers.md`` ("SaaS tools"):

===========  ====================================================================
prefix       endpoints (the only ones served)
===========  ====================================================================
``/github``  ``GET /user``, ``GET /orgs/{org}/copilot/billing``
``/slack``   ``POST|GET /api/auth.test``, ``GET /api/team.billing.info``,
             ``GET /api/users.list`` (always HTTP 200 with ``ok``, but 429)
``/cursor``  ``GET /teams/members`` (Admin API key as the HTTP Basic user name)
``/vercel``  ``GET /v2/user``, ``GET /v1/billing/charges?from&to[&teamId]`` (JSONL)
``/figma``   ``GET /v1/me`` (``X-Figma-Token`` or Bearer)
``/notion``  ``GET /v1/users/me``, ``GET /v1/users`` (``Notion-Version`` required)
``/asana``   ``GET /api/1.0/users/me``, ``GET /api/1.0/users?workspace=&limit=``
``/_sim``    ``GET forbidden_calls``, ``GET stats``, ``POST reset``
===========  ====================================================================

Anything else - a paid or mutating call (``chat.postMessage``, Cursor's
``POST /teams/spend``, a seat change), an unknown path or another method - is
answered 405 and recorded in ``forbidden_calls``; tests assert that list
stays empty, so a validator that strays from its free reads fails its test.

Markers inside the token decide the answer (tests never share state):

=================  ==============================================================
marker             answer
=================  ==============================================================
(none)             the tool's success body
``bad``            the tool's invalid-token answer (GitHub/Cursor/Notion/Asana 401,
                   Slack 200 ``invalid_auth``, Vercel 403 ``invalidToken``,
                   Figma 403 ``Invalid token``)
``forbidden``      the who-am-I call works; the seat/spend read is refused as a
                   missing scope (Figma: ``/v1/me`` itself lacks its scope)
``ratelimit``      throttled: 429 with ``Retry-After: 1`` (GitHub: 403 "API rate
                   limit exceeded" with ``x-ratelimit-remaining: 0``)
``down``           503 (Slack too: its outages are real statuses)
``oddanswer``      Slack only: 200 ``{"ok": false, "error": "fatal_error"}``
=================  ==============================================================
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.simulators._serving import ServedInThread, print_exports, serve_until_stopped

SAAS_PROVIDER_IDS = ("github", "slack", "cursor", "vercel", "figma", "notion", "asana")

MARKER_BAD = "bad"
MARKER_FORBIDDEN = "forbidden"
MARKER_RATELIMIT = "ratelimit"
MARKER_DOWN = "down"
MARKER_ODD = "oddanswer"

GITHUB_API_VERSIONS = ("2022-11-28",)
NOTION_VERSIONS = ("2022-06-28", "2025-09-03")
ASANA_WORKSPACE = "1200000000000001"

Handler = Callable[[Request, str, "re.Match[str]"], Response]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[len("Bearer ") :] if header.startswith("Bearer ") else None


class _Tool:
    """One SaaS tool: its free read-only routes, its credential and its error shapes."""

    provider_id = ""

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path regex, handler): everything else is a forbidden call."""
        raise NotImplementedError

    def credential(self, request: Request) -> str | None:
        return _bearer(request)

    def invalid(self) -> Response:
        return _json({"message": "Bad credentials"}, 401)

    def ratelimited(self) -> Response:
        return _json({"message": "rate limited"}, 429, {"Retry-After": "1"})

    def down(self) -> Response:
        return _json({"message": "service unavailable"}, 503)

    def precheck(self, request: Request) -> Response | None:
        return None

    def handle(self, request: Request, handler: Handler, match: re.Match[str]) -> Response:
        rejection = self.precheck(request)
        if rejection is not None:
            return rejection
        token = self.credential(request)
        if not token or MARKER_BAD in token:
            return self.invalid()
        if MARKER_RATELIMIT in token:
            return self.ratelimited()
        if MARKER_DOWN in token:
            return self.down()
        return handler(request, token, match)


class GitHub(_Tool):
    provider_id = "github"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", r"/user", self.user), ("GET", r"/orgs/([A-Za-z0-9-]+)/copilot/billing", self.copilot)]

    def credential(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        for scheme in ("Bearer ", "token "):
            if header.startswith(scheme):
                return header[len(scheme) :]
        return None

    def precheck(self, request: Request) -> Response | None:
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in GITHUB_API_VERSIONS:
            return _json({"message": f"API version {version} is not supported."}, 400)
        return None

    def invalid(self) -> Response:
        return _json({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, 401)

    def ratelimited(self) -> Response:
        # GitHub's primary rate limit is a 403, not a 429.
        return _json(
            {"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest"},
            403,
            {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1999999999"},
        )

    def user(self, request: Request, token: str, match: re.Match[str]) -> Response:
        return _json({"login": "octocat", "id": 1, "type": "User"}, headers={"x-ratelimit-limit": "5000"})

    def copilot(self, request: Request, token: str, match: re.Match[str]) -> Response:
        if match.group(1) == "no-such-org":
            return _json({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404)
        if MARKER_FORBIDDEN in token:
            return _json({"message": "Resource not accessible by personal access token"}, 403)
        seats = {"total": 12, "added_this_cycle": 1, "pending_invitation": 0, "pending_cancellation": 0}
        body = {
            "seat_breakdown": {**seats, "active_this_cycle": 10, "inactive_this_cycle": 2},
            "seat_management_setting": "assign_selected",
            "plan_type": "business",
        }
        return _json(body, headers={"x-ratelimit-limit": "5000"})


class Slack(_Tool):
    provider_id = "slack"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", r"/api/auth\.test", self.auth_test),
            ("GET", r"/api/auth\.test", self.auth_test),
            ("GET", r"/api/team\.billing\.info", self.billing_info),
            ("GET", r"/api/users\.list", self.users_list),
        ]

    def invalid(self) -> Response:
        return _json({"ok": False, "error": "invalid_auth"})

    def ratelimited(self) -> Response:
        return _json({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": "1"})

    def handle(self, request: Request, handler: Handler, match: re.Match[str]) -> Response:
        token = self.credential(request)
        if token and MARKER_ODD in token:
            return _json({"ok": False, "error": "fatal_error"})
        if not token:
            return _json({"ok": False, "error": "not_authed"})
        return super().handle(request, handler, match)

    def auth_test(self, request: Request, token: str, match: re.Match[str]) -> Response:
        return _json(
            {"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "team_id": "T0001", "user_id": "U1"}
        )

    def _scoped(self, token: str, scope: str, body: dict[str, Any]) -> Response:
        if MARKER_FORBIDDEN in token:
            return _json({"ok": False, "error": "missing_scope", "needed": scope, "provided": "channels:read"})
        return _json({"ok": True, **body})

    def billing_info(self, request: Request, token: str, match: re.Match[str]) -> Response:
        return self._scoped(token, "team.billing:read", {"plan": "std"})

    def users_list(self, request: Request, token: str, match: re.Match[str]) -> Response:
        limit = request.args.get("limit", "0")
        if not limit.isdigit():
            return _json({"ok": False, "error": "invalid_arguments"})
        members = [{"id": "U1", "name": "ana", "deleted": False, "is_bot": False}][: int(limit) or None]
        return self._scoped(
            token, "users:read", {"members": members, "response_metadata": {"next_cursor": "dXNlcjpVMg=="}}
        )


class Cursor(_Tool):
    provider_id = "cursor"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", r"/teams/members", self.members)]

    def credential(self, request: Request) -> str | None:
        """The Admin API key is the Basic user name; a Bearer header is not accepted."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, _ = base64.b64decode(header[len("Basic ") :], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user or None

    def invalid(self) -> Response:
        return _json({"error": "Unauthorized", "message": "Invalid API key"}, 401)

    def members(self, request: Request, token: str, match: re.Match[str]) -> Response:
        if MARKER_FORBIDDEN in token:
            return _json({"error": "Forbidden", "message": "Admin API key required"}, 403)
        return _json({"teamMembers": [{"name": "Ana", "email": "ana@acme.test", "role": "owner"}]})


class Vercel(_Tool):
    provider_id = "vercel"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", r"/v2/user", self.user), ("GET", r"/v1/billing/charges", self.charges)]

    def invalid(self) -> Response:
        return _json({"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": True}}, 403)

    def ratelimited(self) -> Response:
        return _json({"error": {"code": "rate_limited", "message": "Rate limit exceeded"}}, 429, {"Retry-After": "1"})

    def user(self, request: Request, token: str, match: re.Match[str]) -> Response:
        return _json({"user": {"id": "usr_1", "username": "ana", "defaultTeamId": "team_AbCdEfGh12"}})

    def charges(self, request: Request, token: str, match: re.Match[str]) -> Response:
        try:
            start = datetime.fromisoformat(request.args["from"])
            end = datetime.fromisoformat(request.args["to"])
        except (KeyError, ValueError):
            return _json({"error": {"code": "bad_request", "message": "from and to must be ISO 8601 dates"}}, 400)
        if not start < end <= start + timedelta(days=366):
            return _json({"error": {"code": "bad_request", "message": "range must be positive, at most a year"}}, 400)
        if MARKER_FORBIDDEN in token:
            return _json({"error": {"code": "forbidden", "message": "You don't have permission to view billing"}}, 403)
        line = {
            "BilledCost": 1.25,
            "BillingCurrency": "USD",
            "ChargePeriodStart": start.astimezone(UTC).isoformat(),
            "ChargePeriodEnd": end.astimezone(UTC).isoformat(),
            "ServiceName": "Functions",
            "Tags": {"teamId": request.args.get("teamId", "personal")},
        }
        return Response(json.dumps(line) + "\n", mimetype="application/jsonl")


class Figma(_Tool):
    provider_id = "figma"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", r"/v1/me", self.me)]

    def credential(self, request: Request) -> str | None:
        return request.headers.get("X-Figma-Token") or _bearer(request)

    def invalid(self) -> Response:
        return _json({"status": 403, "err": "Invalid token"}, 403)

    def ratelimited(self) -> Response:
        return _json({"status": 429, "err": "Rate limit exceeded"}, 429, {"Retry-After": "1"})

    def me(self, request: Request, token: str, match: re.Match[str]) -> Response:
        if MARKER_FORBIDDEN in token:
            return _json({"status": 403, "err": "Invalid scope(s): file_content:read. Requires current_user:read"}, 403)
        return _json({"id": "1", "email": "ana@acme.test", "handle": "Ana", "img_url": "https://example.test/a.png"})


class Notion(_Tool):
    provider_id = "notion"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", r"/v1/users/me", self.me), ("GET", r"/v1/users", self.users)]

    @staticmethod
    def error(status: int, code: str, message: str) -> Response:
        return _json({"object": "error", "status": status, "code": code, "message": message}, status)

    def precheck(self, request: Request) -> Response | None:
        if request.headers.get("Notion-Version") not in NOTION_VERSIONS:
            return self.error(400, "missing_version", "Notion-Version header failed validation.")
        return None

    def invalid(self) -> Response:
        return self.error(401, "unauthorized", "API token is invalid.")

    def ratelimited(self) -> Response:
        response = self.error(429, "rate_limited", "You have been rate limited.")
        response.headers["Retry-After"] = "1"
        return response

    def down(self) -> Response:
        return self.error(503, "service_unavailable", "Notion is unavailable.")

    def me(self, request: Request, token: str, match: re.Match[str]) -> Response:
        return _json({"object": "user", "id": "b0t", "type": "bot", "bot": {"workspace_name": "Acme"}})

    def users(self, request: Request, token: str, match: re.Match[str]) -> Response:
        size = request.args.get("page_size", "100")
        if not size.isdigit() or not 1 <= int(size) <= 100:
            return self.error(400, "validation_error", "page_size should be between 1 and 100.")
        if MARKER_FORBIDDEN in token:
            return self.error(403, "restricted_resource", "Insufficient permissions for this endpoint.")
        person = {"object": "user", "id": "u1", "type": "person", "name": "Ana"}
        return _json({"object": "list", "results": [person], "has_more": True, "next_cursor": "u2"})


class Asana(_Tool):
    provider_id = "asana"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", r"/api/1\.0/users/me", self.me), ("GET", r"/api/1\.0/users", self.users)]

    @staticmethod
    def error(status: int, message: str) -> Response:
        return _json({"errors": [{"message": message}]}, status)

    def invalid(self) -> Response:
        return self.error(401, "Not Authorized")

    def ratelimited(self) -> Response:
        response = self.error(429, "You have made too many requests recently.")
        response.headers["Retry-After"] = "1"
        return response

    def me(self, request: Request, token: str, match: re.Match[str]) -> Response:
        workspace = {"gid": ASANA_WORKSPACE, "name": "Acme", "resource_type": "workspace"}
        return _json({"data": {"gid": "1", "name": "Ana", "workspaces": [workspace]}})

    def users(self, request: Request, token: str, match: re.Match[str]) -> Response:
        workspace = request.args.get("workspace")
        if not workspace:
            return self.error(400, "workspace: Missing input")
        if workspace != ASANA_WORKSPACE:
            return self.error(404, f"workspace: Unknown object: {workspace[:20]}")
        if MARKER_FORBIDDEN in token:
            return self.error(403, "You do not have access to this workspace's users.")
        return _json({"data": [{"gid": "1", "name": "Ana"}], "next_page": {"offset": "eyJ0"}})


class SaasSimulatorApp:
    """Dispatches by prefix, serves only each tool's declared reads, records anything else."""

    def __init__(self) -> None:
        self.tools: dict[str, _Tool] = {
            tool.provider_id: tool for tool in (GitHub(), Slack(), Cursor(), Vercel(), Figma(), Notion(), Asana())
        }
        self._lock = threading.Lock()
        self.forbidden_calls: list[str] = []
        self.served_calls: list[str] = []  # "METHOD /prefix/path?query" of every call served
        self.requests: dict[str, int] = dict.fromkeys(self.tools, 0)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        _, _, rest = request.path.partition("/")
        prefix, _, subpath = rest.partition("/")
        subpath = "/" + subpath
        if prefix == "_sim":
            return self.control(request, subpath)
        tool = self.tools.get(prefix)
        if tool is not None:
            with self._lock:
                self.requests[prefix] += 1
            for method, pattern, handler in tool.routes():
                match = re.fullmatch(pattern, subpath.rstrip("/") or "/")
                if match and request.method == method:
                    with self._lock:
                        query = request.query_string.decode()
                        self.served_calls.append(f"{request.method} {request.path}" + (f"?{query}" if query else ""))
                    return tool.handle(request, handler, match)
        # Not a free read this simulator serves: possibly paid or mutating. Refuse and remember.
        with self._lock:
            self.forbidden_calls.append(f"{request.method} {request.path}")
        return _json({"error": f"simulator refuses {request.method} {request.path}: not a free read-only call"}, 405)

    def control(self, request: Request, subpath: str) -> Response:
        if subpath == "/forbidden_calls" and request.method == "GET":
            return _json({"forbidden_calls": list(self.forbidden_calls)})
        if subpath == "/stats" and request.method == "GET":
            return _json({"requests": dict(self.requests)})
        if subpath == "/reset" and request.method == "POST":
            self.reset()
            return _json({"ok": True})
        return _json({"error": f"no control endpoint {request.method} {request.path}"}, 404)

    def reset(self) -> None:
        with self._lock:
            self.forbidden_calls.clear()
            self.served_calls.clear()
            self.requests = dict.fromkeys(self.tools, 0)


class SaasSimulator(ServedInThread):
    """The SaaS simulator as a background server on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self.app = SaasSimulatorApp()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._server = make_server(self.host, self._requested_port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"http://{self.host}:{self._server.server_port}"

    def base_url(self, provider_id: str) -> str:
        if provider_id not in SAAS_PROVIDER_IDS:
            raise ValueError(f"unknown SaaS provider {provider_id!r}; known: {', '.join(SAAS_PROVIDER_IDS)}")
        return f"{self.url}/{provider_id}"

    def env(self) -> dict[str, str]:
        return {f"PROVIDER_{p.upper()}_BASE_URL": self.base_url(p) for p in SAAS_PROVIDER_IDS}

    @property
    def forbidden_calls(self) -> list[str]:
        return list(self.app.forbidden_calls)

    @property
    def served_calls(self) -> list[str]:
        return list(self.app.served_calls)

    def reset(self) -> None:
        self.app.reset()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulators.saas", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    args = parser.parse_args(argv)
    with SaasSimulator(args.port) as simulator:
        print_exports(f"# SaaS simulator on {simulator.url} (Ctrl-C to stop)", simulator.env())
        serve_until_stopped()
        if simulator.forbidden_calls:
            print("# refused (not free read-only) calls: " + ", ".join(simulator.forbidden_calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
