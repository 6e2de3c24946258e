"""One crypto contract, run on every adapter: the local keyring and Cloud KMS
(the REST adapter against the KMS stand-in)."""

from __future__ import annotations

import pytest

from shared.crypto import credential_aad
from shared.crypto.local_keyring import LocalKeyring
from shared.domain.errors import EncryptionFailed


@pytest.fixture(params=["local_keyring", "cloud_kms"])
def cipher(request, tmp_path):
    if request.param == "local_keyring":
        return LocalKeyring.open(tmp_path / "keyring.json")
    from google.auth.credentials import AnonymousCredentials

    from shared.crypto.cloud_kms import CloudKmsCipher

    stack = request.getfixturevalue("gcp_stack")
    return CloudKmsCipher(stack.key_name, api_endpoint=stack.kms.endpoint, credentials=AnonymousCredentials())


AAD = credential_aad("acme", "openai", "cred-1")


def test_roundtrip_with_associated_data(cipher):
    sealed = cipher.encrypt(b"sk-proj-secret", AAD)
    assert b"sk-proj-secret" not in sealed.ciphertext
    assert sealed.key_version.isdigit()
    assert cipher.decrypt(sealed.ciphertext, AAD) == b"sk-proj-secret"


def test_two_encryptions_differ(cipher):
    assert cipher.encrypt(b"same", AAD).ciphertext != cipher.encrypt(b"same", AAD).ciphertext


@pytest.mark.parametrize("row", [("globex", "openai", "cred-1"), ("acme", "gemini", "cred-1"), ("acme", "openai", "x")])
def test_ciphertext_is_bound_to_its_row(cipher, row):
    sealed = cipher.encrypt(b"sk-proj-secret", AAD)
    with pytest.raises(EncryptionFailed) as raised:
        cipher.decrypt(sealed.ciphertext, credential_aad(*row))
    assert "secret" not in str(raised.value) and raised.value.message == "Credential encryption failed"


def test_garbage_ciphertext_fails_cleanly(cipher):
    with pytest.raises(EncryptionFailed):
        cipher.decrypt(b"\x01\x00\x01" + bytes(40), AAD)


def test_counters_count_each_call(cipher):
    cipher.counters.clear()
    sealed = cipher.encrypt(b"a", AAD)
    cipher.decrypt(sealed.ciphertext, AAD)
    cipher.decrypt(sealed.ciphertext, AAD)
    assert cipher.counters["encrypt"] == 1 and cipher.counters["decrypt"] == 2


@pytest.fixture(params=["local_keyring", "cloud_kms"])
def own_key(request, tmp_path):
    """A cipher on a key of its own: rotating it must not move the shared test key."""
    if request.param == "local_keyring":
        return LocalKeyring.open(tmp_path / "keyring.json")
    import uuid

    from google.auth.credentials import AnonymousCredentials

    from shared.crypto.cloud_kms import CloudKmsCipher

    stack = request.getfixturevalue("gcp_stack")
    key_name = stack.kms.create_key(f"{stack.key_name.rsplit('/', 1)[0]}/contract-{uuid.uuid4().hex[:10]}")
    return CloudKmsCipher(key_name, api_endpoint=stack.kms.endpoint, credentials=AnonymousCredentials())


def test_rotate_key_adds_a_primary_version_and_old_blobs_still_decrypt(own_key):
    assert own_key.primary_version() == "1" and own_key.key_versions() == {"1": "enabled"}
    old = own_key.encrypt(b"before", AAD)
    assert own_key.rotate_key() == "2"
    assert own_key.primary_version() == "2"
    assert own_key.key_versions() == {"1": "enabled", "2": "enabled"}
    new = own_key.encrypt(b"after", AAD)
    assert (old.key_version, new.key_version) == ("1", "2")
    assert own_key.decrypt(old.ciphertext, AAD) == b"before" and own_key.decrypt(new.ciphertext, AAD) == b"after"
    assert own_key.counters["rotate"] == 1
