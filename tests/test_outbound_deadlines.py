"""Every outbound call ends in time and reads a bounded answer, and obeys NO_PROXY.

A slow-drip server answers at once and then sends its body one byte every
half second (tests/simulators/_serving.py ``dripping``): every read succeeds,
so only a deadline on the whole call stops it. Against it, a validation ends
within VALIDATION_DEADLINE_SECONDS, a webhook delivery within
WEBHOOK_TIMEOUT_SECONDS (and another org's delivery does not wait for it),
and an OAuth token request within its timeout, each plus at most 1 s. A
webhook receiver streaming a 300 MiB answer gets at most the delivery's
bound read. The libraries that used to take a ``requests`` session of their
own (msal; the OAuth token requests) honour NO_PROXY like every other call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.domain.caller import Caller
from shared.domain.models import Alert, Webhook, utc_now
from shared.domain.providers import OAuthSpec, default_registry
from shared.egress import webhooks
from shared.egress.webhooks import ANSWER_BYTES, deliver
from shared.oauth import OAuthClient, oauth_spec
from shared.oauth.token_endpoint import TokenEndpointUnavailable, request_tokens
from tests.conftest import key_with
from tests.simulators._serving import dripping
from tests.simulators.azure import AzureSimulator
from tests.test_azure_validation import azure_settings, connected

PEPPER = b"test-pepper"
SLACK_SECONDS = 1.0  # what the tests allow past a deadline
LOOPBACK = ("127.0.0.1",)


class Receiver:
    """A webhook endpoint: answers 200 at once, slowly (``drip``), or with an endless body (``stream_bytes``)."""

    def __init__(self, *, drip: bool = False, stream_bytes: int = 0) -> None:
        self.drip, self.stream_bytes = drip, stream_bytes
        self.received: list[bytes] = []
        self.written = 0  # body bytes the server managed to send
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def app(self, environ, start_response):
        self.received.append(Request(environ).get_data())
        if self.stream_bytes:
            response = Response(self._stream(), headers={"Content-Length": str(self.stream_bytes)})
        elif self.drip:
            response = dripping(Response(json.dumps({"received": True, "pad": "x" * 200})))
        else:
            response = Response('{"received": true}', mimetype="application/json")
        return response(environ, start_response)

    def _stream(self) -> Iterator[bytes]:
        chunk = b"x" * 65536
        while self.written < self.stream_bytes:
            yield chunk
            self.written += len(chunk)

    def stop(self) -> None:
        self.server.shutdown()


def _alert(org: str) -> Alert:
    return Alert(f"k-{org}", org, "openai", f"i-{org}", "expiring", "expires in 7 days")


# --- provider checks ---------------------------------------------------------------------------


def test_a_slow_drip_provider_cannot_stretch_a_validation_past_its_deadline(client, org_key, service):
    deadline = 2.0
    # The per-request timeout alone (5 s) would never fire: every read gets a byte.
    service.adapters.settings = replace(
        service.adapters.settings, validation_deadline_seconds=deadline, request_timeout_seconds=5.0
    )
    headers = {"X-API-Key": org_key}
    setup = client.post(
        "/api/v1/integrations/acme/openai/setup", json={"credentials": {"api_key": key_with("drip")}}, headers=headers
    )
    assert setup.status_code == 201, setup.get_json()
    started = time.monotonic()
    validated = client.post("/api/v1/integrations/acme/openai/validate", headers=headers).get_json()
    elapsed = time.monotonic() - started
    print(f"\nvalidation against a slow-drip provider: {elapsed:.2f} s (VALIDATION_DEADLINE_SECONDS={deadline:g})")
    assert elapsed < deadline + SLACK_SECONDS
    assert validated["error"] == "Unable to connect to OpenAI"
    assert validated["details"]["connection"] is False


# --- webhook deliveries ------------------------------------------------------------------------


def test_a_slow_drip_webhook_ends_within_its_timeout_and_delays_no_other_org():
    timeout = 1.5
    slow, fast = Receiver(drip=True), Receiver()
    stuck, healthy = _alert("slow-org"), _alert("fast-org")
    hooks = {"slow-org": Webhook("slow-org", "w1", slow.url), "fast-org": Webhook("fast-org", "w2", fast.url)}
    try:
        started_at, started = utc_now(), time.monotonic()
        deliver([stuck, healthy], hooks, PEPPER, timeout_seconds=timeout, max_attempts=3, insecure_hosts=LOOPBACK)
        elapsed = time.monotonic() - started
    finally:
        slow.stop()
        fast.stop()
    print(f"\nwebhook deliveries with one slow-drip receiver: {elapsed:.2f} s (WEBHOOK_TIMEOUT_SECONDS={timeout:g})")
    assert elapsed < timeout + SLACK_SECONDS
    assert stuck.delivery_status == "failed" and len(slow.received) >= 1
    assert healthy.delivery_status == "delivered" and len(fast.received) == 1
    assert healthy.delivered_at is not None
    # Delivered while the slow one was still being waited for, not after it.
    assert healthy.delivered_at - started_at < timedelta(seconds=timeout / 2)


def test_a_webhook_answer_is_read_up_to_its_bound_and_no_further():
    size = 300 * 1024 * 1024
    receiver = Receiver(stream_bytes=size)
    alert = _alert("acme")
    before = webhooks.DELIVERIES.bytes_received
    try:
        started = time.monotonic()
        deliver([alert], {"acme": Webhook("acme", "w1", receiver.url)}, PEPPER, insecure_hosts=LOOPBACK)
        elapsed = time.monotonic() - started
    finally:
        receiver.stop()
    read = webhooks.DELIVERIES.bytes_received - before
    print(f"\nwebhook answer of {size} bytes: read {read} bytes (bound {ANSWER_BYTES}) in {elapsed:.2f} s")
    assert alert.delivery_status == "delivered" and alert.delivery_attempts == 1  # its status is the answer
    assert read <= ANSWER_BYTES + 8192  # the bound, plus the status line, headers and one buffered read
    assert receiver.written < size // 4  # the connection was closed, not drained


# --- OAuth token requests ----------------------------------------------------------------------


def _canva(oauth_sim) -> tuple[OAuthSpec, str, OAuthClient]:
    env = oauth_sim.env()
    client = OAuthClient(
        env["INTEGRATIONS_SECRET_OAUTH_CANVA_CLIENT_ID"], env["INTEGRATIONS_SECRET_OAUTH_CANVA_CLIENT_SECRET"]
    )
    return oauth_spec(default_registry().providers["canva"]), env["PROVIDER_CANVA_TOKEN_URL"], client


def test_a_slow_drip_token_endpoint_cannot_stretch_a_token_request_past_its_timeout(oauth_sim):
    spec, url, client = _canva(oauth_sim)
    timeout = 1.0
    oauth_sim.reset()
    oauth_sim.configure(token_drip_seconds=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(TokenEndpointUnavailable):
            request_tokens(
                spec, url, client, {"grant_type": "refresh_token", "refresh_token": "r"}, timeout_seconds=timeout
            )
        elapsed = time.monotonic() - started
        assert oauth_sim.refresh_calls("canva") == 1
    finally:
        oauth_sim.reset()
    print(f"\nOAuth token request against a slow-drip endpoint: {elapsed:.2f} s (timeout {timeout:g} s)")
    assert elapsed < timeout + SLACK_SECONDS


# --- proxies -----------------------------------------------------------------------------------


class RecordingProxy(ThreadingHTTPServer):
    """An HTTP proxy that records what it is asked and forwards nothing."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.asked: list[str] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingProxy

    def _refuse(self) -> None:
        self.server.asked.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(403 if self.command == "CONNECT" else 502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_CONNECT = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch) -> Iterator[RecordingProxy]:
    running = RecordingProxy()
    monkeypatch.setenv("HTTP_PROXY", running.url)
    monkeypatch.setenv("HTTPS_PROXY", running.url)
    yield running
    running.stop()


def test_oauth_token_requests_go_through_the_proxy_unless_no_proxy_names_the_host(oauth_sim, proxy, monkeypatch):
    spec, url, client = _canva(oauth_sim)
    grant = {"grant_type": "refresh_token", "refresh_token": "r"}
    with pytest.raises(TokenEndpointUnavailable, match="502"):  # the proxy's answer, not the provider's
        request_tokens(spec, url, client, grant, timeout_seconds=5)
    assert proxy.asked == [f"POST {url}"]

    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    oauth_sim.reset()
    with pytest.raises(Exception) as refused:  # the simulator itself answers: the refresh token is unknown
        request_tokens(spec, url, client, grant, timeout_seconds=5)
    assert type(refused.value).__name__ == "GrantRejected"
    assert proxy.asked == [f"POST {url}"] and oauth_sim.refresh_calls("canva") == 1


@pytest.fixture(scope="module")
def azure_sim():
    with AzureSimulator() as simulator:
        yield simulator


def test_msal_goes_through_the_proxy_unless_no_proxy_names_the_host(service, azure_sim, proxy, monkeypatch):
    service.adapters.settings = azure_settings(service.adapters.settings, azure_sim)
    record, _ = service.create_api_key("acme")
    caller = Caller(key_id=record.key_id, org_slug="acme", is_admin=False, request_id="req-proxy")
    principal, scope = connected(azure_sim.directory)
    service.setup(caller, "azure", principal.credentials(), {"scope": scope}, None)

    proxied = service.validate(caller, "azure")
    assert proxied.result.ok is False and proxied.result.details["connection"] is False
    assert proxy.asked and all(line.startswith("CONNECT 127.0.0.1:") for line in proxy.asked)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    asked = len(proxy.asked)
    direct = service.validate(caller, "azure")
    assert direct.result.ok, direct.result.details
    assert len(proxy.asked) == asked  # msal's Entra ID calls and the ARM/Graph checks all went direct
