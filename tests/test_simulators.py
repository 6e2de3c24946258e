"""The provider simulator answers with the shapes and statuses of docs/providers.md.

Every test talks HTTP to a real server on loopback with ``requests`` (or
google-auth for the token endpoint), as the validators will.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.simulators import ProviderSimulator, decode_jwt_claims, mask_openai_key

REPO_ROOT = Path(__file__).resolve().parents[1]
ANTHROPIC_VERSION = "2023-06-01"
TIMEOUT = 5

OPENAI_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8" * 3
OPENAI_ADMIN_KEY = "sk-admin-" + "Z9y8X7w6V5u4T3s2" * 3
ANTHROPIC_KEY = "sk-ant-api03-" + "Q1w2E3r4T5y6U7i8" * 5
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-" + "P0o9I8u7Y6t5R4e3" * 5
GEMINI_KEY = "AIzaSy" + "M1n2B3v4C5x6Z7l8K9j0H1g2F3d"


@pytest.fixture(scope="module")
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh_state(sim: ProviderSimulator) -> Iterator[None]:
    sim.reset()
    yield
    sim.configure(latency_ms=0, slow_seconds=3)


def marked(key: str, marker: str) -> str:
    """``key`` with ``marker`` inserted after its provider prefix."""
    for prefix in (
        "sk-ant-admin01-",
        "sk-ant-api03-",
        "sk-admin-",
        "sk-proj-",
        "AIzaSy",
    ):
        if key.startswith(prefix):
            return f"{prefix}{marker}-{key[len(prefix) :]}"
    raise AssertionError(f"no known prefix on {key!r}")


def openai_get(sim: ProviderSimulator, path: str, key: str | None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(sim.base_url("openai") + path, headers=headers, params=params, timeout=TIMEOUT)


def anthropic_get(
    sim: ProviderSimulator,
    path: str,
    key: str | None,
    version: str | None = ANTHROPIC_VERSION,
    **params: Any,
) -> requests.Response:
    headers = {}
    if key:
        headers["x-api-key"] = key
    if version:
        headers["anthropic-version"] = version
    return requests.get(
        sim.base_url("anthropic") + path,
        headers=headers,
        params=params,
        timeout=TIMEOUT,
    )


def gemini_get(sim: ProviderSimulator, key: str | None, *, in_query: bool = False, **params: Any) -> requests.Response:
    headers = {}
    if key and in_query:
        params["key"] = key
    elif key:
        headers["x-goog-api-key"] = key
    return requests.get(
        sim.base_url("gemini") + "/v1beta/models",
        headers=headers,
        params=params,
        timeout=TIMEOUT,
    )


def today_unix() -> int:
    return int(time.time()) // 86400 * 86400


# --------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------


def test_openai_valid_key_lists_gpt_models_with_tier_headers(sim: ProviderSimulator):
    response = openai_get(sim, "/v1/models", OPENAI_KEY)

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["data"], "expected some models"
    for model in body["data"]:
        assert model["id"].startswith("gpt-")
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"]
    assert response.headers["x-ratelimit-limit-requests"] == "5000"
    assert response.headers["x-ratelimit-limit-tokens"] == "800000"


def test_openai_bad_key_is_401_and_echoes_part_of_the_key(sim: ProviderSimulator):
    key = marked(OPENAI_KEY, "bad")

    response = openai_get(sim, "/v1/models", key)

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert error["message"].startswith("Incorrect API key provided: ")
    assert key[:8] in error["message"]
    assert key[-4:] in error["message"]
    assert key not in error["message"]
    assert mask_openai_key(key) in error["message"]


def test_openai_key_without_sk_prefix_is_rejected(sim: ProviderSimulator):
    assert openai_get(sim, "/v1/models", "not-a-key-at-all").status_code == 401


def test_openai_missing_authorization_is_401(sim: ProviderSimulator):
    response = openai_get(sim, "/v1/models", None)

    assert response.status_code == 401
    assert "didn't provide an API key" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("marker", "status", "error_type"),
    [
        ("forbidden", 403, "invalid_request_error"),
        ("ratelimit", 429, "requests"),
        ("down", 500, "server_error"),
        ("overloaded", 503, "server_error"),
    ],
)
def test_openai_failure_markers(sim: ProviderSimulator, marker: str, status: int, error_type: str):
    key = marked(OPENAI_KEY, marker)

    for _ in range(2):  # "always", not only the first time
        response = openai_get(sim, "/v1/models", key)
        assert response.status_code == status
        assert response.json()["error"]["type"] == error_type


def test_openai_ratelimit_carries_retry_after(sim: ProviderSimulator):
    response = openai_get(sim, "/v1/models", marked(OPENAI_KEY, "ratelimit"))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


# --------------------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------------------


def test_anthropic_valid_key_lists_claude_models_with_tier_headers(
    sim: ProviderSimulator,
):
    response = anthropic_get(sim, "/v1/models", ANTHROPIC_KEY)

    assert response.status_code == 200
    body = response.json()
    assert body["has_more"] is False
    assert body["data"]
    for model in body["data"]:
        assert model["type"] == "model"
        assert model["id"].startswith("claude-")
        assert model["display_name"]
        assert model["created_at"].endswith("Z")
    assert body["first_id"] == body["data"][0]["id"]
    assert body["last_id"] == body["data"][-1]["id"]
    assert response.headers["anthropic-ratelimit-requests-limit"] == "1000"
    assert response.headers["anthropic-ratelimit-tokens-limit"] == "80000"


def test_anthropic_models_paginate_with_after_id(sim: ProviderSimulator):
    first = anthropic_get(sim, "/v1/models", ANTHROPIC_KEY, limit=1).json()
    assert len(first["data"]) == 1
    assert first["has_more"] is True

    rest = anthropic_get(sim, "/v1/models", ANTHROPIC_KEY, limit=1000, after_id=first["last_id"]).json()
    assert rest["has_more"] is False
    assert first["last_id"] not in [model["id"] for model in rest["data"]]
    assert anthropic_get(sim, "/v1/models", ANTHROPIC_KEY, limit=0).status_code == 400


def test_anthropic_missing_version_header_is_400(sim: ProviderSimulator):
    response = anthropic_get(sim, "/v1/models", ANTHROPIC_KEY, version=None)

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "anthropic-version: header is required",
        },
    }


@pytest.mark.parametrize("key", [None, marked(ANTHROPIC_KEY, "bad"), "sk-proj-x"])
def test_anthropic_missing_or_bad_key_is_401(sim: ProviderSimulator, key: str | None):
    response = anthropic_get(sim, "/v1/models", key)

    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    if key:
        assert body["error"]["message"] == "invalid x-api-key"


@pytest.mark.parametrize(
    ("marker", "status", "error_type"),
    [
        ("forbidden", 403, "permission_error"),
        ("ratelimit", 429, "rate_limit_error"),
        ("down", 500, "api_error"),
        ("overloaded", 529, "overloaded_error"),
    ],
)
def test_anthropic_failure_markers(sim: ProviderSimulator, marker: str, status: int, error_type: str):
    key = marked(ANTHROPIC_KEY, marker)

    for _ in range(2):
        response = anthropic_get(sim, "/v1/models", key)
        assert response.status_code == status
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == error_type
        assert body["error"]["message"]


def test_anthropic_ratelimit_carries_retry_after(sim: ProviderSimulator):
    response = anthropic_get(sim, "/v1/models", marked(ANTHROPIC_KEY, "ratelimit"))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"


# --------------------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_query", [False, True], ids=["header", "query"])
def test_gemini_valid_key_lists_models(sim: ProviderSimulator, in_query: bool):
    response = gemini_get(sim, GEMINI_KEY, in_query=in_query)

    assert response.status_code == 200
    models = response.json()["models"]
    assert models
    for model in models:
        assert model["name"].startswith("models/gemini-")
        assert model["displayName"]
        assert isinstance(model["supportedGenerationMethods"], list)
    assert "nextPageToken" not in response.json()


def test_gemini_pages_with_page_token(sim: ProviderSimulator):
    first = gemini_get(sim, GEMINI_KEY, pageSize=1).json()
    assert len(first["models"]) == 1

    second = gemini_get(sim, GEMINI_KEY, pageSize=1, pageToken=first["nextPageToken"])
    assert second.json()["models"][0]["name"] != first["models"][0]["name"]


def test_gemini_bad_key_is_400_api_key_invalid(sim: ProviderSimulator):
    response = gemini_get(sim, marked(GEMINI_KEY, "bad"))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    info = [d for d in error["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info[0]["reason"] == "API_KEY_INVALID"


def test_gemini_missing_key_is_403(sim: ProviderSimulator):
    response = gemini_get(sim, None)

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("marker", "status", "grpc_status"),
    [
        ("forbidden", 403, "PERMISSION_DENIED"),
        ("ratelimit", 429, "RESOURCE_EXHAUSTED"),
        ("down", 500, "INTERNAL"),
        ("overloaded", 503, "UNAVAILABLE"),
    ],
)
def test_gemini_failure_markers(sim: ProviderSimulator, marker: str, status: int, grpc_status: str):
    for _ in range(2):
        response = gemini_get(sim, marked(GEMINI_KEY, marker))
        assert response.status_code == status
        error = response.json()["error"]
        assert error["code"] == status
        assert error["status"] == grpc_status
    if marker == "ratelimit":
        assert response.headers["Retry-After"] == "1"


# --------------------------------------------------------------------------------------
# Behaviour shared by the three key-based providers
# --------------------------------------------------------------------------------------

FETCHERS = {
    "openai": lambda sim, key: openai_get(sim, "/v1/models", key),
    "anthropic": lambda sim, key: anthropic_get(sim, "/v1/models", key),
    "gemini": lambda sim, key: gemini_get(sim, key),
}
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "gemini": GEMINI_KEY}


@pytest.mark.parametrize("provider", FETCHERS)
def test_flaky_key_fails_once_then_succeeds(sim: ProviderSimulator, provider: str):
    fetch, key = FETCHERS[provider], marked(KEYS[provider], "flaky")

    first = fetch(sim, key)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "0"
    assert [fetch(sim, key).status_code for _ in range(3)] == [200, 200, 200]
    # State is per exact key: another flaky key starts over.
    assert fetch(sim, key + "x").status_code == 503


@pytest.mark.parametrize("provider", FETCHERS)
def test_flap_key_alternates(sim: ProviderSimulator, provider: str):
    fetch, key = FETCHERS[provider], marked(KEYS[provider], "flap")

    assert [fetch(sim, key).status_code for _ in range(4)] == [503, 200, 503, 200]


@pytest.mark.parametrize("provider", FETCHERS)
def test_slow_key_waits_slow_seconds(sim: ProviderSimulator, provider: str):
    sim.configure(slow_seconds=0.3)

    started = time.perf_counter()
    response = FETCHERS[provider](sim, marked(KEYS[provider], "slow"))

    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_slow_key_times_out_a_short_client_timeout(sim: ProviderSimulator):
    sim.configure(slow_seconds=0.5)

    with pytest.raises(requests.Timeout):
        requests.get(
            sim.base_url("openai") + "/v1/models",
            headers={"Authorization": f"Bearer {marked(OPENAI_KEY, 'slow')}"},
            timeout=0.1,
        )
    # The server is still sleeping on it: let it finish so later tests start idle.
    deadline = time.monotonic() + TIMEOUT
    while sim.stats()["in_flight"]["openai"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats()["in_flight"]["openai"] == 0


def test_reset_clears_counters_and_flaky_state(sim: ProviderSimulator):
    key = marked(OPENAI_KEY, "flaky")
    assert openai_get(sim, "/v1/models", key).status_code == 503
    assert openai_get(sim, "/v1/models", key).status_code == 200
    assert sim.stats()["requests"]["openai"] == 2

    sim.reset()

    stats = sim.stats()
    assert stats["requests"] == {"openai": 0, "anthropic": 0, "gemini": 0, "google": 0}
    assert stats["max_concurrent"]["openai"] == 0
    assert openai_get(sim, "/v1/models", key).status_code == 503


def test_a_key_revoked_through_the_control_api_is_rejected_until_reset(sim: ProviderSimulator):
    other = marked(OPENAI_KEY, "other")
    assert openai_get(sim, "/v1/models", OPENAI_KEY).status_code == 200

    revoked = requests.post(f"{sim.url}/_sim/revoke", json={"api_key": OPENAI_KEY}, timeout=TIMEOUT)

    assert revoked.status_code == 200 and OPENAI_KEY not in revoked.text
    assert openai_get(sim, "/v1/models", OPENAI_KEY).status_code == 401
    assert openai_get(sim, "/v1/models", other).status_code == 200
    for bad in ({}, {"api_key": ""}, [OPENAI_KEY]):
        assert requests.post(f"{sim.url}/_sim/revoke", json=bad, timeout=TIMEOUT).status_code == 400
    sim.reset()
    assert openai_get(sim, "/v1/models", OPENAI_KEY).status_code == 200


# --------------------------------------------------------------------------------------
# Admin keys and the organization (cost) endpoints
# --------------------------------------------------------------------------------------

OPENAI_ORG_PATHS = ("/v1/organization/costs", "/v1/organization/usage/completions")
ANTHROPIC_ORG_PATHS = (
    "/v1/organizations/cost_report",
    "/v1/organizations/usage_report/messages",
)


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        (OPENAI_ADMIN_KEY, "/v1/models", 403),
        (OPENAI_ADMIN_KEY, OPENAI_ORG_PATHS[0], 200),
        (OPENAI_ADMIN_KEY, OPENAI_ORG_PATHS[1], 200),
        (OPENAI_KEY, "/v1/models", 200),
        (OPENAI_KEY, OPENAI_ORG_PATHS[0], 403),
        (OPENAI_KEY, OPENAI_ORG_PATHS[1], 403),
        ("sk-" + "legacy0123456789" * 3, OPENAI_ORG_PATHS[0], 403),
        (marked(OPENAI_ADMIN_KEY, "ratelimit"), OPENAI_ORG_PATHS[0], 429),
        (marked(OPENAI_ADMIN_KEY, "bad"), OPENAI_ORG_PATHS[0], 401),
        (marked(OPENAI_ADMIN_KEY, "forbidden"), OPENAI_ORG_PATHS[0], 403),
    ],
)
def test_openai_admin_matrix(sim: ProviderSimulator, key: str, path: str, status: int):
    response = openai_get(sim, path, key, start_time=today_unix(), limit=1)

    assert response.status_code == status
    if status == 403 and path == "/v1/models":
        error = response.json()["error"]
        assert "admin key cannot be used for this endpoint" in error["message"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "insufficient_permissions"


def test_openai_costs_body(sim: ProviderSimulator):
    start = today_unix() + 3600  # buckets start at the day boundary

    body = openai_get(
        sim,
        "/v1/organization/costs",
        OPENAI_ADMIN_KEY,
        start_time=start,
        bucket_width="1d",
        limit=1,
    ).json()

    assert body["object"] == "page"
    assert body["has_more"] is False
    assert body["next_page"] is None
    (bucket,) = body["data"]
    assert bucket["object"] == "bucket"
    assert bucket["start_time"] == today_unix()
    assert bucket["end_time"] == today_unix() + 86400
    (result,) = bucket["results"]
    assert result["object"] == "organization.costs.result"
    assert result["amount"]["currency"] == "usd"
    assert isinstance(result["amount"]["value"], float)


def test_openai_usage_completions_body(sim: ProviderSimulator):
    body = openai_get(
        sim,
        "/v1/organization/usage/completions",
        OPENAI_ADMIN_KEY,
        start_time=today_unix(),
    ).json()

    (bucket,) = body["data"]
    (result,) = bucket["results"]
    assert result["object"] == "organization.usage.completions.result"
    assert result["input_tokens"] > 0
    assert result["num_model_requests"] > 0


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start_time": "yesterday"},
        {"start_time": 0, "limit": 0},
        {"start_time": 0, "limit": 181},
    ],
)
def test_openai_costs_rejects_bad_parameters(sim: ProviderSimulator, params: dict):
    response = openai_get(sim, "/v1/organization/costs", OPENAI_ADMIN_KEY, **params)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        (ANTHROPIC_ADMIN_KEY, "/v1/models", 403),
        (ANTHROPIC_ADMIN_KEY, ANTHROPIC_ORG_PATHS[0], 200),
        (ANTHROPIC_ADMIN_KEY, ANTHROPIC_ORG_PATHS[1], 200),
        (ANTHROPIC_KEY, "/v1/models", 200),
        (ANTHROPIC_KEY, ANTHROPIC_ORG_PATHS[0], 403),
        (ANTHROPIC_KEY, ANTHROPIC_ORG_PATHS[1], 403),
        (marked(ANTHROPIC_ADMIN_KEY, "ratelimit"), ANTHROPIC_ORG_PATHS[0], 429),
        (marked(ANTHROPIC_ADMIN_KEY, "overloaded"), ANTHROPIC_ORG_PATHS[1], 529),
        (marked(ANTHROPIC_ADMIN_KEY, "bad"), ANTHROPIC_ORG_PATHS[0], 401),
    ],
)
def test_anthropic_admin_matrix(sim: ProviderSimulator, key: str, path: str, status: int):
    response = anthropic_get(sim, path, key, starting_at="2025-01-01T00:00:00Z")

    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["type"] == "permission_error"


def test_anthropic_reports_need_starting_at(sim: ProviderSimulator):
    for path in ANTHROPIC_ORG_PATHS:
        response = anthropic_get(sim, path, ANTHROPIC_ADMIN_KEY)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert "starting_at" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ANTHROPIC_ORG_PATHS)
def test_anthropic_report_body(sim: ProviderSimulator, path: str):
    response = anthropic_get(
        sim,
        path,
        ANTHROPIC_ADMIN_KEY,
        starting_at="2025-03-04T10:30:00Z",
        bucket_width="1d",
        limit=1,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["has_more"] is False
    assert body["next_page"] is None
    (bucket,) = body["data"]
    assert bucket["starting_at"] == "2025-03-04T00:00:00Z"
    assert bucket["ending_at"] == "2025-03-05T00:00:00Z"
    assert len(bucket["results"]) == 1


# --------------------------------------------------------------------------------------
# Google OAuth2 token endpoint
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def throwaway_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account_info(sim: ProviderSimulator, pem: str, email: str) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": "sim-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": sim.token_uri,
    }


def signed_assertion(sim: ProviderSimulator, pem: str, email: str) -> str:
    """A JWT-bearer assertion built and signed by google-auth, as a service account sends."""
    from google.auth import crypt, jwt

    now = int(time.time())
    claims = {
        "iss": email,
        "scope": "https://www.googleapis.com/auth/bigquery",
        "aud": sim.token_uri,
        "iat": now,
        "exp": now + 3600,
    }
    signer = crypt.RSASigner.from_string(pem, key_id="0123456789abcdef")
    return jwt.encode(signer, claims).decode()


def post_token(sim: ProviderSimulator, assertion: str) -> requests.Response:
    return requests.post(
        sim.token_uri,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
        },
        timeout=TIMEOUT,
    )


def test_token_endpoint_issues_token_to_google_auth(sim: ProviderSimulator, throwaway_private_key_pem: str):
    import google.auth.transport.requests
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info(
            sim,
            throwaway_private_key_pem,
            "validator@sim-project.iam.gserviceaccount.com",
        ),
        scopes=["https://www.googleapis.com/auth/bigquery"],
    )

    credentials.refresh(google.auth.transport.requests.Request())

    assert credentials.token.startswith("sim-token-")
    assert credentials.valid
    assert sim.stats()["requests"]["google"] == 1


def test_token_endpoint_revoked_key_is_invalid_grant(sim: ProviderSimulator, throwaway_private_key_pem: str):
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info(
            sim,
            throwaway_private_key_pem,
            "revoked@sim-project.iam.gserviceaccount.com",
        ),
        scopes=["https://www.googleapis.com/auth/bigquery"],
    )

    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        credentials.refresh(google.auth.transport.requests.Request())


def test_token_endpoint_raw_responses(sim: ProviderSimulator, throwaway_private_key_pem: str):
    pem = throwaway_private_key_pem
    ok_assertion = signed_assertion(sim, pem, "ok@sim-project.iam.gserviceaccount.com")
    assert decode_jwt_claims(ok_assertion)["iss"] == "ok@sim-project.iam.gserviceaccount.com"

    ok = post_token(sim, ok_assertion)
    assert ok.status_code == 200
    body = ok.json()
    assert body["access_token"].startswith("sim-token-")
    assert body["expires_in"] == 3599
    assert body["token_type"] == "Bearer"

    revoked = post_token(sim, signed_assertion(sim, pem, "revoked@p.iam.gserviceaccount.com"))
    assert revoked.status_code == 400
    assert revoked.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid JWT Signature.",
    }

    down = post_token(sim, signed_assertion(sim, pem, "down@p.iam.gserviceaccount.com"))
    assert down.status_code == 503

    assert post_token(sim, "not-a-jwt").status_code == 400
    wrong_grant = requests.post(sim.token_uri, data={"grant_type": "client_credentials"}, timeout=TIMEOUT)
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"


# --------------------------------------------------------------------------------------
# Concurrency, control API, routing, lifecycle
# --------------------------------------------------------------------------------------


def test_concurrent_requests_are_served_in_parallel_and_counted(sim: ProviderSimulator):
    sim.configure(latency_ms=100)
    barrier = threading.Barrier(20)

    def fetch(_: int) -> int:
        barrier.wait(timeout=TIMEOUT)
        return openai_get(sim, "/v1/models", OPENAI_KEY).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(fetch, range(20)))
    elapsed = time.perf_counter() - started

    assert statuses == [200] * 20
    stats = sim.stats()
    assert 10 <= stats["max_concurrent"]["openai"] <= 20
    assert stats["requests"]["openai"] == 20
    assert stats["in_flight"]["openai"] == 0
    assert elapsed < 20 * 0.1 / 2, "requests were serialised"


def test_sixty_four_concurrent_keep_alive_clients(sim: ProviderSimulator):
    sim.configure(latency_ms=50)
    local = threading.local()

    def fetch(_: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.get(
            sim.base_url("gemini") + "/v1beta/models",
            headers={"x-goog-api-key": GEMINI_KEY},
            timeout=TIMEOUT,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(fetch, range(192)))

    assert statuses == [200] * 192
    assert sim.stats()["max_concurrent"]["gemini"] >= 16


def test_control_api_over_http(sim: ProviderSimulator):
    openai_get(sim, "/v1/models", OPENAI_KEY)

    stats = requests.get(f"{sim.url}/_sim/stats", timeout=TIMEOUT).json()
    assert set(stats) == {"requests", "max_concurrent", "in_flight"}
    assert stats["requests"]["openai"] == 1

    configured = requests.post(
        f"{sim.url}/_sim/config",
        json={"latency_ms": 50, "slow_seconds": 1},
        timeout=TIMEOUT,
    )
    assert configured.status_code == 200
    assert configured.json() == {"latency_ms": 50, "slow_seconds": 1}
    assert sim.config == {"latency_ms": 50, "slow_seconds": 1}
    started = time.perf_counter()
    openai_get(sim, "/v1/models", OPENAI_KEY)
    assert time.perf_counter() - started >= 0.05

    for bad in ({"latency_ms": -1}, {"latency_ms": "fast"}, {"colour": 1}, [1]):
        response = requests.post(f"{sim.url}/_sim/config", json=bad, timeout=TIMEOUT)
        assert response.status_code == 400

    assert requests.post(f"{sim.url}/_sim/reset", timeout=TIMEOUT).status_code == 200
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=TIMEOUT).json()
    assert stats["requests"]["openai"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/openai/v1/nope",
        "/anthropic/v2/models",
        "/gemini/v1beta/nope",
        "/google/nope",
        "/nope",
        "/",
    ],
)
def test_unknown_paths_are_json_404(sim: ProviderSimulator, path: str):
    response = requests.get(
        sim.url + path,
        headers={
            "Authorization": f"Bearer {OPENAI_KEY}",
            "x-api-key": ANTHROPIC_KEY,
            "anthropic-version": ANTHROPIC_VERSION,
        },
        timeout=TIMEOUT,
    )

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()


def test_env_and_base_urls(sim: ProviderSimulator):
    assert sim.url == f"http://127.0.0.1:{sim.port}"
    assert sim.base_url("openai") == f"{sim.url}/openai"
    assert sim.env() == {
        "PROVIDER_OPENAI_BASE_URL": f"{sim.url}/openai",
        "PROVIDER_ANTHROPIC_BASE_URL": f"{sim.url}/anthropic",
        "PROVIDER_GEMINI_BASE_URL": f"{sim.url}/gemini",
        "GCP_TOKEN_URI": f"{sim.url}/google/token",
    }
    with pytest.raises(ValueError, match="unknown provider"):
        sim.base_url("aws")


def test_stop_refuses_new_and_idle_keep_alive_connections():
    simulator = ProviderSimulator().start()
    url = simulator.base_url("openai") + "/v1/models"
    session = requests.Session()
    headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
    assert session.get(url, headers=headers, timeout=TIMEOUT).status_code == 200

    simulator.stop()

    with pytest.raises(requests.ConnectionError):
        session.get(url, headers=headers, timeout=TIMEOUT)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=headers, timeout=TIMEOUT)
    simulator.stop()  # idempotent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_command_line_prints_env_and_serves():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.simulators", "--port", str(port), "--quiet"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        exports = dict(
            line.removeprefix("export ").strip().split("=", 1) for line in lines if line.startswith("export ")
        )
        assert exports["PROVIDER_OPENAI_BASE_URL"] == f"http://127.0.0.1:{port}/openai"
        # Only names the service reads: each export, alone, changes what Settings.from_env makes.
        from shared.common.config import Settings

        assert exports["GCP_TOKEN_URI"] == f"http://127.0.0.1:{port}/google/token"
        for name, value in exports.items():
            assert Settings.from_env({name: value}) != Settings.from_env({}), f"{name} is not a setting"
        response = requests.get(
            exports["PROVIDER_GEMINI_BASE_URL"] + "/v1beta/models",
            headers={"x-goog-api-key": GEMINI_KEY},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200
        stats = requests.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=TIMEOUT)
        assert json.loads(stats.text)["requests"]["gemini"] == 1
    finally:
        process.terminate()
        assert process.wait(timeout=TIMEOUT) == 0
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
