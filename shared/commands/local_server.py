"""The embedded default: one process serving every Cloud Function on the spec's paths.

``python -m shared.local_server`` (what ``make run`` starts) listens on
127.0.0.1:$PORT (default 8001), keeps state under $INTEGRATIONS_DATA_DIR
(default ./.data) and serves ``/openapi.json`` and ``/healthz`` besides the API.
Each request goes to the same handler Cloud Functions would call.

A bad setting (PORT, INTEGRATIONS_DATA_DIR, LOG_LEVEL, ...) is one JSON line
``{"error": ...}`` on stderr and exit code 2, as with the CLI; a port already
taken is exit code 1.

It also serves the settings console (``clients/typescript``, built by ``make
console``) at ``/`` and on the spec's page paths, ``/{org}/settings/integrations``
and its ``/cloud``, ``/llm`` and ``/subscriptions``: one HTML shell whose script
routes in the browser, plus its script and stylesheet under ``/assets/``. The
console is the embedded mode's own; in Google Cloud nothing serves it (the
platform's frontend calls the API from its server side).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import flask
import yaml
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as RouteMethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from shared.common import logs
from shared.domain.errors import ConfigurationError, MethodNotAllowed, NotFound, ServiceError
from shared.inbound.cors import apply_cors
from shared.inbound.http import REQUEST_ID_HEADER, cors_origins, error_response, options_response

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
CONSOLE_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript" / "dist" / "site"
LOCAL_PATHS = ("/openapi.json", "/healthz")
# The spec's pages; the console's script picks the page from the path.
CONSOLE_PAGES = (
    "/",
    "/<org_slug>/settings/integrations",
    "/<org_slug>/settings/integrations/<any(cloud, llm, subscriptions):page>",
)
# The page loads only its own script and stylesheet, and calls the API wherever the user points it
# (this server by default, or another origin through CORS), so connect-src cannot be narrower than http(s).
CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' http: https:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
CONSOLE_NOT_BUILT = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Console not built</title>"
    "<h1>The settings console is not built</h1><p>Run <code>make console</code> (Node.js 20 or newer) and reload."
    " The API works without it: see <a href=/openapi.json>/openapi.json</a>.</p></html>"
)
DISPATCH_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

logger = logging.getLogger("integrations.local_server")
access_logger = logging.getLogger("integrations.access")
FLASK_APP_NAME = "integrations-local"

Handler = Callable[[flask.Request], flask.Response]


def create_app(entry_points: Mapping[str, Handler] | None = None, console_dir: Path = CONSOLE_DIR) -> flask.Flask:
    """A Flask app routing the spec's paths to the entry points of ``main.py``, and the console's pages."""
    if entry_points is None:
        from main import ENTRY_POINTS

        entry_points = cast(Mapping[str, Handler], ENTRY_POINTS)
    handlers: Mapping[str, Handler] = entry_points
    rules = []
    for name, handler in handlers.items():
        method, rule = getattr(handler, "route")  # noqa: B009 - set by shared.inbound.http.endpoint
        rules.append(Rule(rule, endpoint=name, methods=[method]))
    # merge_slashes=False, here and on Flask's own map: "//" in a path would otherwise get werkzeug's
    # HTML 308 to the merged path; it is no path of ours, so it gets the JSON 404.
    url_map = Map(rules, strict_slashes=False, merge_slashes=False)
    app = flask.Flask(FLASK_APP_NAME)
    app.url_map.merge_slashes = False  # before any route is added: a rule takes the map's setting when bound
    openapi_document = yaml.safe_load(OPENAPI_PATH.read_text()) if OPENAPI_PATH.exists() else {}

    @app.before_request
    def start_clock() -> None:
        flask.g.started = time.perf_counter()

    @app.before_request
    def no_empty_segment() -> flask.Response | None:
        """No path of ours has an empty segment ("//", or "/%2F" once decoded). Read from PATH_INFO:
        werkzeug's ``request.path`` drops leading slashes ("//" would be the console's "/"), and its
        router answers an empty path with an HTML 308."""
        wsgi = flask.request.environ  # the WSGI request's variables, not the process's settings
        path_info = str(wsgi.get("PATH_INFO", ""))
        if path_info.startswith("/") and "//" not in path_info:
            return None
        return error_response(NotFound(f"No such path: {path_info[:200]}"), _id())

    @app.after_request
    def access_log(response: flask.Response) -> flask.Response:
        """One JSON line per request, in the service's log format and with its request id."""
        request_id = response.headers.get(REQUEST_ID_HEADER) or _id()
        response.headers[REQUEST_ID_HEADER] = request_id
        request = flask.request
        latency = time.perf_counter() - flask.g.get("started", time.perf_counter())
        with logs.request_context(request_id, request.headers):
            # Path only, never the query string or headers: nothing a caller sent is echoed whole.
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path[:200],
                response.status_code,
                extra={
                    "httpRequest": {
                        "requestMethod": request.method,
                        "requestUrl": request.path[:200],
                        "status": response.status_code,
                        "latency": f"{latency:.3f}s",
                        "remoteIp": request.remote_addr,
                    }
                },
            )
        return response

    def allowed_methods(path: str) -> tuple[str, ...]:
        if path in LOCAL_PATHS:
            return ("GET", "HEAD")
        return tuple(sorted(set(url_map.bind("").allowed_methods(path)) - {"OPTIONS"}))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> flask.Response:
        # Paths Flask's own router cannot take (e.g. a newline in a segment) still get JSON.
        status = error.code or 500
        if status == 404:
            return error_response(NotFound("No such path"), _id())
        if status == 405:
            allow = tuple(sorted(getattr(error, "valid_methods", None) or ()))
            return error_response(MethodNotAllowed("Method not allowed on this path", allow=allow), _id())
        return error_response(ServiceError(error.name), _id(), status=status)

    @app.after_request
    def cors(response: flask.Response) -> flask.Response:
        request = flask.request
        return apply_cors(response, request, cors_origins(), allowed_methods(request.path))

    @app.get("/openapi.json", provide_automatic_options=False)
    def openapi() -> flask.Response:
        return flask.Response(json.dumps(openapi_document), mimetype="application/json")

    @app.get("/healthz", provide_automatic_options=False)
    def healthz() -> flask.Response:
        return flask.jsonify({"success": True, "status": "ok"})

    add_console_routes(app, console_dir)

    @app.route("/<path:rest>", methods=DISPATCH_METHODS, provide_automatic_options=False)
    @app.route("/", defaults={"rest": ""}, methods=DISPATCH_METHODS, provide_automatic_options=False)
    def dispatch(rest: str) -> flask.Response:
        request = flask.request
        if request.method == "OPTIONS":
            methods = allowed_methods(request.path)
            if not methods:
                return error_response(NotFound(f"No such path: {request.path[:200]}"), _id())
            return options_response(methods, _id())
        try:
            name, _ = url_map.bind("").match(request.path, method=request.method)
        except RouteMethodNotAllowed as exc:
            allowed = tuple(sorted({*(exc.valid_methods or []), "OPTIONS"}))
            return error_response(
                MethodNotAllowed(
                    f"{request.method[:16]} is not allowed on this path; use {', '.join(allowed)}", allow=allowed
                ),
                _id(),
            )
        except RouteNotFound:
            return error_response(NotFound(f"No such path: {request.path[:200]}"), _id())
        return handlers[name](request)

    return app


def add_console_routes(app: flask.Flask, console_dir: Path) -> None:
    """GET on the console's pages answers its HTML shell; ``/assets/<file>`` its built script and stylesheet.

    Registered before the API's catch-all, so only GET (and HEAD) on these paths reach them;
    any other method on ``/`` still gets the API's JSON 404/405.
    """

    def page(**_: str) -> flask.Response:
        index = console_dir / "index.html"
        if not index.is_file():
            response = flask.Response(CONSOLE_NOT_BUILT, status=503, mimetype="text/html")
        else:
            response = flask.Response(index.read_bytes(), mimetype="text/html")
        response.headers.update(CONSOLE_HEADERS)
        return response

    # strict_slashes=False: a page path typed with a trailing slash is the same page (the console's router
    # takes both), not the API's JSON 404.
    for rule in CONSOLE_PAGES:
        app.add_url_rule(
            rule, "console_page", page, methods=["GET"], provide_automatic_options=False, strict_slashes=False
        )

    @app.get("/assets/<name>", provide_automatic_options=False)
    def console_asset(name: str) -> flask.Response:
        # send_from_directory refuses names that leave the directory; a missing file is the API's JSON 404.
        try:
            response = flask.send_from_directory(console_dir, name, max_age=0)
        except RouteNotFound:
            return error_response(NotFound(f"No such console file: {name[:100]}"), _id())
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class JsonErrorRequestHandler(WSGIRequestHandler):
    """The development server's own errors (request line too long: 414, headers
    too large: 431, a malformed request line: 400) as JSON like every other answer,
    not http.server's HTML page."""

    CODES = {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large", 501: "not_implemented"}

    def make_environ(self) -> dict[str, Any]:
        request = super().make_environ()  # the WSGI request's variables
        # http.server reduces a target's leading "//" to "/" ("//api/v1/x" becomes "/api/v1/x"): the path
        # as sent, from the request line, keeps its empty segment, so the app answers it with its 404.
        words = self.requestline.split()
        target = words[1].split("?", 1)[0] if len(words) == 3 else ""
        if target.startswith("//"):
            request["PATH_INFO"] = unquote(target).encode().decode("latin-1")  # WSGI's encoding of a path
        return request

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Method, path and status, never the query string: the OAuth callback's carries the code and state."""
        # An unparsable request line (414, 400) has no path or command yet.
        path = str(getattr(self, "path", "-")).split("?", 1)[0]
        self.log("info", '"%s %s" %s %s', getattr(self, "command", "-"), path, code, size)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        request_id = _id()
        reason = self.responses.get(code, ("Error", ""))[0]
        payload = {
            "success": False,
            "error": reason,
            "code": self.CODES.get(code, "http_error"),
            "request_id": request_id,
        }
        body = json.dumps(payload).encode()
        self.close_connection = True
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.0"  # an unparsable request line still gets a status line
        self.send_response(code, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", request_id)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _id() -> str:
    return uuid.uuid4().hex


class JsonLoggingRequestHandler(JsonErrorRequestHandler):
    """...and without werkzeug's own coloured access log (the app writes one, as JSON)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The status and its reason only: the rejected line itself could carry anything.
        reason = self.responses.get(code, ("Error", ""))[0]
        logging.getLogger("integrations.server").warning(f"rejected a malformed request: {code} {reason}")
        super().send_error(code, message, explain)

    def log(self, type: str, message: str, *args: object) -> None:
        # Malformed request lines, handler errors: werkzeug's own complaints, in our format.
        logging.getLogger("integrations.server").log(
            logging.ERROR if type == "error" else logging.INFO, message % args if args else message
        )


EXIT_CANNOT_LISTEN = 1
EXIT_BAD_SETTINGS = 2  # the CLI's code for the same thing


def start_up_problem() -> str | None:
    """Why the service cannot start with these settings (bad env, registry, data dir, keyring), or None.

    Builds the instance's service, store and cipher now, so a bad setting fails
    at start rather than at the first request.
    """
    from shared.inbound.http import get_service

    try:
        service = get_service()
        service.adapters.store  # noqa: B018 - build the store now so a bad data dir fails fast
        service.adapters.cipher  # noqa: B018
    except (ConfigurationError, ServiceError) as error:
        return str(error)
    return None


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or ``OSError`` when the port is taken.

    Bound by us rather than by werkzeug, whose server prints to stderr and
    exits the process when the port is taken; ``make demo`` also holds it
    before it starts anything else.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does: TIME_WAIT is no conflict
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def bind(sock: socket.socket) -> BaseWSGIServer:
    """The server over a socket from ``listen``."""
    host, port = sock.getsockname()[:2]
    server = make_server(
        host, port, create_app(), threaded=True, request_handler=JsonLoggingRequestHandler, fd=sock.fileno()
    )
    sock.close()  # the server holds its own duplicate of the descriptor
    return server


def serve(server: BaseWSGIServer) -> int:
    from shared.inbound.http import get_service

    url = f"http://{server.host}:{server.port}"
    data_dir = str(get_service().adapters.settings.data_dir)
    logger.info(f"integrations service listening on {url} (data: {data_dir})", extra={"url": url, "data_dir": data_dir})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def configure_logs() -> str | None:
    """JSON logs for the service and werkzeug; the problem with LOG_LEVEL, if any."""
    try:
        logs.configure(os.environ.get("LOG_LEVEL", "INFO"), "werkzeug", FLASK_APP_NAME)
    except ValueError:
        return f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {os.environ.get('LOG_LEVEL', '')[:40]!r}"
    return None


def settings_error(problem: str) -> int:
    """A settings error as one line on stderr (no traceback) and exit code 2, like the CLI."""
    print(json.dumps({"error": problem}), file=sys.stderr, flush=True)
    return EXIT_BAD_SETTINGS


def main() -> int:
    problem = configure_logs() or start_up_problem()
    if problem:
        return settings_error(problem)
    from shared.inbound.http import get_service

    settings = get_service().adapters.settings
    try:
        sock = listen(settings.host, settings.port)
    except OSError as error:
        logger.error(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}; is another server running? Set PORT."
        )
        return EXIT_CANNOT_LISTEN
    return serve(bind(sock))


if __name__ == "__main__":
    sys.exit(main())
