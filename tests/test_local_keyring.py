"""Local keyring: file mode, wire format, versions, AAD binding."""

from __future__ import annotations

import json
import os
import stat

import pytest

from shared.crypto import credential_aad
from shared.crypto.local_keyring import LocalKeyring
from shared.domain.errors import ConfigurationError, EncryptionFailed


def test_created_on_first_open_with_mode_0600(tmp_path):
    keyring = LocalKeyring.open(tmp_path / "k" / "keyring.json")
    mode = stat.S_IMODE(os.stat(keyring.path).st_mode)
    assert mode == 0o600 and keyring.primary == 1


def test_wire_format_carries_the_version(tmp_path):
    keyring = LocalKeyring.open(tmp_path / "keyring.json")
    sealed = keyring.encrypt(b"secret", b"aad")
    assert sealed.ciphertext[0] == 0x01
    assert int.from_bytes(sealed.ciphertext[1:3], "big") == 1 == int(sealed.key_version)
    assert len(sealed.ciphertext) == 1 + 2 + 12 + len(b"secret") + 16


def test_rotation_keeps_old_versions_decryptable(tmp_path):
    keyring = LocalKeyring.open(tmp_path / "keyring.json")
    old = keyring.encrypt(b"one", b"aad")
    assert keyring.rotate() == 2
    reopened = LocalKeyring.open(tmp_path / "keyring.json")
    new = reopened.encrypt(b"two", b"aad")
    assert new.key_version == "2"
    assert reopened.decrypt(old.ciphertext, b"aad") == b"one"
    assert stat.S_IMODE(os.stat(reopened.path).st_mode) == 0o600


def test_disabled_version_no_longer_decrypts(tmp_path):
    keyring = LocalKeyring.open(tmp_path / "keyring.json")
    old = keyring.encrypt(b"one", b"aad")
    keyring.rotate()
    keyring.set_state(1, "disabled")
    with pytest.raises(EncryptionFailed):
        keyring.decrypt(old.ciphertext, b"aad")
    with pytest.raises(ConfigurationError):
        keyring.set_state(2, "disabled")


def test_aad_binds_ciphertext_to_its_row(tmp_path):
    keyring = LocalKeyring.open(tmp_path / "keyring.json")
    sealed = keyring.encrypt(b"sk-secret", credential_aad("acme", "openai", "c1"))
    for other in (("globex", "openai", "c1"), ("acme", "anthropic", "c1"), ("acme", "openai", "c2")):
        with pytest.raises(EncryptionFailed):
            keyring.decrypt(sealed.ciphertext, credential_aad(*other))


def test_aad_fields_cannot_be_shifted():
    assert credential_aad("a-b", "c", "d") != credential_aad("a", "b-c", "d")


def test_tampered_or_truncated_ciphertext_fails(tmp_path):
    keyring = LocalKeyring.open(tmp_path / "keyring.json")
    sealed = bytearray(keyring.encrypt(b"x", b"aad").ciphertext)
    sealed[-1] ^= 1
    for blob in (bytes(sealed), b"", b"\x01\x00", b"\x02" + bytes(40)):
        with pytest.raises(EncryptionFailed):
            keyring.decrypt(blob, b"aad")


def test_malformed_keyring_file_is_a_configuration_error(tmp_path):
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps({"primary": 1, "versions": {"1": {"key": "c2hvcnQ="}}}))
    with pytest.raises(ConfigurationError, match="primary"):
        LocalKeyring.open(path)
    path.write_text("{")
    with pytest.raises(ConfigurationError, match="malformed"):
        LocalKeyring.open(path)


def test_a_rotation_by_another_process_is_seen_at_the_next_call(tmp_path):
    server = LocalKeyring.open(tmp_path / "keyring.json")
    cli = LocalKeyring.open(tmp_path / "keyring.json")  # e.g. python -m shared.cli rotate-key
    assert cli.rotate_key() == "2"
    sealed = server.encrypt(b"x", b"aad")
    assert sealed.key_version == "2" and server.primary_version() == "2"
    assert cli.decrypt(sealed.ciphertext, b"aad") == b"x"
    assert server.rotate_key() == "3" and cli.key_versions() == {"1": "enabled", "2": "enabled", "3": "enabled"}
