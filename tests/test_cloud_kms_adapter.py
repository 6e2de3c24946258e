"""Cloud KMS adapter (REST through ``shared.egress.google_rest``) against the KMS stand-in.

The server is ``tests.fakes.kms_server.FakeKmsServer`` on loopback: real
AES-256-GCM per key version, rotation, disabled versions, CRC32C fields and
injected failures. The generated client ``google-cloud-kms`` (REST transport)
is the reference: the operator's rotation steps go through it, and blobs made
by the adapter must decrypt through it and the other way round, which ties the
adapter's wire format to the real API's as that library defines it.
"""

from __future__ import annotations

import base64
import logging
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms

from shared.crypto import CredentialCipher, credential_aad
from shared.crypto.cloud_kms import CloudKmsCipher
from shared.domain.errors import ConfigurationError, EncryptionFailed, KeyRotationFailed
from shared.egress.google_rest import GoogleApiError
from tests.fakes.kms_server import FakeKmsServer

PLAINTEXT = b"sk-live-THIS-IS-A-SECRET-0123456789"
AAD = credential_aad("acme", "openai", "cred-1")
OTHER_AAD = credential_aad("acme", "anthropic", "cred-1")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kms_server() -> Iterator[FakeKmsServer]:
    server = FakeKmsServer().start()
    yield server
    server.stop()


@pytest.fixture
def key_name(kms_server: FakeKmsServer) -> str:
    kms_server.reset_faults()
    kms_server.reset_calls()
    return kms_server.create_key(
        f"projects/test-project/locations/global/keyRings/integrations/cryptoKeys/k-{uuid.uuid4().hex[:12]}"
    )


def make_cipher(server: FakeKmsServer, key_name: str, **options: float) -> CloudKmsCipher:
    options.setdefault("timeout", 2.0)
    options.setdefault("retry_deadline", 0.5)
    return CloudKmsCipher(key_name, api_endpoint=server.endpoint, credentials=AnonymousCredentials(), **options)


@pytest.fixture
def cipher(kms_server: FakeKmsServer, key_name: str) -> CloudKmsCipher:
    return make_cipher(kms_server, key_name)


@pytest.fixture
def admin(kms_server: FakeKmsServer) -> kms.KeyManagementServiceClient:
    """The real client, for the rotation steps an operator (or Terraform) performs."""
    return kms.KeyManagementServiceClient(
        transport="rest", client_options={"api_endpoint": kms_server.endpoint}, credentials=AnonymousCredentials()
    )


def rotate(admin: kms.KeyManagementServiceClient, key_name: str) -> str:
    version = admin.create_crypto_key_version(request={"parent": key_name, "crypto_key_version": {}})
    version_id = version.name.rsplit("/", 1)[1]
    admin.update_crypto_key_primary_version(request={"name": key_name, "crypto_key_version_id": version_id})
    return version_id


def set_state(admin: kms.KeyManagementServiceClient, key_name: str, version_id: str, state: str) -> None:
    admin.update_crypto_key_version(
        request={
            "crypto_key_version": {
                "name": f"{key_name}/cryptoKeyVersions/{version_id}",
                "state": getattr(kms.CryptoKeyVersion.CryptoKeyVersionState, state),
            },
            "update_mask": {"paths": ["state"]},
        }
    )


def assert_no_plaintext(exc: BaseException, *also: str) -> None:
    """Neither the message nor the whole chained traceback carries the secret."""
    text = "".join(traceback.format_exception(exc)) + repr(exc) + "".join(also)
    for needle in (PLAINTEXT.decode(), base64.b64encode(PLAINTEXT).decode()):
        assert needle not in text
    assert str(exc) == "Credential encryption failed"


# --- the port's contract ------------------------------------------------------------


def test_is_a_credential_cipher(cipher: CloudKmsCipher) -> None:
    assert isinstance(cipher.counters, Counter)
    port: CredentialCipher = cipher
    assert port is cipher


def test_round_trip(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    sealed = cipher.encrypt(PLAINTEXT, AAD)

    assert sealed.key_version == "1"
    assert PLAINTEXT not in sealed.ciphertext
    assert cipher.decrypt(sealed.ciphertext, AAD) == PLAINTEXT
    assert cipher.counters == Counter(encrypt=1, decrypt=1)
    assert kms_server.calls == Counter(encrypt=1, decrypt=1)


def test_sends_crc32c_on_both_directions(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    import google_crc32c

    sealed = cipher.encrypt(PLAINTEXT, AAD)
    cipher.decrypt(sealed.ciphertext, AAD)

    encrypt_body, decrypt_body = (request.body for request in kms_server.requests)
    # proto3 JSON: camelCase names, int64 wrappers as strings, bytes as base64.
    assert encrypt_body["plaintextCrc32c"] == str(google_crc32c.value(PLAINTEXT))
    assert encrypt_body["additionalAuthenticatedDataCrc32c"] == str(google_crc32c.value(AAD))
    assert encrypt_body["additionalAuthenticatedData"] == base64.b64encode(AAD).decode()
    assert decrypt_body["ciphertextCrc32c"] == str(google_crc32c.value(sealed.ciphertext))
    assert decrypt_body["additionalAuthenticatedDataCrc32c"] == str(google_crc32c.value(AAD))


def test_same_plaintext_encrypts_differently(cipher: CloudKmsCipher) -> None:
    assert cipher.encrypt(PLAINTEXT, AAD).ciphertext != cipher.encrypt(PLAINTEXT, AAD).ciphertext


def test_associated_data_mismatch_fails(cipher: CloudKmsCipher) -> None:
    sealed = cipher.encrypt(PLAINTEXT, AAD)

    with pytest.raises(EncryptionFailed) as caught:
        cipher.decrypt(sealed.ciphertext, OTHER_AAD)

    assert_no_plaintext(caught.value)
    assert cipher.counters == Counter(encrypt=1, decrypt=1)


def test_ciphertext_of_another_key_fails(kms_server: FakeKmsServer, cipher: CloudKmsCipher, key_name: str) -> None:
    other = make_cipher(kms_server, kms_server.create_key(f"{key_name}-other"))
    sealed = other.encrypt(PLAINTEXT, AAD)

    with pytest.raises(EncryptionFailed):
        cipher.decrypt(sealed.ciphertext, AAD)


def test_tampered_ciphertext_fails(cipher: CloudKmsCipher) -> None:
    sealed = bytearray(cipher.encrypt(PLAINTEXT, AAD).ciphertext)
    sealed[-1] ^= 0x01

    with pytest.raises(EncryptionFailed):
        cipher.decrypt(bytes(sealed), AAD)


# --- the wire format is the real API's (google-cloud-kms as the reference client) ----


def test_adapter_ciphertext_decrypts_through_google_cloud_kms(
    cipher: CloudKmsCipher, admin: kms.KeyManagementServiceClient, key_name: str
) -> None:
    sealed = cipher.encrypt(PLAINTEXT, AAD)

    answer = admin.decrypt(
        request={"name": key_name, "ciphertext": sealed.ciphertext, "additional_authenticated_data": AAD}
    )

    assert answer.plaintext == PLAINTEXT
    with pytest.raises(api_exceptions.BadRequest, match="Decryption failed"):
        admin.decrypt(
            request={"name": key_name, "ciphertext": sealed.ciphertext, "additional_authenticated_data": OTHER_AAD}
        )


def test_google_cloud_kms_ciphertext_decrypts_through_the_adapter(
    cipher: CloudKmsCipher, admin: kms.KeyManagementServiceClient, key_name: str
) -> None:
    made = admin.encrypt(request={"name": key_name, "plaintext": PLAINTEXT, "additional_authenticated_data": AAD})

    assert cipher.decrypt(made.ciphertext, AAD) == PLAINTEXT
    with pytest.raises(EncryptionFailed):
        cipher.decrypt(made.ciphertext, OTHER_AAD)


def test_request_bodies_name_the_fields_as_google_cloud_kms_does(
    cipher: CloudKmsCipher, admin: kms.KeyManagementServiceClient, key_name: str, kms_server: FakeKmsServer
) -> None:
    """Same JSON field names and value encodings as the generated REST transport sends."""
    import google_crc32c

    def checksums(data: bytes, aad: bytes) -> dict[str, int]:
        return {
            "plaintext_crc32c": google_crc32c.value(data),
            "additional_authenticated_data_crc32c": google_crc32c.value(aad),
        }

    sealed = cipher.encrypt(PLAINTEXT, AAD)
    cipher.decrypt(sealed.ciphertext, AAD)
    admin.encrypt(
        request={
            "name": key_name,
            "plaintext": PLAINTEXT,
            "additional_authenticated_data": AAD,
            **checksums(PLAINTEXT, AAD),
        }
    )
    admin.decrypt(
        request={
            "name": key_name,
            "ciphertext": sealed.ciphertext,
            "additional_authenticated_data": AAD,
            "ciphertext_crc32c": google_crc32c.value(sealed.ciphertext),
            "additional_authenticated_data_crc32c": google_crc32c.value(AAD),
        }
    )

    ours_encrypt, ours_decrypt, theirs_encrypt, theirs_decrypt = kms_server.requests
    assert [r.rpc for r in kms_server.requests] == ["encrypt", "decrypt", "encrypt", "decrypt"]
    assert {r.path for r in (ours_encrypt, theirs_encrypt)} == {f"/v1/{key_name}:encrypt"}
    assert {r.path for r in (ours_decrypt, theirs_decrypt)} == {f"/v1/{key_name}:decrypt"}
    assert ours_encrypt.body.keys() == theirs_encrypt.body.keys() - {"name"}
    assert ours_decrypt.body == {k: v for k, v in theirs_decrypt.body.items() if k != "name"}
    for field in ("plaintext", "additionalAuthenticatedData", "plaintextCrc32c", "additionalAuthenticatedDataCrc32c"):
        assert ours_encrypt.body[field] == theirs_encrypt.body[field]


def test_key_management_agrees_with_google_cloud_kms(
    cipher: CloudKmsCipher, admin: kms.KeyManagementServiceClient, key_name: str
) -> None:
    assert cipher.rotate_key() == "2"
    set_state(admin, key_name, "1", "DISABLED")

    key = admin.get_crypto_key(request={"name": key_name})
    listed = {
        v.name.rsplit("/", 1)[1]: v.state.name.lower()
        for v in admin.list_crypto_key_versions(request={"parent": key_name})
    }
    assert cipher.primary_version() == key.primary.name.rsplit("/", 1)[1] == "2"
    assert cipher.key_versions() == listed == {"1": "disabled", "2": "enabled"}
    assert cipher.counters == Counter(rotate=1)


# --- rotation and version states ----------------------------------------------------


def test_old_version_decrypts_after_primary_switch(
    cipher: CloudKmsCipher, admin: kms.KeyManagementServiceClient, key_name: str, kms_server: FakeKmsServer
) -> None:
    old = cipher.encrypt(PLAINTEXT, AAD)

    assert rotate(admin, key_name) == "2"
    new = cipher.encrypt(b"second secret", AAD)

    assert (old.key_version, new.key_version) == ("1", "2")
    assert cipher.decrypt(old.ciphertext, AAD) == PLAINTEXT
    assert cipher.decrypt(new.ciphertext, AAD) == b"second secret"
    assert kms_server.primary_version(key_name) == "2"
    assert cipher.counters == Counter(encrypt=2, decrypt=2)


def test_disabled_version_fails_and_reenabling_restores(
    cipher: CloudKmsCipher, admin: kms.KeyManagementServiceClient, key_name: str, kms_server: FakeKmsServer
) -> None:
    old = cipher.encrypt(PLAINTEXT, AAD)
    rotate(admin, key_name)
    set_state(admin, key_name, "1", "DISABLED")
    assert kms_server.version_state(key_name, "1") == "DISABLED"

    with pytest.raises(EncryptionFailed) as caught:
        cipher.decrypt(old.ciphertext, AAD)
    assert_no_plaintext(caught.value)
    assert cipher.decrypt(cipher.encrypt(PLAINTEXT, AAD).ciphertext, AAD) == PLAINTEXT

    set_state(admin, key_name, "1", "ENABLED")
    assert cipher.decrypt(old.ciphertext, AAD) == PLAINTEXT


def test_destroyed_version_fails(cipher: CloudKmsCipher, key_name: str, kms_server: FakeKmsServer) -> None:
    old = cipher.encrypt(PLAINTEXT, AAD)
    kms_server.add_version(key_name, make_primary=True)
    kms_server.set_version_state(key_name, "1", "DESTROYED")

    with pytest.raises(EncryptionFailed):
        cipher.decrypt(old.ciphertext, AAD)


def test_disabled_primary_fails_encrypt(cipher: CloudKmsCipher, key_name: str, kms_server: FakeKmsServer) -> None:
    kms_server.set_version_state(key_name, "1", "DISABLED")

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    assert_no_plaintext(caught.value)


# --- failures -------------------------------------------------------------------------


def test_outage_503_fails_within_the_retry_budget(
    cipher: CloudKmsCipher, kms_server: FakeKmsServer, caplog: pytest.LogCaptureFixture
) -> None:
    kms_server.fail_next(1000, status=503)
    started = time.monotonic()

    with (
        caplog.at_level(logging.WARNING, logger="integrations.crypto.cloud_kms"),
        pytest.raises(EncryptionFailed) as caught,
    ):
        cipher.encrypt(PLAINTEXT, AAD)

    assert time.monotonic() - started < 3.0  # retry_deadline 0.5 s + one attempt
    assert kms_server.calls["encrypt"] > 1  # the adapter retried 503 ...
    assert cipher.counters == Counter(encrypt=1)  # ... inside one adapter call
    assert_no_plaintext(caught.value, caplog.text)
    assert "GoogleApiError (HTTP 503 UNAVAILABLE)" in caplog.text


def test_single_503_is_retried_transparently(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    kms_server.fail_next(1, status=503)

    sealed = cipher.encrypt(PLAINTEXT, AAD)

    assert cipher.decrypt(sealed.ciphertext, AAD) == PLAINTEXT
    assert kms_server.calls == Counter(encrypt=2, decrypt=1)
    assert cipher.counters == Counter(encrypt=1, decrypt=1)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(cipher: CloudKmsCipher, kms_server: FakeKmsServer, status: int) -> None:
    kms_server.fail_next(1, status=status)

    assert cipher.encrypt(PLAINTEXT, AAD).key_version == "1"

    assert kms_server.calls == Counter(encrypt=2)
    assert cipher.counters == Counter(encrypt=1)


def test_every_idempotent_call_is_retried(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    sealed = cipher.encrypt(PLAINTEXT, AAD)
    kms_server.reset_calls()
    for rpc in ("decrypt", "get_crypto_key", "list_crypto_key_versions"):
        kms_server.fail_next(1, status=503, rpc=rpc)

    assert cipher.decrypt(sealed.ciphertext, AAD) == PLAINTEXT
    assert cipher.primary_version() == "1"
    assert cipher.key_versions() == {"1": "enabled"}

    assert kms_server.calls == Counter(decrypt=2, get_crypto_key=2, list_crypto_key_versions=2)
    assert cipher.counters == Counter(encrypt=1, decrypt=1)


def test_creating_a_version_is_not_retried(cipher: CloudKmsCipher, kms_server: FakeKmsServer, key_name: str) -> None:
    """A create answered 503 may have happened: retrying could make two versions, so rotation fails instead."""
    kms_server.fail_next(1, status=503, rpc="create_crypto_key_version")

    with pytest.raises(KeyRotationFailed):
        cipher.rotate_key()

    assert kms_server.calls == Counter(get_crypto_key=1, create_crypto_key_version=1)
    assert kms_server.primary_version(key_name) == "1"
    assert cipher.rotate_key() == "2"  # the next attempt (an operator's) works
    assert kms_server.primary_version(key_name) == "2"


def test_setting_the_primary_is_retried(cipher: CloudKmsCipher, kms_server: FakeKmsServer, key_name: str) -> None:
    kms_server.fail_next(1, status=503, rpc="update_primary_version")

    assert cipher.rotate_key() == "2"

    # the primary before, the create, the update (once more after the 503), the primary read back
    assert kms_server.calls == Counter(get_crypto_key=2, create_crypto_key_version=1, update_primary_version=2)
    assert kms_server.primary_version(key_name) == "2"


def test_a_rotation_kms_does_not_confirm_keeps_the_old_primary(
    cipher: CloudKmsCipher, kms_server: FakeKmsServer, key_name: str
) -> None:
    """Create succeeds, updatePrimaryVersion answers 200 but the key still names version 1: the rotation fails."""
    before = cipher.encrypt(PLAINTEXT, AAD)
    kms_server.drop_next_primary_update(1)

    with pytest.raises(KeyRotationFailed) as caught:
        cipher.rotate_key()

    assert caught.value.status_code == 503 and caught.value.code == "key_rotation_failed"
    assert key_name in caught.value.message and "key version 1 stays primary" in caught.value.message
    assert kms_server.primary_version(key_name) == "1"
    assert cipher.key_versions() == {"1": "enabled", "2": "enabled"}  # the new version exists, unused
    after = cipher.encrypt(PLAINTEXT, AAD)
    assert after.key_version == "1"  # still sealing with the old primary
    assert cipher.decrypt(before.ciphertext, AAD) == cipher.decrypt(after.ciphertext, AAD) == PLAINTEXT
    assert cipher.rotate_key() == "3"  # the next attempt works


def test_a_refused_primary_update_keeps_the_old_primary(
    cipher: CloudKmsCipher, kms_server: FakeKmsServer, key_name: str
) -> None:
    kms_server.fail_next(1, status=400, rpc="update_primary_version")

    with pytest.raises(KeyRotationFailed) as caught:
        cipher.rotate_key()

    assert "key version 1 stays primary" in caught.value.message
    assert kms_server.primary_version(key_name) == "1" and cipher.encrypt(PLAINTEXT, AAD).key_version == "1"
    # the primary read back showed version 1: nothing to put back
    assert kms_server.calls["update_primary_version"] == 1


def test_key_versions_follow_page_tokens(cipher: CloudKmsCipher, kms_server: FakeKmsServer, key_name: str) -> None:
    for _ in range(1000):  # 1,001 versions: two pages of at most 1,000
        kms_server.add_version(key_name)
    kms_server.set_version_state(key_name, "1001", "DISABLED")

    versions = cipher.key_versions()

    assert len(versions) == 1001 and list(versions)[:3] == ["1", "2", "3"]
    assert (versions["1000"], versions["1001"]) == ("enabled", "disabled")
    assert kms_server.calls == Counter(list_crypto_key_versions=2)
    assert [r.query.get("pageToken") for r in kms_server.requests] == [None, "1000"]


def test_slow_kms_is_retried_within_the_deadline(kms_server: FakeKmsServer, key_name: str) -> None:
    """Every attempt times out: attempts stop starting at retry_deadline, so the call ends by deadline + timeout."""
    cipher = make_cipher(kms_server, key_name, timeout=0.2, retry_deadline=0.5)
    kms_server.delay_next(1.0, n=20)
    started = time.monotonic()

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    assert time.monotonic() - started < 0.5 + 0.2 + 0.4
    assert isinstance(caught.value.__cause__, TimeoutError)  # the HTTP client's: the whole call had its time
    assert kms_server.calls["encrypt"] >= 2
    assert cipher.counters == Counter(encrypt=1)


def test_refused_connections_are_retried_within_the_deadline(key_name: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    cipher = CloudKmsCipher(
        key_name, api_endpoint=f"http://127.0.0.1:{closed_port}", credentials=AnonymousCredentials(), retry_deadline=0.4
    )
    started = time.monotonic()

    with pytest.raises(EncryptionFailed) as caught:
        cipher.decrypt(b"x" * 40, AAD)

    elapsed = time.monotonic() - started
    assert elapsed < 0.4 + 0.2  # retries (GOOGLE_API_RETRY.attempts at most) never start past the deadline
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_permission_denied_is_not_retried(
    cipher: CloudKmsCipher, kms_server: FakeKmsServer, caplog: pytest.LogCaptureFixture
) -> None:
    sealed = cipher.encrypt(PLAINTEXT, AAD)
    kms_server.permission_denied = True

    with caplog.at_level(logging.WARNING, logger="integrations.crypto.cloud_kms"):
        with pytest.raises(EncryptionFailed) as on_encrypt:
            cipher.encrypt(PLAINTEXT, AAD)
        with pytest.raises(EncryptionFailed) as on_decrypt:
            cipher.decrypt(sealed.ciphertext, AAD)

    cause = on_encrypt.value.__cause__
    assert isinstance(cause, GoogleApiError) and (cause.status, cause.reason) == (403, "PERMISSION_DENIED")
    assert_no_plaintext(on_encrypt.value, caplog.text)
    assert_no_plaintext(on_decrypt.value, caplog.text)
    assert "GoogleApiError (HTTP 403 PERMISSION_DENIED)" in caplog.text
    assert "cloudkms.cryptoKeyVersions.useToEncrypt" not in caplog.text  # Google's message stays out of logs
    assert kms_server.calls == Counter(encrypt=2, decrypt=1)
    assert cipher.counters == Counter(encrypt=2, decrypt=1)


def test_injected_403_status(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    kms_server.fail_next(1, status=403)

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    assert_no_plaintext(caught.value)
    assert kms_server.calls["encrypt"] == 1


def test_unknown_key_fails(kms_server: FakeKmsServer, key_name: str) -> None:
    cipher = make_cipher(kms_server, f"{key_name}-missing")

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    cause = caught.value.__cause__
    assert isinstance(cause, GoogleApiError) and cause.status == 404 and not cause.transient


def test_corrupted_ciphertext_crc_is_detected(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    kms_server.corrupt_next_response_crc()

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    assert_no_plaintext(caught.value)
    assert kms_server.calls["encrypt"] == 1


def test_corrupted_plaintext_crc_is_detected(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    sealed = cipher.encrypt(PLAINTEXT, AAD)
    kms_server.corrupt_next_response_crc()

    with pytest.raises(EncryptionFailed) as caught:
        cipher.decrypt(sealed.ciphertext, AAD)

    assert_no_plaintext(caught.value)
    # One bad answer, not a bad key:
    assert cipher.decrypt(sealed.ciphertext, AAD) == PLAINTEXT


def test_unverified_request_crc_is_rejected(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    kms_server.skip_next_request_crc_verification()

    with pytest.raises(EncryptionFailed):
        cipher.encrypt(PLAINTEXT, AAD)


def test_slow_kms_times_out(kms_server: FakeKmsServer, key_name: str) -> None:
    cipher = make_cipher(kms_server, key_name, timeout=0.2, retry_deadline=0.0)
    kms_server.delay_next(1.0)
    started = time.monotonic()

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    assert time.monotonic() - started < 0.9
    assert_no_plaintext(caught.value)


def test_unreachable_endpoint_fails(key_name: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    cipher = CloudKmsCipher(
        key_name, api_endpoint=f"http://127.0.0.1:{closed_port}", credentials=AnonymousCredentials(), retry_deadline=0.0
    )

    with pytest.raises(EncryptionFailed) as caught:
        cipher.encrypt(PLAINTEXT, AAD)

    assert isinstance(caught.value.__cause__, ConnectionError)
    assert_no_plaintext(caught.value)
    assert cipher.counters == Counter(encrypt=1)


def test_counters_count_every_call(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    sealed = [cipher.encrypt(PLAINTEXT, AAD) for _ in range(3)]
    for item in sealed[:2]:
        cipher.decrypt(item.ciphertext, AAD)
    kms_server.permission_denied = True
    with pytest.raises(EncryptionFailed):
        cipher.decrypt(sealed[2].ciphertext, AAD)

    assert cipher.counters == Counter(encrypt=3, decrypt=3)
    assert kms_server.calls == Counter(encrypt=3, decrypt=3)


def test_rejects_non_bytes_without_calling_kms(cipher: CloudKmsCipher, kms_server: FakeKmsServer) -> None:
    with pytest.raises(TypeError) as caught:
        cipher.encrypt(PLAINTEXT.decode(), AAD)  # type: ignore[arg-type]

    assert PLAINTEXT.decode() not in str(caught.value)
    assert kms_server.calls == Counter()
    assert cipher.counters == Counter()


# --- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_name",
    [
        "",
        "projects/p/locations/global/keyRings/r",
        "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "projects/p/locations/global/keyRings/r/cryptoKeys/",
        "projects//locations/global/keyRings/r/cryptoKeys/k",
        "/projects/p/locations/global/keyRings/r/cryptoKeys/k",
        "projects/p/locations/global/keyRings/r/cryptoKeys/k ",
        "locations/global/keyRings/r/cryptoKeys/k",
    ],
)
def test_malformed_key_name_is_rejected_at_construction(bad_name: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        CloudKmsCipher(bad_name)

    message = str(caught.value)
    assert repr(bad_name) in message
    assert "projects/{project}/locations/{location}/keyRings/{key_ring}/cryptoKeys/{crypto_key}" in message


def test_version_name_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigurationError, match="not one of its versions"):
        CloudKmsCipher("projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1")


def test_construction_does_not_contact_kms(kms_server: FakeKmsServer, key_name: str) -> None:
    make_cipher(kms_server, key_name)

    assert kms_server.calls == Counter()


def _run_fresh_python(code: str) -> None:
    """Run ``code`` in a new interpreter from the repository root; it asserts what it checks."""
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_modules_import_no_google_library() -> None:
    # Baseline first: functions-framework's *-nspkg.pth pre-registers the empty
    # ``google`` and ``google.cloud`` namespace modules at interpreter start.
    code = (
        "import sys; before = set(sys.modules); "
        "import shared.crypto.cloud_kms, shared.secret_sources.secret_manager; "
        "loaded = sorted(m for m in set(sys.modules) - before if m.startswith(('google', 'grpc', 'requests'))); "
        "assert not loaded, loaded"
    )
    _run_fresh_python(code)


def test_production_endpoint_is_googles_over_https(key_name: str) -> None:
    """Without a stand-in the session targets Cloud KMS itself; a bare host means HTTPS, as for the generated client."""
    production = CloudKmsCipher(key_name, credentials=AnonymousCredentials())
    bare_host = CloudKmsCipher(key_name, api_endpoint="cloudkms.googleapis.com", credentials=AnonymousCredentials())

    assert production._get_session().base_url == "https://cloudkms.googleapis.com"
    assert bare_host._get_session().base_url == "https://cloudkms.googleapis.com"


def test_a_call_loads_no_kms_client_library_nor_grpc(kms_server: FakeKmsServer, key_name: str) -> None:
    """The request path (encrypt, decrypt, key management) runs on google-auth and the service's HTTP client only."""
    code = (
        "import sys; "
        "from google.auth.credentials import AnonymousCredentials; "
        "from shared.crypto.cloud_kms import CloudKmsCipher; "
        f"c = CloudKmsCipher({key_name!r}, api_endpoint={kms_server.endpoint!r}, credentials=AnonymousCredentials()); "
        "sealed = c.encrypt(b'secret', b'aad'); assert c.decrypt(sealed.ciphertext, b'aad') == b'secret'; "
        "c.primary_version(); c.key_versions(); "
        "loaded = sorted(m for m in sys.modules if m.startswith(('google.cloud', 'google.api_core', 'grpc'))); "
        "assert loaded == ['google.cloud'] or not loaded, loaded"
    )
    _run_fresh_python(code)
