"""Where the Google adapters' access token comes from (shared/egress/google_rest.py).

On Cloud Functions the token is the runtime service account's, read from the
metadata server; here a stand-in metadata server (GCE_METADATA_HOST) hands
it out and the KMS stand-in accepts only the current token, as Google's APIs
refuse a missing or stale one with 401.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.crypto.cloud_kms import CloudKmsCipher
from shared.domain.errors import EncryptionFailed
from shared.egress import google_rest
from shared.egress.google_rest import GoogleRestSession, uses_metadata_server
from tests.fakes.metadata_server import FakeMetadataServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def metadata(monkeypatch):
    with FakeMetadataServer() as server:
        monkeypatch.setenv("GCE_METADATA_HOST", server.host)
        # A process keeps one token per metadata host: an earlier test's server on a reused port is not this one.
        monkeypatch.setattr(google_rest, "_runtime_tokens", {})
        yield server


@pytest.fixture
def kms(gcp_stack, metadata):
    gcp_stack.kms.required_bearer = lambda: metadata.token
    gcp_stack.kms.reset_calls()
    yield gcp_stack.kms
    gcp_stack.kms.reset_faults()


def _cipher(gcp_stack) -> CloudKmsCipher:
    return CloudKmsCipher(gcp_stack.key_name, api_endpoint=gcp_stack.kms.endpoint, retry_deadline=0.5)


def test_the_runtime_token_is_fetched_once_and_sent_with_every_call(gcp_stack, metadata, kms):
    cipher = _cipher(gcp_stack)
    blobs = [cipher.encrypt(b"secret-%d" % n, b"aad") for n in range(3)]
    assert [cipher.decrypt(blob.ciphertext, b"aad") for blob in blobs] == [b"secret-0", b"secret-1", b"secret-2"]
    assert metadata.fetches == 1
    assert set(kms.authorizations) == {f"Bearer {metadata.token}"}


def test_the_adapters_of_an_instance_share_one_token(gcp_stack, metadata, kms):
    first, second = _cipher(gcp_stack), _cipher(gcp_stack)  # as the KMS, BigQuery and Secret Manager sessions
    second.decrypt(first.encrypt(b"secret", b"aad").ciphertext, b"aad")
    assert metadata.fetches == 1


def test_a_refused_token_is_fetched_again_once(gcp_stack, metadata, kms):
    cipher = _cipher(gcp_stack)
    blob = cipher.encrypt(b"secret", b"aad")
    metadata.rotate()  # the old token is now refused with 401
    assert cipher.decrypt(blob.ciphertext, b"aad") == b"secret"
    assert metadata.fetches == 2
    assert kms.authorizations[-2:] == [kms.authorizations[-2], f"Bearer {metadata.token}"]
    assert kms.authorizations[-2] != kms.authorizations[-1]


def test_a_token_that_stays_refused_fails_the_call_without_looping(gcp_stack, metadata, kms):
    kms.required_bearer = lambda: "a-token-nobody-has"
    with pytest.raises(EncryptionFailed):
        _cipher(gcp_stack).encrypt(b"secret", b"aad")
    assert metadata.fetches == 2  # the first token, then one fresh one after the 401; then it gives up


def test_no_metadata_server_answer_fails_the_call_and_says_nothing_secret(gcp_stack, metadata, kms, caplog):
    metadata.down = True
    with pytest.raises(EncryptionFailed):
        _cipher(gcp_stack).encrypt(b"plaintext-never-logged", b"aad")
    assert kms.calls["encrypt"] == 0
    assert "plaintext-never-logged" not in caplog.text


def test_the_token_source_follows_the_runtime():
    assert uses_metadata_server({"K_SERVICE": "integration-list"})  # Cloud Functions / Cloud Run
    assert uses_metadata_server({"GCE_METADATA_HOST": "127.0.0.1:8080"})
    assert not uses_metadata_server({})


def test_a_stand_in_without_a_metadata_server_gets_no_token(gcp_stack, monkeypatch):
    monkeypatch.delenv("GCE_METADATA_HOST", raising=False)
    monkeypatch.delenv("K_SERVICE", raising=False)
    session = GoogleRestSession("https://cloudkms.googleapis.com", api_endpoint=gcp_stack.kms.endpoint)
    assert session.token is None
    gcp_stack.kms.reset_calls()
    session.call("GET", f"/v1/{gcp_stack.key_name}", timeout=5)
    assert gcp_stack.kms.authorizations == [None]


PROBE = """
import sys
from shared.crypto.cloud_kms import CloudKmsCipher
cipher = CloudKmsCipher(sys.argv[1], api_endpoint=sys.argv[2])
assert cipher.decrypt(cipher.encrypt(b"x", b"a").ciphertext, b"a") == b"x"
print(",".join(sorted(m for m in sys.modules if m.startswith(("google.auth", "google.oauth2", "cryptography")))))
"""


def test_the_metadata_token_path_loads_no_google_auth_credentials_or_crypto(gcp_stack, metadata, kms):
    """What makes it cheaper than google-auth's compute-engine credentials on a cold start."""
    env = {"PATH": "/usr/bin:/bin", "GCE_METADATA_HOST": metadata.host}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, gcp_stack.key_name, gcp_stack.kms.endpoint],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = result.stdout.strip().split(",")
    assert "google.auth.exceptions" in loaded  # the probe sees google.auth modules when they load
    assert not [m for m in loaded if m.startswith(("google.auth.transport.requests", "google.oauth2", "cryptography"))]
    assert not [m for m in loaded if m.startswith(("google.auth.compute_engine", "google.auth.crypt"))]
    assert metadata.fetches == 1 and kms.calls["encrypt"] == 1


def test_a_failing_token_endpoint_is_retried_by_the_one_policy_not_by_google_auth_as_well(simulator):
    """Credentials passed in (a tool, a laptop's ADC) refresh through the session's client: a 503 from the
    token endpoint is a transient failure of the call, retried by GOOGLE_API_RETRY, one token POST per attempt."""
    from google.oauth2 import service_account as google_service_account

    from tests.test_gcp_validation import service_account

    simulator.reset()
    info = service_account(simulator.token_uri, email="down-reader@integrations-test.iam.gserviceaccount.com")
    credentials = google_service_account.Credentials.from_service_account_info(
        info, scopes=[google_rest.CLOUD_PLATFORM_SCOPE]
    )
    session = GoogleRestSession(
        "https://cloudkms.googleapis.com", api_endpoint=simulator.url + "/unused", credentials=credentials
    )
    with pytest.raises(Exception) as failed:
        session.call("GET", "/v1/anything", timeout=5, retry_deadline=30)
    assert google_rest.is_transient(failed.value)
    assert simulator.stats()["requests"]["google"] == google_rest.GOOGLE_API_RETRY.attempts
