"""The GCE metadata server's access-token endpoint on loopback.

Answers ``GET /computeMetadata/v1/instance/service-accounts/default/token``
(only with ``Metadata-Flavor: Google``, as the real one insists) with
``{"access_token", "expires_in", "token_type": "Bearer"}``. ``host`` is the
value for ``GCE_METADATA_HOST``. ``fetches`` counts tokens handed out;
``rotate()`` makes the current token stale (an API that checks tokens, see
``FakeGoogleRestServer.required_bearer``, then refuses it); ``down = True``
answers 503.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fakes._google_rest import LoopbackServer

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


class FakeMetadataServer(LoopbackServer):
    def __init__(self, expires_in: int = 3599) -> None:
        self.expires_in = expires_in
        self.token = "ya29.stand-in-" + secrets.token_urlsafe(12)
        self.fetches = 0
        self.down = False
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rotate(self) -> None:
        with self._lock:
            self.token = "ya29.stand-in-" + secrets.token_urlsafe(12)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path != TOKEN_PATH or request.method != "GET":
            response = Response("not found", status=404)
        elif request.headers.get("Metadata-Flavor") != "Google":
            response = Response("Missing Metadata-Flavor:Google header.", status=403)
        elif self.down:
            response = Response("unavailable", status=503)
        else:
            with self._lock:
                self.fetches += 1
                body = {"access_token": self.token, "expires_in": self.expires_in, "token_type": "Bearer"}
            response = Response(json.dumps(body), content_type="application/json")
        return response(environ, start_response)
