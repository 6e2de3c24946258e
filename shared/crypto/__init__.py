"""Crypto port: authenticated encryption of credential secrets.

The service sees only ``CredentialCipher``. Adapters:

- ``shared.crypto.local_keyring.LocalKeyring`` — AES-256-GCM keyring file
  (embedded default);
- ``shared.crypto.cloud_kms.CloudKmsCipher`` — Cloud KMS symmetric key, over its REST API.

Associated data binds a ciphertext to its row (``credential_aad``): a blob
copied to another org, provider or credential id fails to decrypt.

Every adapter counts its calls in ``counters`` (``encrypt``, ``decrypt``,
``rotate``) so tests can assert the per-operation KMS budget exactly.

Key management is three more calls: ``primary_version`` (the version new
ciphertext gets), ``key_versions`` (every version with its state) and
``rotate_key`` (a new version, made primary; older versions keep decrypting).
Re-encryption onto the primary (``shared.jobs.key_rotation.rewrap_all``) builds on them. Every failure is raised
as ``shared.domain.errors.EncryptionFailed`` with the generic message.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Protocol


class EncryptedSecret(NamedTuple):  # a NamedTuple, not a frozen dataclass: see shared.domain.caller.Caller
    """A credential as the cipher returns it: the ciphertext and the key version that sealed it."""

    ciphertext: bytes
    key_version: str  # adapter-specific version label, stored beside the blob


class CredentialCipher(Protocol):
    counters: Counter[str]

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> EncryptedSecret: ...

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes: ...

    def primary_version(self) -> str:
        """The version id ``encrypt`` uses now (``EncryptedSecret.key_version`` of new blobs)."""
        ...

    def key_versions(self) -> dict[str, str]:
        """Every version id with its state (``enabled``, ``disabled``, ``destroyed``, ...), lower case."""
        ...

    def rotate_key(self) -> str:
        """Create a new key version and make it primary; returns its id."""
        ...


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


def oauth_tokens_aad(org_slug: str, provider: str, state_hash: str) -> bytes:
    """Associated data for a flow's exchanged tokens, held until its org completes it: bound to that flow."""
    parts = [b"integrations/oauth-tokens/v1", org_slug.encode(), provider.encode(), state_hash.encode()]
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)
