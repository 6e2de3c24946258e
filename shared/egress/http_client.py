"""The service's one outbound HTTP client: every call it makes goes through here.

Provider checks, webhook deliveries, OAuth token requests, Google's REST APIs,
the metadata server, msal's Entra ID calls and google-auth's token exchange
(through ``shared.egress.google_rest.GoogleAuthTransport``) all send with
``HttpClient.request``; ``docs/design/outbound-transport.md`` says why this
client and not ``requests``/``urllib3`` (importing those costs ~26 ms of a
cold start; ``http.client`` and ``ssl`` are already loaded by the functions
framework).

What every call gets:

- **one end time.** ``timeout`` is the whole call's budget, not a per-read
  timeout: connecting (TCP, the proxy's CONNECT, the TLS handshake), sending
  and every read of the status line, the headers and the body get only the
  time left, so a server that answers one byte at a time cannot stretch a call
  past it (``deadline`` caps it further at a ``time.monotonic()`` instant
  shared by several calls). The name lookup is the one step no timeout reaches;
- **a bounded body.** At most ``max_body_bytes`` are read: a longer answer
  fails (or, with ``truncate_body``, is cut there and its connection closed)
  without reading the rest;
- a pooled keep-alive connection per origin, TLS verified against the bundle
  requests would use (``REQUESTS_CA_BUNDLE``, else certifi), an ``http://``
  proxy from the environment unless ``NO_PROXY`` names the host, no redirects;
- ``connect_to``: connect to this address and no other (a webhook's checked
  address), with the URL's host kept for SNI, the certificate check and
  ``Host``; such a call never goes through a proxy, which would resolve the
  name again.

Retries are not made here (``shared.common.retries`` decides them), except resending
an idempotent request once when a kept-alive connection turns out closed.

Failures are OSErrors, as requests' are: ``ConnectionError`` (refused, reset,
a malformed, truncated or oversized answer, TLS), ``TimeoutError`` (the end
time passed). Their messages name the host only: a URL may carry a key in its
query.
"""

from __future__ import annotations

import functools
import http.client
import io
import json as jsonlib
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

USER_AGENT = "integrations-service"
MAX_BODY_BYTES = 32 * 1024 * 1024  # no provider or Google answer we read comes near this
# A call given no timeout still ends: no caller should rely on this.
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_POOL_SIZE = 8
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # honoured as requests does


class TransportError(ConnectionError):
    """No usable answer: refused, reset, TLS refused, a malformed or oversized answer."""


class HttpStatusError(Exception):
    """``Response.raise_for_status`` on a 4xx/5xx (libraries such as msal call it); names the status only."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


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

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HttpStatusError(self.status_code)


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


class _Clock:
    """The end of one call: every connect, send and read is given what is left of it."""

    __slots__ = ("end", "received")

    def __init__(self, timeout: float | None, deadline: float | None) -> None:
        end = time.monotonic() + (DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout)
        self.end = end if deadline is None else min(end, deadline)
        self.received = 0  # bytes read from the socket (status line, headers, body)

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the call's end time passed")
        return remaining


class _ClockedReader(io.RawIOBase):
    """The socket as http.client reads it, with each read bounded by what is left of the call.

    A per-read socket timeout alone never fires against a server that sends a
    byte just before it would: here the n-th read waits at most until the end.
    """

    def __init__(self, sock: socket.socket, clock: _Clock) -> None:
        super().__init__()
        self._sock = sock
        # The socket's own raw reader: it keeps the socket open while the answer is read
        # after http.client has let go of the connection (an answer with Connection: close).
        self._raw = sock.makefile("rb", buffering=0)
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._clock.left())
        received = self._raw.readinto(buffer)
        self._clock.received += received or 0
        return received

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _ClockedSocket:
    """What ``HTTPResponse`` is handed instead of the socket: it only calls ``makefile``."""

    def __init__(self, sock: socket.socket, clock: _Clock) -> None:
        self._sock = sock
        self._clock = clock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_ClockedReader(self._sock, self._clock))


class _ClockedResponse(http.client.HTTPResponse):
    def __init__(
        self, sock: Any, debuglevel: int = 0, method: str | None = None, url: str | None = None, *, clock: _Clock
    ) -> None:
        super().__init__(_ClockedSocket(sock, clock), debuglevel, method, url)  # type: ignore[arg-type]


class _Connection(http.client.HTTPConnection):
    clock: _Clock

    def connect(self) -> None:
        self.timeout = self.clock.left()
        super().connect()


class _TlsConnection(http.client.HTTPSConnection):
    clock: _Clock
    # The name TLS checks when the connection goes to a pinned address rather than to the name.
    server_name: str | None = None

    def connect(self) -> None:
        # HTTPSConnection.connect, with the handshake given what is left after TCP (and a proxy's CONNECT).
        self.timeout = self.clock.left()
        http.client.HTTPConnection.connect(self)
        self.sock.settimeout(self.clock.left())
        server_hostname = self._tunnel_host or self.server_name or self.host  # type: ignore[attr-defined]
        self.sock = self._context.wrap_socket(self.sock, server_hostname=server_hostname)  # type: ignore[attr-defined]


_AnyConnection = _Connection | _TlsConnection


def _use_clock(connection: _AnyConnection, clock: _Clock) -> None:
    """Bound the connection's next exchange (connecting, sending, every read of the answer) by ``clock``."""
    connection.clock = clock
    connection.response_class = functools.partial(_ClockedResponse, clock=clock)  # type: ignore[assignment]
    if connection.sock is not None:
        connection.sock.settimeout(clock.left())


class HttpClient:
    """Thread-safe; keeps up to ``pool_size`` idle connections per origin."""

    def __init__(self, *, pool_size: int = DEFAULT_POOL_SIZE, user_agent: str = USER_AGENT) -> None:
        self.pool_size = pool_size
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: dict[tuple[Any, ...], list[_AnyConnection]] = {}
        self.connections_opened = 0
        self.bytes_received = 0  # read from sockets, headers included: what the body bounds hold to

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
        deadline: float | None = None,
        max_body_bytes: int | None = None,
        truncate_body: bool = False,
        connect_to: str | None = None,
        allow_redirects: bool = False,
        verify: str | bool | None = None,
    ) -> Response:
        """Send one request and read its answer, all of it within ``timeout`` seconds (and
        before ``deadline``, a ``time.monotonic()`` instant, when given).

        The body is read up to ``max_body_bytes`` (default ``MAX_BODY_BYTES``): past it the call
        fails, or with ``truncate_body`` the answer keeps what was read and the rest is never read.
        Redirects are never followed (``allow_redirects`` exists for requests' signature and must
        stay False): every caller here treats a 3xx as the answer."""
        if allow_redirects:
            raise ValueError("HttpClient does not follow redirects")
        clock = _Clock(timeout, deadline)
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
        if connect_to is not None:
            sent_headers["Host"] = parts.netloc  # http.client would name the address
        sent_headers.update(headers or {})
        if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
            sent_headers["Content-Length"] = str(len(body or b""))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        cafile = self._cafile(verify) if parts.scheme == "https" else None
        proxy = None if connect_to is not None else _proxy_for(parts.scheme, parts.hostname)
        key = (parts.scheme, parts.hostname, port, cafile, proxy, connect_to)
        if proxy and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # a plain-HTTP proxy takes the absolute form
        limit = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes

        try:
            reused, connection = self._checkout(key, clock)
        except TimeoutError:
            raise TimeoutError(f"{parts.hostname} did not answer in time") from None
        while True:
            failure: OSError | None = None
            try:
                status, reason, answer_headers, content, keep = self._exchange(
                    connection, method, target, body, sent_headers, proxy, limit, truncate_body
                )
                break
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                connection.close()
                if reused and method.upper() in IDEMPOTENT_METHODS:
                    # The server closed an idle keep-alive connection as we reused it: once more on a new one.
                    try:
                        reused, connection = False, self._open(key, clock)
                    except TimeoutError:
                        failure = TimeoutError(f"{parts.hostname} did not answer in time")
                    else:
                        continue
                else:
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
            finally:
                with self._lock:
                    self.bytes_received += clock.received
                clock.received = 0
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
        connection: _AnyConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        proxy: Proxy | None,
        limit: int,
        truncate_body: bool,
    ) -> tuple[int, str, Message, bytes, bool]:
        if proxy is not None and proxy.authorization and not isinstance(connection, http.client.HTTPSConnection):
            headers = {**headers, "Proxy-Authorization": proxy.authorization}  # HTTPS sends it in the CONNECT
        connection.request(method, target, body=body, headers=headers)
        answer = connection.getresponse()
        if answer.length is not None and answer.length > limit and not truncate_body:
            # Said up front: not one byte of it is read.
            raise http.client.HTTPException("answer larger than the client accepts")
        content = answer.read(limit + 1)
        if len(content) > limit:
            if not truncate_body:
                raise http.client.HTTPException("answer larger than the client accepts")
            return answer.status, answer.reason, answer.headers, content[:limit], False  # the rest stays unread
        if answer.length:  # read(amt) returns a body cut short of its Content-Length without raising
            raise http.client.IncompleteRead(b"", answer.length)
        encoding = (answer.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            # We ask for identity; a server that compresses anyway still gets read.
            content = _decoded(content, encoding, limit)
        return answer.status, answer.reason, answer.headers, content, not answer.will_close

    def _checkout(self, key: tuple[Any, ...], clock: _Clock) -> tuple[bool, _AnyConnection]:
        with self._lock:
            idle = self._idle.get(key) or []
            while idle:
                connection = idle.pop()
                if _still_open(connection):
                    _use_clock(connection, clock)
                    return True, connection
                connection.close()
        return False, self._open(key, clock)

    def _checkin(self, key: tuple[Any, ...], connection: _AnyConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.pool_size:
                idle.append(connection)
                return
        connection.close()

    def _open(self, key: tuple[Any, ...], clock: _Clock) -> _AnyConnection:
        scheme, host, port, cafile, proxy, connect_to = key
        with self._lock:
            self.connections_opened += 1
        address = connect_to or host
        left = clock.left()
        connection: _AnyConnection
        if scheme == "https":
            context = tls_context(cafile)
            if proxy:
                connection = _TlsConnection(proxy.host, proxy.port, timeout=left, context=context)
                tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                connection.set_tunnel(host, port, headers=tunnel_headers)
            else:
                connection = _TlsConnection(address, port, timeout=left, context=context)
                if connect_to is not None:
                    connection.server_name = host
        elif proxy:
            connection = _Connection(proxy.host, proxy.port, timeout=left)
        else:
            connection = _Connection(address, port, timeout=left)
        _use_clock(connection, clock)
        return connection

    def _cafile(self, verify: str | bool | None) -> str | None:
        if verify is False:
            raise ValueError("TLS verification cannot be turned off")
        return verify if isinstance(verify, str) else default_ca_bundle()


def _decoded(content: bytes, encoding: str, limit: int) -> bytes:
    import zlib

    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise http.client.HTTPException(f"unsupported Content-Encoding {encoding[:32]!r}")
    try:
        # wbits: gzip header (16+), or zlib-wrapped deflate (what servers send for "deflate").
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)
        decoded = decompressor.decompress(content, limit + 1)
    except zlib.error as exc:
        raise http.client.HTTPException("a compressed answer did not decompress") from exc
    if len(decoded) > limit or decompressor.unconsumed_tail:
        raise http.client.HTTPException("answer larger than the client accepts")
    return decoded


def _still_open(connection: _AnyConnection) -> bool:
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
    url: str = ""  # as the environment gave it, credentials included: for libraries that take a proxy URL


def proxies_for(url: str) -> dict[str, str]:
    """The proxy this client would use for ``url``, in the form boto's ``Config(proxies=...)``
    and requests take (``{}``: connect directly), so a library's own transport follows the same
    ``HTTPS_PROXY``/``NO_PROXY`` reading as every other call."""
    parts = urlsplit(url)
    proxy = _proxy_for(parts.scheme, parts.hostname or "")
    return {parts.scheme: proxy.url} if proxy is not None else {}


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
    return Proxy(parts.hostname, parts.port or 80, authorization, parts.geturl())


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
