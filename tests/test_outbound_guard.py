"""Outbound requests go only to hosts the service chose.

A loopback listener stands for "inside the platform": no uploaded token_uri
and no webhook URL, in any spelling, may make the service connect to it.
Webhook deliveries connect to the address that was checked, with the right
TLS SNI/Host, and follow no redirects; token refreshes follow no redirects."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.app.wiring import Adapters
from shared.domain.models import Alert, Webhook
from shared.domain.providers import default_registry
from shared.egress.guard import OutboundRefused, canonical_host, parse_target
from shared.egress.webhooks import deliver
from shared.validators import validate_credential
from tests.test_gcp_validation import service_account

PEPPER = b"test-pepper"


class Listener:
    """Counts TCP connections to 127.0.0.1:port (and [::1]:port where IPv6 exists)."""

    def __init__(self):
        self.connections = 0
        self.sockets = [socket.create_server(("127.0.0.1", 0))]
        self.port = self.sockets[0].getsockname()[1]
        try:
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        except OSError:
            pass
        for listening in self.sockets:
            listening.settimeout(0.2)
            threading.Thread(target=self._accept, args=(listening,), daemon=True).start()

    def _accept(self, listening):
        while listening.fileno() != -1:
            try:
                connection, _ = listening.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self):
        for listening in self.sockets:
            listening.close()


@pytest.fixture
def listener():
    running = Listener()
    yield running
    running.close()


class Receiver:
    """An HTTP(S) endpoint recording requests (and the TLS SNI it was asked for)."""

    def __init__(self, status=200, headers=None, ssl_context=None):
        self.status, self.headers, self.received = status, headers or {}, []
        self.sni: list[str] = []
        if ssl_context is not None:
            ssl_context.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, ssl_context=ssl_context)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def app(self, environ, start_response):
        request = Request(environ)
        self.received.append((dict(request.headers), request.get_data()))
        return Response("{}", status=self.status, headers=self.headers)(environ, start_response)

    def stop(self):
        self.server.shutdown()


def _alert() -> Alert:
    return Alert("k", "acme", "openai", "i-1", "expiring", "expires in 7 days")


def _deliver(url: str, insecure_hosts: tuple[str, ...] = ()) -> Alert:
    alert = _alert()
    deliver(
        [alert],
        {"acme": Webhook("acme", "w1", url)},
        PEPPER,
        timeout_seconds=2,
        max_attempts=2,
        backoff_base_seconds=0,
        insecure_hosts=insecure_hosts,
    )
    return alert


# Loopback written every way inet_aton, IPv6 and resolvers accept; vm and runsc are in /etc/hosts.
LOOPBACK_HOSTS = [
    "2130706433",
    "0x7f000001",
    "127.1",
    "0177.0.0.1",
    "017700000001",
    "0",
    "127.0.0.1",
    "127.0.0.1.",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "localhost",
    "localhost.",
    "vm",
    "runsc",
]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_delivery_never_connects_to_loopback_in_any_spelling(listener, host):
    for scheme in ("https", "http"):
        alert = _deliver(f"{scheme}://{host}:{listener.port}/hook")
        assert alert.delivery_status == "failed"
    assert listener.connections == 0


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_setting_an_internal_webhook_is_a_clear_400(client, org_key, service, host):
    response = client.put(
        "/api/v1/organizations/acme/webhook", json={"url": f"https://{host}/hook"}, headers={"X-API-Key": org_key}
    )
    body = response.get_json()
    assert response.status_code == 400 and body["success"] is False, body
    assert "internal" in body["error"] or "canonical" in body["error"], body["error"]
    assert service.adapters.store.get_webhooks(["acme"]) == {}


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.7/h",
        "https://100.64.0.1/h",  # CGNAT
        "https://169.254.169.254/computeMetadata/v1/",
        "https://metadata.google.internal/x",
        "https://224.0.0.1/h",
        "https://240.0.0.1/h",
        "https://[fd00::1]/h",
        "https://[fe80::1]/h",
        "https://[64:ff9b::a9fe:a9fe]/h",  # NAT64 of the metadata server
        "https://[2002:7f00:1::]/h",  # 6to4 of loopback
    ],
)
def test_internal_address_ranges_are_refused(url):
    with pytest.raises(OutboundRefused, match="internal"):
        parse_target(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1:1\\@hooks.example/h", "backslash"),
        ("https://user:pw@hooks.example/h", "user name"),
        ("https://hooks.example@127.0.0.1/h", "user name"),
        ("https://hooks.example:8443/h", "default https port"),
        ("https://hooks.example./h", "canonical"),
        ("https://134744072/h", "canonical"),  # 8.8.8.8, spelled as one number
        ("http://hooks.example/h", "https"),
        ("https://hooks example/h", "spaces"),
        ("https://h\u00f6oks.example/h", "non-ASCII"),
        ("", "https"),
    ],
)
def test_ambiguous_or_unusual_urls_are_refused(url, reason):
    with pytest.raises(OutboundRefused, match=reason):
        parse_target(url)


def test_canonical_hosts():
    assert canonical_host("0x7f000001") == canonical_host("127.1") == "127.0.0.1"
    assert canonical_host("[::ffff:7f00:1]") == "127.0.0.1"
    assert canonical_host("Hooks.Example.") == "hooks.example"
    assert parse_target("https://Hooks.example/a?b=1#frag").request_target == "/a?b=1"


def test_delivery_is_pinned_to_the_checked_address_and_keeps_the_host_name():
    receiver = Receiver()
    try:
        alert = _deliver(f"http://localhost:{receiver.port}/hook?x=1", insecure_hosts=("localhost",))
    finally:
        receiver.stop()
    assert alert.delivery_status == "delivered"
    headers, body = receiver.received[0]
    assert headers["Host"] == f"localhost:{receiver.port}"
    assert json.loads(body)["alert_id"] == alert.alert_id


def _tls_context(tmp_path):
    """A throwaway CA and a certificate for 'localhost' signed by it."""
    now = dt.datetime.now(dt.UTC)

    def certificate(subject, issuer, public_key, signing_key, *, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", "test CA", ca_key.public_key(), ca_key, ca=True)
    leaf = certificate("localhost", "test CA", leaf_key.public_key(), ca_key, ca=False)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file


def test_https_delivery_to_a_pinned_address_sends_sni_and_checks_the_certificate(tmp_path, monkeypatch):
    context, ca_file = _tls_context(tmp_path)
    receiver = Receiver(ssl_context=context)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
        untrusted = _deliver(f"https://localhost:{receiver.port}/hook", insecure_hosts=("localhost",))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
        delivered = _deliver(f"https://localhost:{receiver.port}/hook", insecure_hosts=("localhost",))
    finally:
        receiver.stop()
    assert untrusted.delivery_status == "failed"
    assert delivered.delivery_status == "delivered"
    assert receiver.sni[-1] == "localhost"
    assert receiver.received[-1][0]["Host"] == f"localhost:{receiver.port}"


def test_delivery_follows_no_redirect(listener):
    redirector = Receiver(status=307, headers={"Location": f"http://127.0.0.1:{listener.port}/stolen"})
    try:
        alert = _deliver(f"http://127.0.0.1:{redirector.port}/hook", insecure_hosts=("127.0.0.1",))
    finally:
        redirector.stop()
    assert alert.delivery_status == "failed" and alert.delivery_attempts == 1
    assert len(redirector.received) == 1 and listener.connections == 0


# --- service-account token_uri ------------------------------------------------------------------


def _token_uris(port: int) -> list[str]:
    return [
        f"https://127.0.0.1:{port}\\@oauth2.googleapis.com/token",
        f"https://[::1]:{port}\\@oauth2.googleapis.com/token",
        "https://169.254.169.254\\@oauth2.googleapis.com/token",
        f"https://oauth2.googleapis.com@127.0.0.1:{port}/token",
        f"https://oauth2.googleapis.com:{port}/token",
        "http://oauth2.googleapis.com/token",
        "https://oauth2.googleapis.com./token",
        f"http://127.0.0.1:{port}/token",
    ]


def test_setup_refuses_a_token_uri_that_is_not_plainly_google(client, org_key, listener, service):
    for token_uri in _token_uris(listener.port):
        response = client.post(
            "/api/v1/integrations/acme/gcp/setup",
            json={
                "credentials": {"service_account_json": json.dumps(service_account(token_uri))},
                "config": {"project_id": "integrations-test", "billing_dataset_id": "billing"},
            },
            headers={"X-API-Key": org_key},
        )
        body = response.get_json()
        assert response.status_code == 400 and body["code"] == "invalid_credential_format", (token_uri, body)
        assert any("token_uri" in problem for problem in body["details"]["problems"])
    assert service.adapters.store.list_integrations("acme") == []
    assert listener.connections == 0


def _gcp_check(settings, token_uri: str):
    spec = default_registry().providers["gcp"]
    # BigQuery calls go to a closed port: only the token request matters here.
    closed = replace(settings, provider_base_urls={"gcp": "http://127.0.0.1:9"}, validation_max_attempts=1)
    context = Adapters(closed).validation_context(spec)
    secret = json.dumps(service_account(token_uri))
    return validate_credential(spec, secret, {"project_id": "integrations-test", "billing_dataset_id": "b"}, context)


def test_a_stored_key_token_uri_is_never_contacted(settings, simulator, listener):
    """A key stored before the upload check tightened: the token still comes from GCP_TOKEN_URI."""
    simulator.reset()
    for token_uri in _token_uris(listener.port):
        _gcp_check(settings, token_uri)
    assert listener.connections == 0
    assert simulator.stats()["requests"]["google"] == len(_token_uris(listener.port))


def test_token_refresh_follows_no_redirect(settings, listener):
    redirector = Receiver(status=307, headers={"Location": f"http://127.0.0.1:{listener.port}/token"})
    try:
        redirected = replace(settings, gcp_token_uri=f"http://127.0.0.1:{redirector.port}/token")
        result = _gcp_check(redirected, "https://oauth2.googleapis.com/token")
    finally:
        redirector.stop()
    assert result.ok is False and len(redirector.received) >= 1
    assert listener.connections == 0
