"""A small pooled HTTP client on the standard library, for the request path.

Why not ``requests`` here: importing it (with urllib3, charset_normalizer,
idna and cookiejar) costs ~26 ms of a cold start, more than a quarter of a
bare function's whole first answer, while ``http.client`` and ``ssl`` are
already loaded by the functions framework. The calls on the request path
(Google REST APIs, the metadata server, the LLM providers' checks) need only
this much: one request, a pooled keep-alive connection, TLS verified against
the same CA bundle requests would use, a proxy from the environment, no
redirects. Paths that hand a session to another library (google-auth's token
refresh, msal, boto) keep ``requests``.

Failures are OSErrors, as requests' are: ``ConnectionError`` (refused, reset,
a malformed or truncated answer, TLS), ``TimeoutError``. Their messages name
the host only: a URL may carry a key in its query.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import select
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

USER_AGENT = "integrations-service"
MAX_BODY_BYTES = 32 * 1024 * 1024  # no provider or Google answer we read comes near this
DEFAULT_POOL_SIZE = 8
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # honoured as requests does


class TransportError(ConnectionError):
    """No usable answer: refused, reset, TLS refused, a malformed or oversized answer."""


@dataclass
class Response:
    """The parts of an answer the callers read (named as requests names them)."""

    status_code: int
    reason: str
    headers: Message  # case-insensitive lookups; a missing header reads as None
    content: bytes
    url: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.headers.get_content_charset() or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know: read it as UTF-8, as requests falls back
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return jsonlib.loads(self.content)


def default_ca_bundle() -> str | None:
    """The CA bundle requests would verify against: the environment's, else certifi's."""
    for name in CA_BUNDLE_ENV:
        if os.environ.get(name):
            return os.environ[name]
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests, which we install
        return None
    return certifi.where()


_tls_contexts: dict[str | None, ssl.SSLContext] = {}
_tls_contexts_lock = threading.Lock()


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """The verifying TLS context for ``cafile``, built once per process: loading a bundle costs
    ~16 ms, and the BigQuery, KMS, Secret Manager and provider-check clients all need one."""
    with _tls_contexts_lock:
        context = _tls_contexts.get(cafile)
        if context is None:
            try:
                # A directory of hashed certificates is accepted too, as requests accepts it.
                if cafile is not None and os.path.isdir(cafile):
                    context = ssl.create_default_context(capath=cafile)
                else:
                    context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError):
                raise TransportError(f"the CA bundle {cafile} could not be loaded") from None
            _tls_contexts[cafile] = context
        return context


class HttpClient:
    """Thread-safe; keeps up to ``pool_size`` idle connections per origin."""

    def __init__(self, *, pool_size: int = DEFAULT_POOL_SIZE, user_agent: str = USER_AGENT) -> None:
        self.pool_size = pool_size
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: dict[tuple[Any, ...], list[http.client.HTTPConnection]] = {}
        self.connections_opened = 0

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        data: str | bytes | Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
        verify: str | bool | None = None,
    ) -> Response:
        """Send one request and read the whole answer. Redirects are never followed
        (``allow_redirects`` exists for requests' signature and must stay False):
        every caller here treats a 3xx as the answer."""
        if allow_redirects:
            raise ValueError("HttpClient does not follow redirects")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an absolute http(s) URL is needed")
        target = parts.path or "/"
        # As requests does, a parameter whose value is None is left out.
        given = {name: value for name, value in (params or {}).items() if value is not None}
        query = "&".join(filter(None, [parts.query, urlencode(given, doseq=True)]))
        if query:
            target += "?" + query
        body, content_type = _encode_body(data, json)
        sent_headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity", "Accept": "*/*"}
        if content_type:
            sent_headers["Content-Type"] = content_type
        sent_headers.update(headers or {})
        if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
            sent_headers["Content-Length"] = str(len(body or b""))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        cafile = self._cafile(verify) if parts.scheme == "https" else None
        proxy = _proxy_for(parts.scheme, parts.hostname)
        key = (parts.scheme, parts.hostname, port, cafile, proxy)
        if proxy and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # a plain-HTTP proxy takes the absolute form

        reused, connection = self._checkout(key, timeout)
        while True:
            failure: OSError | None = None
            try:
                status, reason, answer_headers, content, keep = self._exchange(
                    connection, method, target, body, sent_headers, proxy
                )
                break
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                connection.close()
                if reused and method.upper() in IDEMPOTENT_METHODS:
                    # The server closed an idle keep-alive connection as we reused it: once more on a new one.
                    reused, connection = False, self._open(key, timeout)
                    continue
                # A POST may have been acted on before the connection broke: its caller decides
                # (BigQuery resends with the same requestId; KMS never repeats a key-version create).
                failure = TransportError(f"{parts.hostname} closed the connection")
            except TimeoutError:
                connection.close()
                failure = TimeoutError(f"{parts.hostname} did not answer in time")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # ValueError: http.client refusing a header value (its message quotes the value).
                connection.close()
                failure = TransportError(f"{parts.hostname}: {type(exc).__name__}")
            # Raised here, outside the except clauses, so that it carries no __context__: the
            # original error's text can quote a URL's query or a header value.
            raise failure
        if keep:
            self._checkin(key, connection)
        else:
            connection.close()
        return Response(status, reason, answer_headers, content, url)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # --- connections -----------------------------------------------------------------------

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        proxy: Proxy | None,
    ) -> tuple[int, str, Message, bytes, bool]:
        if proxy is not None and proxy.authorization and not isinstance(connection, http.client.HTTPSConnection):
            headers = {**headers, "Proxy-Authorization": proxy.authorization}  # HTTPS sends it in the CONNECT
        connection.request(method, target, body=body, headers=headers)
        answer = connection.getresponse()
        content = answer.read(MAX_BODY_BYTES + 1)
        if len(content) > MAX_BODY_BYTES:
            raise http.client.HTTPException("answer larger than the client accepts")
        if answer.length:  # read(amt) returns a body cut short of its Content-Length without raising
            raise http.client.IncompleteRead(b"", answer.length)
        encoding = (answer.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            # We ask for identity; a server that compresses anyway still gets read.
            content = _decoded(content, encoding)
        return answer.status, answer.reason, answer.headers, content, not answer.will_close

    def _checkout(self, key: tuple[Any, ...], timeout: float | None) -> tuple[bool, http.client.HTTPConnection]:
        with self._lock:
            idle = self._idle.get(key) or []
            while idle:
                connection = idle.pop()
                if _still_open(connection):
                    connection.timeout = timeout
                    if connection.sock is not None:
                        connection.sock.settimeout(timeout)
                    return True, connection
                connection.close()
        return False, self._open(key, timeout)

    def _checkin(self, key: tuple[Any, ...], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.pool_size:
                idle.append(connection)
                return
        connection.close()

    def _open(self, key: tuple[Any, ...], timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port, cafile, proxy = key
        with self._lock:
            self.connections_opened += 1
        connection: http.client.HTTPConnection
        if scheme == "https":
            context = tls_context(cafile)
            if proxy:
                connection = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=timeout, context=context)
                tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                connection.set_tunnel(host, port, headers=tunnel_headers)
            else:
                connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        elif proxy:
            connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        return connection

    def _cafile(self, verify: str | bool | None) -> str | None:
        if verify is False:
            raise ValueError("TLS verification cannot be turned off")
        return verify if isinstance(verify, str) else default_ca_bundle()


def _decoded(content: bytes, encoding: str) -> bytes:
    import zlib

    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise http.client.HTTPException(f"unsupported Content-Encoding {encoding[:32]!r}")
    try:
        # wbits: gzip header (16+), or zlib-wrapped deflate (what servers send for "deflate").
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)
        decoded = decompressor.decompress(content, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise http.client.HTTPException("a compressed answer did not decompress") from exc
    if len(decoded) > MAX_BODY_BYTES or decompressor.unconsumed_tail:
        raise http.client.HTTPException("answer larger than the client accepts")
    return decoded


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that reads as ready was closed by the server (or sent junk)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _encode_body(data: str | bytes | Mapping[str, Any] | None, json: Any) -> tuple[bytes | None, str | None]:
    if json is not None:
        return jsonlib.dumps(json).encode(), "application/json"
    if data is None:
        return None, None
    if isinstance(data, Mapping):
        return urlencode(data, doseq=True).encode(), "application/x-www-form-urlencoded"
    return (data.encode() if isinstance(data, str) else data), None


class Proxy(NamedTuple):
    """An ``http://`` proxy from the environment, and the Basic credentials its URL carried."""

    host: str
    port: int
    authorization: str | None = None


def _proxy_for(scheme: str, host: str) -> Proxy | None:
    """The environment's proxy for ``scheme`` (``HTTPS_PROXY`` / ``HTTP_PROXY``, else
    ``ALL_PROXY``), unless ``NO_PROXY`` names the host, a parent domain, ``*`` or, for an
    IP address, a network containing it, as requests reads them."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    if _bypassed(host, proxies.get("no", "")):
        return None
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise TransportError(f"only an http:// proxy is supported (the {scheme} proxy is {parts.scheme}://)")
    authorization = None
    if parts.username is not None:
        import base64
        from urllib.parse import unquote

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Proxy(parts.hostname, parts.port or 80, authorization)


def _bypassed(host: str, no_proxy: str) -> bool:
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        name = entry.split(":")[0] if entry.count(":") == 1 else entry  # "host:port" names the host
        if not name:
            continue
        if name == "*":
            return True
        if address is not None and "/" in name:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                continue
        elif host.lower() == name.lstrip(".") or host.lower().endswith("." + name.lstrip(".")):
            return True
    return False
