"""Every input gets a 4xx JSON answer, never a 500: deep JSON, NaN, far-off
dates, non-ASCII digits; 405 says Allow; OPTIONS and CORS answer in JSON;
the local server's own 414/431 are JSON too."""

from __future__ import annotations

import base64
import json
import socket
import threading
from dataclasses import replace

import flask
import pytest
from werkzeug.serving import make_server

import main
from shared.commands.local_server import JsonErrorRequestHandler, create_app
from tests.conftest import OPENAI_KEY
from tests.test_http_api import BASE, call, setup

DEEP = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 5_000 + "1" + "}" * 5_000


def _json_error(response, status=400):
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["success"] is False and body["request_id"]
    return body


@pytest.mark.parametrize("raw", [DEEP, DEEP_OBJECT, '{"config": ' + DEEP + "}"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", BASE + "/acme/openai/setup"),
        ("PUT", BASE + "/acme/openai"),
        ("POST", BASE + "/acme/openai/rotate"),
        ("PUT", "/api/v1/organizations/acme/webhook"),
        ("POST", "/api/v1/admin/revalidate"),
    ],
)
def test_deeply_nested_json_is_a_400(client, service, org_key, method, path, raw):
    key = service.create_api_key("ops", is_admin=True)[1] if "admin" in path else org_key
    response = client.open(path, method=method, data=raw, headers={"X-API-Key": key}, content_type="application/json")
    assert "nests deeper" in _json_error(response)["error"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_numbers(client, service, constant):
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    response = client.post(
        "/api/v1/admin/revalidate",
        data=f'{{"max_seconds": {constant}}}',
        headers={"X-API-Key": admin_key},
        content_type="application/json",
    )
    assert constant in _json_error(response)["error"]


def test_service_account_json_text_is_parsed_with_the_same_limits(client, org_key):
    status, body = call(
        client,
        "POST",
        "/acme/gcp/setup",
        org_key,
        {
            "credentials": {"service_account_json": "[" * 5000 + "]" * 5000},
            "config": {"project_id": "proj-abcde", "billing_dataset_id": "b"},
        },
    )
    assert status == 400 and body["code"] == "invalid_credential_format", body


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "1999-12-31T23:59:59Z",
        "2201-01-01T00:00:00Z",
    ],
)
def test_timestamps_outside_2000_to_2200_are_refused(client, org_key, value):
    status, body = setup(client, org_key, expires_at=value)
    assert status == 400 and "2000 to 2200" in body["error"]
    assert setup(client, org_key, expires_at="2200-12-31T23:59:59Z")[0] == 201
    status, body = call(client, "PUT", "/acme/openai", org_key, {"expires_at": value})
    assert status == 400 and "2000 to 2200" in body["error"]
    status, body = call(
        client,
        "POST",
        "/acme/openai/rotate",
        org_key,
        {"new_credentials": {"api_key": OPENAI_KEY}, "expires_at": value},
    )
    assert status == 400


@pytest.mark.parametrize(
    "value", ["\uff12\uff10\uff12\uff17-01-31T00:00:00Z", "2027-01-31", "tomorrow", "2027-01-31T00:00:00"]
)
def test_malformed_timestamps_are_refused(client, org_key, value):
    status, body = setup(client, org_key, expires_at=value)
    assert status == 400 and "expires_at" in body["error"]


@pytest.mark.parametrize("limit", ["%C2%B9", "%D9%A1%D9%A0", "%EF%BC%91", "1e2", "-1", "0", "501", "9" * 40, ""])
def test_alert_limit_takes_ascii_digits_only(client, org_key, limit):
    response = client.get(f"/api/v1/organizations/acme/alerts?limit={limit}", headers={"X-API-Key": org_key})
    assert "limit" in _json_error(response)["error"]


def test_alert_limit_default_and_bounds(client, org_key):
    for query in ("", "?limit=1", "?limit=500"):
        assert (
            client.get("/api/v1/organizations/acme/alerts" + query, headers={"X-API-Key": org_key}).status_code == 200
        )


@pytest.mark.parametrize("value", [0, -1, 3601, 1e308, 10**400, True, "5"])
def test_revalidate_max_seconds_is_bounded(client, service, value):
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    raw = '{"max_seconds": ' + (json.dumps(value) if not isinstance(value, int) or value < 10**20 else str(value)) + "}"
    response = client.post(
        "/api/v1/admin/revalidate", data=raw, headers={"X-API-Key": admin_key}, content_type="application/json"
    )
    _json_error(response)


def test_platform_token_with_deep_json_is_a_401(client, service):
    service.adapters.settings = replace(service.adapters.settings, revalidate_auth="platform")
    payload = base64.urlsafe_b64encode(DEEP[:6000].encode()).decode().rstrip("=")
    response = client.post("/api/v1/admin/revalidate", headers={"Authorization": f"Bearer e30.{payload}.sig"})
    assert _json_error(response, 401)["code"] == "unauthenticated"


# --- 405, OPTIONS, CORS -------------------------------------------------------------------------


def test_405_names_the_allowed_methods(client, org_key):
    response = client.patch(BASE + "/acme/openai", headers={"X-API-Key": org_key})
    _json_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
    response = client.get(BASE + "/acme/openai/setup", headers={"X-API-Key": org_key})
    _json_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_options_is_answered_in_json(client):
    response = client.options(BASE + "/acme/openai")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json()["allow"] == ["DELETE", "GET", "HEAD", "OPTIONS", "PUT"]
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
    assert "Access-Control-Allow-Origin" not in response.headers  # no CORS unless configured
    assert client.options("/healthz").get_json()["allow"] == ["GET", "HEAD", "OPTIONS"]
    _json_error(client.options("/no/such/path"), 404)


ORIGIN = "https://app.example"


@pytest.fixture
def cors_client(client, service):
    service.adapters.settings = replace(service.adapters.settings, cors_allowed_origins=(ORIGIN,))
    return client


def test_cors_preflight_for_an_allowed_origin(cors_client):
    response = cors_client.options(
        BASE + "/acme/openai",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "HEAD",
        "PUT",
        "DELETE",
        "OPTIONS",
    }
    allowed_headers = response.headers["Access-Control-Allow-Headers"]
    assert all(name in allowed_headers for name in ("X-API-Key", "Content-Type", "X-User-Id"))
    assert "Origin" in response.headers["Vary"]


def test_cors_on_answers_and_errors_for_allowed_origins_only(cors_client, org_key):
    ok = cors_client.get(BASE + "/acme", headers={"X-API-Key": org_key, "Origin": ORIGIN})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-Id" in ok.headers["Access-Control-Expose-Headers"]
    denied = cors_client.get(BASE + "/acme", headers={"Origin": ORIGIN})
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = cors_client.get(BASE + "/acme", headers={"X-API-Key": org_key, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers and "Origin" in other.headers["Vary"]
    preflight = cors_client.options(
        BASE + "/acme", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_each_function_answers_options_and_cors_itself(service):
    """Function URLs are called without the local server: the handler does OPTIONS and CORS."""
    from shared.inbound import http

    service.adapters.settings = replace(service.adapters.settings, cors_allowed_origins=(ORIGIN,))
    http.use_service(service)
    try:
        app = flask.Flask("function")
        handler = main.ENTRY_POINTS["integration_update"]
        with app.test_request_context(
            BASE + "/acme/openai", method="OPTIONS", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
        ):
            response = handler(flask.request)
        with app.test_request_context(BASE + "/acme/openai", method="GET"):
            wrong_method = handler(flask.request)
    finally:
        http.use_service(None)
    assert response.status_code == 200 and response.get_json()["allow"] == ["OPTIONS", "PUT"]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    # Behind the gateway any function of the path may get the preflight: it allows every API method.
    assert response.headers["Access-Control-Allow-Methods"] == "DELETE, GET, OPTIONS, POST, PUT"
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "PUT, OPTIONS"


@pytest.mark.parametrize(
    "path",
    [BASE + "//openai", BASE + "/acme//openai", "/api/v1//integrations/acme", BASE + "/acme/openai//validate"],
)
def test_a_double_slash_is_a_json_404_not_a_redirect(client, service, org_key, path):
    """werkzeug merges "//" with an HTML 308; no path of ours has an empty segment, so it is not found."""
    from shared.inbound import http

    answered = client.get(path, headers={"X-API-Key": org_key})
    assert answered.status_code == 404 and answered.get_json()["code"] == "not_found"
    assert "Location" not in answered.headers
    # The same through a function alone, as Cloud Functions calls it.
    http.use_service(service)
    try:
        with flask.Flask("function").test_request_context(path, headers={"X-API-Key": org_key}):
            alone = main.ENTRY_POINTS["integration_get"](flask.request)
    finally:
        http.use_service(None)
    assert alone.status_code == 404 and alone.get_json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["//", "/%2F", "/%2Fapi/v1/integrations/acme"])
def test_an_empty_segment_at_the_start_is_a_json_404_not_the_console_or_a_redirect(client, org_key, path):
    """werkzeug's request path drops leading slashes ("//" would be the console's "/") and its router
    answers an empty path with an HTML 308."""
    answered = client.get(path, headers={"X-API-Key": org_key})
    assert answered.status_code == 404 and answered.get_json()["code"] == "not_found"


# --- the local server's own errors -------------------------------------------------------------


@pytest.fixture
def live_server(service):
    from shared.inbound import http

    http.use_service(service)
    server = make_server("127.0.0.1", 0, create_app(), threaded=True, request_handler=JsonErrorRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    http.use_service(None)


def _raw(port: int, request: bytes) -> tuple[int, dict, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("target", ["//", "//api/v1/integrations/acme", "/%2F", "//healthz", "//openapi.json"])
def test_the_local_server_answers_a_leading_double_slash_with_a_json_404(live_server, org_key, target):
    """werkzeug's development server reads "//api/v1/x" as a host and a path and "//" as "/": the target
    as sent is what decides."""
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nX-API-Key: {org_key}\r\nConnection: close\r\n\r\n"
    answered, headers, body = _raw(live_server, request.encode())
    assert answered == 404 and headers["Content-Type"] == "application/json", body
    assert body["code"] == "not_found"


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431, "headers_too_large"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 70_000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    ],
)
def test_local_server_errors_are_json(live_server, request_bytes, status, code):
    answered, headers, body = _raw(live_server, request_bytes)
    assert answered == status
    assert headers["Content-Type"] == "application/json"
    assert body["success"] is False and body["code"] == code and body["request_id"]
