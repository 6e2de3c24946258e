"""shared.egress.http_client against real HTTP(S) servers on loopback: what it sends, pooling, failures, TLS,
proxies."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.egress import http_client
from shared.egress.http_client import HttpClient, TransportError
from tests.simulators.azure import _self_signed_tls


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.requests: list[dict] = []
        self.connections = 0
        self.close_after_answer = False  # answer with Connection: close
        self.drop_idle = False  # close the connection after answering, without saying so
        self.vanish_on_reuse = False  # read a kept-alive connection's second request, then close without answering
        self.written = 0  # bytes the dripping and huge answers managed to send

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (the timeout and broken-connection tests) is expected here

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


class RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1
        self.served_here = 0

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {"method": self.command, "target": self.path, "headers": dict(self.headers), "body": body}
        )
        self.served_here += 1
        if self.server.vanish_on_reuse and self.served_here == 2:
            self.close_connection = True  # as a server that timed the idle connection out just as it was reused
            return
        if self.path.startswith("/redirect"):
            status, payload = 302, b""
        elif self.path.startswith("/big"):
            status, payload = 200, b"x" * 2048
        elif self.path.startswith("/truncated"):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"access_token": "x')  # and the connection closes
            self.close_connection = True
            return
        elif self.path.startswith("/charset"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf8mb4")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        elif self.path.startswith("/gzip"):
            status, payload = 200, gzip.compress(json.dumps({"compressed": True, "pad": "x" * 2000}).encode())
        elif self.path.startswith("/slow"):
            threading.Event().wait(1.0)
            status, payload = 200, b"{}"
        elif self.path.startswith("/drip"):  # every read gets a byte: only a deadline on the whole call ends it
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" if self.path == "/drip-head" else b""
            if not head:
                self.send_response(200)
                self.send_header("Content-Length", "40")
                self.end_headers()
            self._drip(head + b"x" * 40)
            return
        elif self.path.startswith("/huge"):  # says it is 64 MiB and would send them all
            self.send_response(200)
            self.send_header("Content-Length", str(64 * 1024 * 1024))
            self.end_headers()
            self._drip(b"y" * (64 * 1024 * 1024), every=0.0, size=65536)
            return
        else:
            status, payload = 200, json.dumps({"path": self.path}).encode()
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if self.path.startswith("/gzip"):
            self.send_header("Content-Encoding", "gzip")  # whatever the client asked for
        self.send_header("Content-Length", str(len(payload)))
        if self.server.close_after_answer:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)
        if self.server.drop_idle:
            self.close_connection = True

    def _drip(self, data: bytes, every: float = 0.1, size: int = 1) -> None:
        try:
            for start in range(0, len(data), size):
                self.wfile.write(data[start : start + size])
                self.wfile.flush()
                self.server.written += size
                if every:
                    threading.Event().wait(every)
        except OSError:
            pass  # the client hung up: what the tests want
        self.close_connection = True

    do_GET = do_POST = do_PUT = _answer

    def do_CONNECT(self) -> None:  # as a proxy that wants credentials it does not accept
        self.server.requests.append({"method": "CONNECT", "target": self.path, "headers": dict(self.headers)})
        self.send_response(407)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    threading.Thread(target=recorder.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    pooled = HttpClient()
    yield pooled
    pooled.close()


def test_sends_the_query_the_body_and_the_headers_it_is_given(server, client):
    answer = client.request(
        "POST",
        server.url + "/v1/things?fixed=1",
        params={"page": "2", "tag": ["a", "b"], "pageToken": None},
        json={"name": "x"},
        headers={"Authorization": "Bearer t"},
        timeout=5,
    )
    sent = server.requests[-1]
    assert answer.status_code == 200 and answer.ok
    assert answer.json() == {"path": "/v1/things?fixed=1&page=2&tag=a&tag=b"}
    assert answer.headers["content-type"] == "application/json; charset=utf-8"  # case-insensitive
    assert answer.text == json.dumps({"path": sent["target"]})
    assert sent["method"] == "POST" and json.loads(sent["body"]) == {"name": "x"}
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["Authorization"] == "Bearer t"
    assert sent["headers"]["Accept-Encoding"] == "identity"  # the body is read as sent, never compressed

    client.request("POST", server.url + "/form", data={"grant_type": "x", "scope": "a b"}, timeout=5)
    assert server.requests[-1]["body"] == b"grant_type=x&scope=a+b"
    assert server.requests[-1]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_a_compressed_answer_is_decoded_and_bounded(server, client, monkeypatch):
    assert client.request("GET", server.url + "/gzip", timeout=5).json()["compressed"] is True
    # ~60 bytes on the wire, ~2 KB decoded: the decoded size is what is bounded.
    monkeypatch.setattr(http_client, "MAX_BODY_BYTES", 1000)
    with pytest.raises(TransportError):
        client.request("GET", server.url + "/gzip", timeout=5)


def test_one_kept_alive_connection_serves_consecutive_calls(server, client):
    for _ in range(5):
        assert client.request("GET", server.url + "/ping", timeout=5).status_code == 200
    assert server.connections == 1 and client.connections_opened == 1


def test_a_connection_the_server_closed_is_not_reused(server, client):
    server.drop_idle = True
    for _ in range(3):
        assert client.request("GET", server.url + "/ping", timeout=5).status_code == 200
    assert server.connections == 3 and len(server.requests) == 3  # each call once, on a fresh connection


def test_a_reused_connection_that_breaks_is_retried_only_for_an_idempotent_method(server, client):
    server.vanish_on_reuse = True
    client.request("GET", server.url + "/first", timeout=5)
    assert client.request("GET", server.url + "/again", timeout=5).status_code == 200
    assert [r["target"] for r in server.requests] == ["/first", "/again", "/again"]  # resent on a new connection
    assert server.connections == 2

    with pytest.raises(TransportError):  # the second on that connection; a POST may have been acted on
        client.request("POST", server.url + "/create", json={}, timeout=5)
    assert [r["target"] for r in server.requests][3:] == ["/create"]  # sent once: the caller decides


def test_connection_close_is_honoured(server, client):
    server.close_after_answer = True
    client.request("GET", server.url + "/a", timeout=5)
    client.request("GET", server.url + "/b", timeout=5)
    assert client.connections_opened == 2


def test_redirects_are_answers_not_followed(server, client):
    answer = client.request("GET", server.url + "/redirect", timeout=5)
    assert answer.status_code == 302 and len(server.requests) == 1
    with pytest.raises(ValueError):
        client.request("GET", server.url + "/redirect", timeout=5, allow_redirects=True)


def test_failures_are_oserrors_that_name_the_host_but_not_the_query(server, client, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(TransportError) as refused:
        client.request("GET", f"http://127.0.0.1:{closed_port}/v1?key=SECRET-IN-QUERY", timeout=2)
    assert isinstance(refused.value, ConnectionError | OSError)
    assert "127.0.0.1" in str(refused.value) and "SECRET" not in str(refused.value)

    with pytest.raises(TimeoutError) as slow:
        client.request("GET", server.url + "/slow?key=SECRET-IN-QUERY", timeout=0.2)
    assert "SECRET" not in str(slow.value)

    monkeypatch.setattr(http_client, "MAX_BODY_BYTES", 1024)
    with pytest.raises(TransportError):
        client.request("GET", server.url + "/big", timeout=5)


def test_pool_is_shared_safely_by_many_threads(server):
    pooled = HttpClient(pool_size=4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(10):
                assert pooled.request("GET", server.url + "/ping", timeout=5).status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pooled.close()
    assert not errors and len(server.requests) == 80
    assert pooled.connections_opened <= 80 and server.connections == pooled.connections_opened


@contextmanager
def tls_server(tmp_path: Path) -> Iterator[tuple[Recorder, Path]]:
    """A recorder behind TLS with a certificate for 127.0.0.1 from a throwaway CA: (server, CA file)."""
    ca, cert, key = _self_signed_tls(tmp_path)
    recorder = Recorder()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    recorder.socket = context.wrap_socket(recorder.socket, server_side=True)
    threading.Thread(target=recorder.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield recorder, ca
    finally:
        recorder.shutdown()
        recorder.server_close()


def test_tls_is_verified_against_the_given_or_default_bundle(tmp_path: Path, monkeypatch):
    with tls_server(tmp_path) as (recorder, ca):
        pooled = HttpClient()
        assert pooled.request("GET", recorder.url + "/tls", timeout=5, verify=str(ca)).status_code == 200
        with pytest.raises(TransportError):  # certifi's bundle does not know the throwaway CA
            pooled.request("GET", recorder.url + "/tls", timeout=5)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # the variable requests honours
        assert HttpClient().request("GET", recorder.url + "/tls", timeout=5).status_code == 200
        with pytest.raises(ValueError):
            pooled.request("GET", recorder.url + "/tls", timeout=5, verify=False)
    # Every client of the process uses the one context built for a bundle.
    assert http_client.tls_context(str(ca)) is http_client.tls_context(str(ca))


def test_an_http_proxy_from_the_environment_gets_the_absolute_url(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the recorder plays the proxy
    pooled = HttpClient()
    pooled.request("GET", "http://provider.invalid:8080/v1/models?x=1", timeout=5)
    assert server.requests[-1]["target"] == "http://provider.invalid:8080/v1/models?x=1"
    assert server.requests[-1]["headers"]["Host"] == "provider.invalid:8080"

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    before = len(server.requests)
    pooled.request("GET", server.url + "/direct", timeout=5)
    assert server.requests[before]["target"] == "/direct"  # bypassed: origin form, straight to the server


def test_a_body_cut_short_of_its_length_is_a_failure_not_an_answer(server, client):
    with pytest.raises(TransportError):
        client.request("GET", server.url + "/truncated", timeout=5)


def test_an_unknown_charset_is_read_as_utf8(server, client):
    assert client.request("GET", server.url + "/charset", timeout=5).text == "{}"


def test_a_refused_header_fails_as_transport_error_without_the_value_or_its_cause(server, client):
    with pytest.raises(TransportError) as refused:
        client.request("GET", server.url + "/h", headers={"Authorization": "Bearer sk-SECRET\n"}, timeout=5)
    assert "SECRET" not in str(refused.value)
    assert refused.value.__context__ is None and refused.value.__cause__ is None  # nothing quoting it chained


def test_proxy_credentials_no_proxy_networks_and_all_proxy(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url.replace("http://", "http://user:p%40ss@"))
    HttpClient().request("GET", "http://provider.invalid/v1/models", timeout=5)
    assert server.requests[-1]["headers"]["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss

    monkeypatch.setenv("HTTPS_PROXY", server.url.replace("http://", "http://user:p%40ss@"))
    with pytest.raises(TransportError):  # the proxy refuses the tunnel (407)
        HttpClient().request("GET", "https://provider.invalid/v1/models", timeout=5)
    assert server.requests[-1]["method"] == "CONNECT" and server.requests[-1]["target"] == "provider.invalid:443"
    assert server.requests[-1]["headers"]["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"

    monkeypatch.setenv("NO_PROXY", "10.0.0.1, 127.0.0.0/8")  # a network, as requests reads NO_PROXY
    HttpClient().request("GET", server.url + "/direct", timeout=5)
    assert server.requests[-1]["target"] == "/direct"

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("ALL_PROXY", server.url)
    HttpClient().request("GET", "http://provider.invalid/all", timeout=5)
    assert server.requests[-1]["target"] == "http://provider.invalid/all"


def test_a_ca_directory_is_accepted_and_a_missing_bundle_is_a_transport_error(tmp_path: Path):
    with tls_server(tmp_path) as (recorder, ca):
        hashed = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)], capture_output=True, text=True)
        if hashed.returncode != 0:
            pytest.skip("no openssl command to name the CA file by its subject hash")
        directory = tmp_path / "certs"
        directory.mkdir()
        (directory / f"{hashed.stdout.strip()}.0").write_bytes(ca.read_bytes())
        pooled = HttpClient()
        assert pooled.request("GET", recorder.url + "/tls", timeout=5, verify=str(directory)).status_code == 200
        with pytest.raises(TransportError):
            pooled.request("GET", recorder.url + "/tls", timeout=5, verify=str(tmp_path / "missing.pem"))


# --- the whole call's end time, the body bound, pinned connections ---------------------------------


@pytest.mark.parametrize("path", ["/drip", "/drip-head"])
def test_a_slow_drip_answer_cannot_stretch_a_call_past_its_timeout(server, client, path):
    """Every read succeeds (a byte each 0.1 s, headers or body): the per-read wait never runs out, the call's does."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.request("GET", server.url + path, timeout=0.6)
    assert time.monotonic() - started < 0.6 + 0.3
    assert 2 <= server.written < 20  # it did drip, and was cut off long before its 4 s


def test_calls_sharing_a_deadline_end_by_it(server, client):
    deadline = time.monotonic() + 0.5
    client.request("GET", server.url + "/ping", timeout=5, deadline=deadline)
    with pytest.raises(TimeoutError):
        client.request("GET", server.url + "/drip", timeout=5, deadline=deadline)
    assert time.monotonic() < deadline + 0.3


def test_a_declared_body_over_the_bound_is_refused_before_it_is_read(server, client):
    before = client.bytes_received
    with pytest.raises(TransportError):
        client.request("GET", server.url + "/huge", timeout=5, max_body_bytes=1024)
    assert client.bytes_received - before < 16 * 1024  # the status line, the headers and one buffered read
    answer = client.request("GET", server.url + "/huge", timeout=5, max_body_bytes=1024, truncate_body=True)
    assert answer.status_code == 200 and answer.content == b"y" * 1024
    assert client.request("GET", server.url + "/ping", timeout=5).ok  # the cut connection was not pooled
    assert server.written < 32 * 1024 * 1024  # never drained


def test_a_pinned_call_connects_to_its_address_names_the_host_and_skips_the_proxy(server, client, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: a proxied call would fail
    port = server.server_address[1]
    answer = client.request("GET", f"http://hooks.invalid:{port}/pinned", timeout=5, connect_to="127.0.0.1")
    assert answer.ok and server.requests[-1]["target"] == "/pinned"
    assert server.requests[-1]["headers"]["Host"] == f"hooks.invalid:{port}"


def test_proxies_for_libraries_follow_the_same_no_proxy_reading(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", ".corp.example,10.0.0.0/8")
    assert http_client.proxies_for("https://sts.us-east-1.amazonaws.com") == {
        "https": "http://user:pw@proxy.internal:3128"
    }
    assert http_client.proxies_for("https://s3.corp.example/bucket") == {}
    assert http_client.proxies_for("https://10.1.2.3/x") == {}
