"""Cloud KMS adapter of the crypto port (``CredentialCipher``), over the REST API.

Translates ``encrypt(plaintext, associated_data)`` / ``decrypt(...)`` into
Cloud KMS ``cryptoKeys.encrypt`` / ``cryptoKeys.decrypt`` on one symmetric
``CryptoKey`` and turns every failure into ``EncryptionFailed``. Nothing else:
no envelope, no caching. Key management is three calls of the port:
``primary_version`` (``cryptoKeys.get``), ``key_versions``
(``cryptoKeyVersions.list``) and ``rotate_key`` (``cryptoKeyVersions.create``
then ``cryptoKeys.updatePrimaryVersion``, confirmed by reading the key back; a
version still being generated, as an HSM one may be, is waited for first; a
rotation that cannot be confirmed leaves the previous primary in place and
raises ``KeyRotationFailed``). The runtime identity needs only the
permissions of these calls on this one key (terraform/iam.tf).

Why REST by hand: the generated client (``google-cloud-kms``) costs about
60 ms of imports plus gRPC's 20 ms even with its REST transport, close to a
whole functions-framework cold start (docs/design/cold-start-rest-adapters.md).
The API is plain JSON over HTTPS, so the adapter speaks it through
``shared.egress.google_rest`` on the service's HTTP client. ``tests/test_cloud_kms_adapter.py`` checks the wire
format against the generated client: blobs this adapter makes decrypt through
``google-cloud-kms`` and the other way round, on the same stand-in.

Wire contract (Cloud KMS REST v1, proto3 JSON: camelCase names, bytes as
base64, int64 as decimal strings):

- ``POST /v1/{key}:encrypt`` ``{plaintext, additionalAuthenticatedData,
  plaintextCrc32c, additionalAuthenticatedDataCrc32c}`` answers ``{name,
  ciphertext, ciphertextCrc32c, verifiedPlaintextCrc32c,
  verifiedAdditionalAuthenticatedDataCrc32c}``. Cloud KMS picks the key's
  *primary* version and records it inside the ciphertext; decryption finds
  that version itself, so a blob made before a rotation still decrypts while
  its version is enabled.
- ``POST /v1/{key}:decrypt`` ``{ciphertext, additionalAuthenticatedData,
  ciphertextCrc32c, additionalAuthenticatedDataCrc32c}`` answers
  ``{plaintext, plaintextCrc32c}``.
- ``EncryptedSecret.key_version`` is the trailing id of the version that
  encrypted the blob, parsed from the encrypt answer's ``name``
  (``{key}/cryptoKeyVersions/3`` -> ``"3"``). It is stored beside the blob to
  tell which rows still use an old version (re-encryption before disabling
  it); it is not needed to decrypt.
- ``associated_data`` is sent as ``additionalAuthenticatedData``; a different
  value at decrypt fails.
- Integrity: both directions carry CRC32C (``google_crc32c``) as KMS asks
  clients to do. Encrypt requires the answer to say both request checksums
  were verified and ``ciphertextCrc32c`` to match the ciphertext; decrypt
  checks ``plaintextCrc32c``. A mismatch (or a missing checksum) is treated as
  a failed call.
- Key management: ``GET /v1/{key}`` (``primary.name``), ``GET
  /v1/{key}/cryptoKeyVersions?pageSize=&pageToken=`` (``cryptoKeyVersions[]
  .{name, state}``, ``nextPageToken``), ``POST /v1/{key}/cryptoKeyVersions``
  (``{}``), ``GET /v1/{version}`` (``state``) and ``POST
  /v1/{key}:updatePrimaryVersion`` (``{cryptoKeyVersionId}``).

Failures — ``shared.egress.google_rest.GoogleApiError`` (an error status),
``google.auth`` errors, transport errors (OSErrors) and integrity
mismatches — raise ``EncryptionFailed()`` with the generic message, chained
from the cause; the log line (WARNING) names only the cause's class (and for
an API error its HTTP status and Google's status name, never its message).
Any other exception inside the call (a malformed answer, a bug) fails the same
way but is logged at ERROR: its text might quote request or response data.
Arguments that are not ``bytes`` raise ``TypeError`` before KMS is called.

Time is bounded: each attempt has ``timeout`` seconds; transient answers
(429, 500, 502, 503, 504) and transport failures (connection refused or
reset, timeouts) are retried with capped exponential backoff (0.1 s doubling
to 2 s, jittered), and no attempt starts after ``retry_deadline`` seconds, so
one call takes at most about ``retry_deadline + timeout``. Every call but
``cryptoKeyVersions.create`` is retried: KMS encrypt/decrypt/get/list and
setting the primary version are safe to repeat, a repeated create could make
two versions.

``counters["encrypt"]``/``counters["decrypt"]``/``counters["rotate"]`` count
calls of this adapter (one per invocation, failed ones included); retries are
not counted separately.

Google libraries (google-auth, google_crc32c) are imported on first
use, never at import time of this module, so the local runtime and functions
that never call KMS start fast.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections import Counter
from typing import Any

from shared.crypto import EncryptedSecret
from shared.domain.errors import ConfigurationError, EncryptionFailed, KeyRotationFailed
from shared.egress.google_rest import GoogleApiError, GoogleRestSession, failure_text

logger = logging.getLogger("integrations.crypto.cloud_kms")

KMS_BASE_URL = "https://cloudkms.googleapis.com"
KEY_NAME_FORMAT = "projects/{project}/locations/{location}/keyRings/{key_ring}/cryptoKeys/{crypto_key}"
_KEY_NAME = re.compile(
    r"projects/(?P<project>[a-z0-9.:-]+)"
    r"/locations/(?P<location>[a-z0-9-]+)"
    r"/keyRings/(?P<key_ring>[A-Za-z0-9_-]{1,63})"
    r"/cryptoKeys/(?P<crypto_key>[A-Za-z0-9_-]{1,63})"
)
_VERSION_ID = re.compile(r"[0-9]+")

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_DEADLINE = 20.0
# Backoff between attempts: doubling from the first delay up to the cap, each jittered down by up to half.
# cryptoKeyVersions.list page size, the API's maximum: a key's versions (one per rotation) fit one page
# for decades; more pages are followed all the same.
_PAGE_SIZE = 1000


class _IntegrityError(Exception):
    """A CRC32C check failed or the answer was not what KMS promises."""


def validate_key_name(key_name: str) -> str:
    """Return ``key_name`` if it names a CryptoKey, else raise ``ConfigurationError``."""
    if not isinstance(key_name, str) or _KEY_NAME.fullmatch(key_name) is None:
        hint = ""
        if isinstance(key_name, str) and "/cryptoKeyVersions/" in key_name:
            hint = " (a CryptoKey, not one of its versions: Cloud KMS picks the primary version)"
        raise ConfigurationError(f"Cloud KMS key name {key_name!r} is malformed: expected {KEY_NAME_FORMAT}{hint}")
    return key_name


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


class CloudKmsCipher:
    """``CredentialCipher`` over one Cloud KMS symmetric ``CryptoKey``, through the KMS REST API.

    ``api_endpoint`` (e.g. ``http://127.0.0.1:8085``) points it at a loopback
    stand-in; without it Google's endpoint (``https://cloudkms.googleapis.com``)
    is used. ``credentials`` defaults to the application default credentials
    (anonymous ones for a stand-in). The HTTP session is created on first call
    and reused, by every thread, for the life of the instance.
    """

    def __init__(
        self,
        key_name: str,
        *,
        api_endpoint: str | None = None,
        credentials: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry_deadline: float = DEFAULT_RETRY_DEADLINE,
    ) -> None:
        self.key_name = validate_key_name(key_name)
        if timeout <= 0 or retry_deadline < 0:
            raise ConfigurationError(
                f"Cloud KMS timeouts must be positive: got timeout={timeout}, retry_deadline={retry_deadline}"
            )
        self.counters: Counter[str] = Counter()
        # The generated client took a bare host ("cloudkms.googleapis.com") and meant HTTPS; so do we.
        if api_endpoint and "://" not in api_endpoint:
            api_endpoint = f"https://{api_endpoint}"
        self._api_endpoint = api_endpoint
        self._credentials = credentials
        self._timeout = timeout
        self._retry_deadline = retry_deadline
        self._session: GoogleRestSession | None = None
        self._session_lock = threading.Lock()

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> EncryptedSecret:
        _require_bytes(plaintext, associated_data)
        self.counters["encrypt"] += 1
        try:
            answer = self._call(
                "POST",
                f"/v1/{self.key_name}:encrypt",
                body=_checked_body("plaintext", plaintext, associated_data),
            )
            # proto3 JSON leaves out a false bool: absent means not verified.
            if answer.get("verifiedPlaintextCrc32c") is not True:
                raise _IntegrityError("plaintextCrc32c not verified by KMS")
            if answer.get("verifiedAdditionalAuthenticatedDataCrc32c") is not True:
                raise _IntegrityError("additionalAuthenticatedDataCrc32c not verified by KMS")
            ciphertext = _bytes_field(answer, "ciphertext")
            if _int64_field(answer, "ciphertextCrc32c") != _crc32c(ciphertext):
                raise _IntegrityError("ciphertextCrc32c does not match the ciphertext")
            key_version = self._version_id(answer.get("name"))
        except Exception as exc:
            raise self._failure("encrypt", exc) from exc
        return EncryptedSecret(ciphertext=ciphertext, key_version=key_version)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        _require_bytes(ciphertext, associated_data)
        self.counters["decrypt"] += 1
        try:
            answer = self._call(
                "POST",
                f"/v1/{self.key_name}:decrypt",
                body=_checked_body("ciphertext", ciphertext, associated_data),
            )
            plaintext = _bytes_field(answer, "plaintext")
            if _int64_field(answer, "plaintextCrc32c") != _crc32c(plaintext):
                raise _IntegrityError("plaintextCrc32c does not match the plaintext")
        except Exception as exc:
            raise self._failure("decrypt", exc) from exc
        return plaintext

    # --- key management -------------------------------------------------------------

    def primary_version(self) -> str:
        try:
            return self._primary_id()
        except Exception as exc:
            raise self._failure("get_crypto_key", exc) from exc

    def key_versions(self) -> dict[str, str]:
        try:
            versions: dict[str, str] = {}
            params: dict[str, Any] = {"pageSize": _PAGE_SIZE}
            seen_tokens: set[str] = set()
            while True:
                page = self._call("GET", f"/v1/{self.key_name}/cryptoKeyVersions", params=params)
                for version in page.get("cryptoKeyVersions") or []:
                    versions[self._version_id(version.get("name"))] = str(version.get("state", "")).lower()
                token = page.get("nextPageToken")
                if not token:
                    break
                if token in seen_tokens:  # a server repeating itself must not keep us here forever
                    raise _IntegrityError("cryptoKeyVersions.list repeated a page token")
                seen_tokens.add(token)
                params = {"pageSize": _PAGE_SIZE, "pageToken": token}
        except Exception as exc:
            raise self._failure("list_crypto_key_versions", exc) from exc
        return dict(sorted(versions.items(), key=lambda item: int(item[0])))

    def rotate_key(self, *, generation_wait_seconds: float = 30.0) -> str:
        """A new version, made primary and confirmed; on any failure the previous primary stays primary.

        Cloud KMS picks the version ``encrypt`` uses, so "unchanged" is checked
        at the key itself: a rotation that cannot read back its new version as
        primary puts the previous one back (``updatePrimaryVersion``, which is
        safe to repeat) and fails. The new version stays enabled either way, so
        a blob it may have sealed meanwhile still decrypts.
        """
        self.counters["rotate"] += 1
        try:
            previous = self._primary_id()
        except Exception as exc:
            raise self._rotation_failure(exc, None) from exc
        try:
            # Not retried: a retried create could make two versions.
            created = self._call("POST", f"/v1/{self.key_name}/cryptoKeyVersions", body={}, retry=False)
            version_id = self._version_id(created.get("name"))
            deadline = time.monotonic() + generation_wait_seconds
            state = created.get("state")
            while state == "PENDING_GENERATION":
                if time.monotonic() > deadline:
                    raise _IntegrityError("the new key version is still being generated")
                time.sleep(0.5)
                state = self._call("GET", f"/v1/{self.key_name}/cryptoKeyVersions/{version_id}").get("state")
        except Exception as exc:
            # Nothing was made primary (at worst an unused version exists).
            raise self._rotation_failure(exc, previous) from exc
        try:
            self._set_primary(version_id)
        except Exception as exc:
            raise self._rotation_failure(exc, self._restore_primary(previous)) from exc
        return version_id

    def _primary_id(self) -> str:
        key = self._call("GET", f"/v1/{self.key_name}")
        primary = key.get("primary")
        return self._version_id(primary.get("name") if isinstance(primary, dict) else None)

    def _set_primary(self, version_id: str) -> None:
        """``updatePrimaryVersion``, then read the key back: only a confirmed primary counts."""
        self._call("POST", f"/v1/{self.key_name}:updatePrimaryVersion", body={"cryptoKeyVersionId": version_id})
        if self._primary_id() != version_id:
            raise _IntegrityError("the key does not name the new version as primary")

    def _restore_primary(self, previous: str) -> str | None:
        """Put ``previous`` back as primary after a rotation that could not be confirmed; None if that fails too."""
        try:
            if self._primary_id() != previous:  # the update may have landed after all
                self._set_primary(previous)
        except Exception as exc:  # noqa: BLE001 - reported by the caller's error, logged here by class
            logger.error("Cloud KMS rotate_key could not restore the primary version: %s", type(exc).__name__)
            return None
        return previous

    def _rotation_failure(self, cause: Exception, primary: str | None) -> KeyRotationFailed:
        self._failure("rotate_key", cause)  # logs it
        if primary is None:
            state = "the primary key version could not be confirmed; check it before retrying"
        else:
            state = f"key version {primary} stays primary and no credential changed"
        return KeyRotationFailed(f"Key rotation failed: Cloud KMS key {self.key_name} did not confirm it; {state}")

    # --- internals -----------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """One KMS call; transient failures retried until ``retry_deadline`` (see the module docstring)."""
        return self._get_session().call(
            method,
            path,
            body=body,
            params=params,
            timeout=self._timeout,
            retry_deadline=self._retry_deadline if retry else None,
        )

    def _get_session(self) -> GoogleRestSession:
        with self._session_lock:
            if self._session is None:
                self._session = GoogleRestSession(
                    KMS_BASE_URL, api_endpoint=self._api_endpoint, credentials=self._credentials
                )
            return self._session

    def _version_id(self, version_name: Any) -> str:
        prefix = f"{self.key_name}/cryptoKeyVersions/"
        if not isinstance(version_name, str) or not version_name.startswith(prefix):
            raise _IntegrityError("answer name is not a version of the configured key")
        version_id = version_name[len(prefix) :]
        if not _VERSION_ID.fullmatch(version_id):
            raise _IntegrityError("answer name is not a version of the configured key")
        return version_id

    @staticmethod
    def _failure(operation: str, cause: Exception) -> EncryptionFailed:
        if not _is_expected_failure(cause):
            # A bug of ours (or a malformed answer) still must not leak
            # plaintext through its message; log it louder and fail the same way.
            logger.error("Cloud KMS %s failed unexpectedly: %s", operation, type(cause).__name__)
        else:
            logger.warning("Cloud KMS %s failed: %s", operation, failure_text(cause))
        return EncryptionFailed()


def _require_bytes(data: bytes, associated_data: bytes) -> None:
    # Checked before anything touches them, so no error message can quote the value.
    if not isinstance(data, bytes) or not isinstance(associated_data, bytes):
        raise TypeError("Cloud KMS data and associated_data must be bytes")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes_field(answer: dict[str, Any], name: str) -> bytes:
    """A proto3-JSON ``bytes`` field: standard or URL-safe base64; absent means empty."""
    value = answer.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a base64 string")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{name} is not valid base64") from exc


def _int64_field(answer: dict[str, Any], name: str) -> int | None:
    """A proto3-JSON ``int64`` (a decimal string, or a number); None when absent or not a number."""
    value = answer.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _checked_body(field: str, data: bytes, associated_data: bytes) -> dict[str, str]:
    """An encrypt/decrypt body: ``field`` and the AAD base64-encoded, each with the CRC32C KMS verifies."""
    return {
        field: _b64encode(data),
        f"{field}Crc32c": str(_crc32c(data)),
        "additionalAuthenticatedData": _b64encode(associated_data),
        "additionalAuthenticatedDataCrc32c": str(_crc32c(associated_data)),
    }


def _is_expected_failure(exc: Exception) -> bool:
    """Errors a KMS call is expected to produce; anything else is logged as a bug."""
    if isinstance(exc, _IntegrityError | GoogleApiError):
        return True
    from google.auth.exceptions import GoogleAuthError

    # Transport failures are OSErrors (shared.egress.http_client's TransportError and TimeoutError).
    return isinstance(exc, GoogleAuthError | OSError)
