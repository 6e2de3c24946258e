"""Crypto port: authenticated encryption of credential secrets.

The service sees only ``CredentialCipher``. Adapters:

- ``shared.crypto.local_keyring.LocalKeyring`` — AES-256-GCM keyring file
  (embedded default);
- ``shared.crypto.cloud_kms.CloudKmsCipher`` — Cloud KMS symmetric key.

Associated data binds a ciphertext to its row (``credential_aad``): a blob
copied to another org, provider or credential id fails to decrypt.

Every adapter counts its calls in ``counters`` (``encrypt``, ``decrypt``) so
tests can assert the per-operation KMS budget exactly. Every failure is raised
as ``shared.errors.EncryptionFailed`` with the generic message.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EncryptedSecret:
    ciphertext: bytes
    key_version: str  # adapter-specific version label, stored beside the blob


class CredentialCipher(Protocol):
    counters: Counter[str]

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> EncryptedSecret: ...

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes: ...


def credential_aad(org_slug: str, provider: str, credential_id: str) -> bytes:
    """Associated data for a credential row.

    Length-prefixed fields so ``("a|b", "c")`` and ``("a", "b|c")`` never
    produce the same bytes.
    """
    parts = [b"integrations/v1", org_slug.encode(), provider.encode(), credential_id.encode()]
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


def oauth_state_aad(org_slug: str, provider: str, state_hash: str) -> bytes:
    """Associated data for an OAuth flow's PKCE verifier: bound to its state, org and provider."""
    parts = [b"integrations/oauth-state/v1", org_slug.encode(), provider.encode(), state_hash.encode()]
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)
