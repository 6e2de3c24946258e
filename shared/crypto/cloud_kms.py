"""Cloud KMS adapter of the crypto port (``CredentialCipher``).

Translates ``encrypt(plaintext, associated_data)`` / ``decrypt(...)`` into
Cloud KMS ``cryptoKeys.encrypt`` / ``cryptoKeys.decrypt`` on one symmetric
``CryptoKey`` and turns every failure into ``EncryptionFailed``. Nothing else:
no envelope, no caching. Key management is three calls of the port:
``primary_version`` (``cryptoKeys.get``), ``key_versions``
(``cryptoKeyVersions.list``) and ``rotate_key`` (``cryptoKeyVersions.create``
then ``cryptoKeys.updatePrimaryVersion``; a version still being generated, as
an HSM one may be, is waited for first). The runtime identity needs only the
permissions of these calls on this one key (terraform/iam.tf).

Wire contract (``google-cloud-kms``, REST ``/v1/{key}:encrypt``):

- Cloud KMS picks the key's *primary* version for encryption and records it
  inside the ciphertext; decryption finds that version itself, so a blob made
  before a rotation still decrypts while its version is enabled.
- ``EncryptedSecret.key_version`` is the trailing id of the version that
  encrypted the blob, parsed from the response ``name``
  (``{key}/cryptoKeyVersions/3`` -> ``"3"``). It is stored beside the blob to
  tell which rows still use an old version (re-encryption before disabling
  it); it is not needed to decrypt.
- ``associated_data`` is sent as KMS ``additional_authenticated_data``; a
  different value at decrypt fails.
- Integrity: both directions carry CRC32C (``google_crc32c``) as KMS asks
  clients to do. Encrypt sends ``plaintext_crc32c`` and
  ``additional_authenticated_data_crc32c`` and requires the response to say
  both were verified and ``ciphertext_crc32c`` to match the ciphertext;
  decrypt sends ``ciphertext_crc32c`` and the AAD checksum and checks
  ``plaintext_crc32c``. A mismatch is treated as a failed call.

Failures — any ``google.api_core.exceptions.GoogleAPIError`` (including the
retry helper's ``RetryError``; over REST the class follows the HTTP code, so a
403 is ``Forbidden``, not ``PermissionDenied``), ``google.auth`` errors,
``requests`` transport errors and integrity mismatches — raise
``EncryptionFailed()`` with the generic message, chained from the cause; the
log line (WARNING) names only the cause's class. Any other exception inside the
call (a malformed response, a client-library bug) fails the same way but is
logged at ERROR: its text might quote request or response data. Arguments that
are not ``bytes`` raise ``TypeError`` before KMS is called.

Time is bounded: each attempt has ``timeout`` seconds, the client's retry
(``ServiceUnavailable``/``DeadlineExceeded`` only, exponential backoff) stops
starting attempts after ``retry_deadline`` seconds, so one call takes at most
about ``retry_deadline + timeout``.

``counters["encrypt"]``/``counters["decrypt"]`` count calls of this adapter
(one per ``encrypt``/``decrypt`` invocation, failed ones included); retries
inside the client library are not counted separately.

Google libraries are imported on first use, never at import time of this
module, so the local runtime and functions that never call KMS start fast.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from typing import Any

from shared.crypto import EncryptedSecret
from shared.errors import ConfigurationError, EncryptionFailed

logger = logging.getLogger(__name__)

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


class _IntegrityError(Exception):
    """A CRC32C check failed or the response was not what KMS promises."""


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
    """``CredentialCipher`` over one Cloud KMS symmetric ``CryptoKey``.

    The client always uses the REST transport (HTTP/1.1 through ``requests``,
    which the BigQuery client has loaded already): no gRPC channel is opened on
    the request path, which keeps a cold start short. ``api_endpoint`` (e.g.
    ``http://127.0.0.1:8085``) points it at a loopback stand-in; without it
    the library's default endpoint is used. ``credentials`` defaults to the
    application default credentials. The client is created on first call and
    reused for the life of the instance.
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
        self._api_endpoint = api_endpoint
        self._credentials = credentials
        self._timeout = timeout
        self._retry_deadline = retry_deadline
        self._client: Any = None
        self._retry: Any = None
        self._client_lock = threading.Lock()

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> EncryptedSecret:
        _require_bytes(plaintext, associated_data)
        self.counters["encrypt"] += 1
        try:
            response = self._call(
                "encrypt",
                {
                    "name": self.key_name,
                    "plaintext": plaintext,
                    "additional_authenticated_data": associated_data,
                    "plaintext_crc32c": _crc32c(plaintext),
                    "additional_authenticated_data_crc32c": _crc32c(associated_data),
                },
            )
            if not response.verified_plaintext_crc32c:
                raise _IntegrityError("plaintext_crc32c not verified by KMS")
            if not response.verified_additional_authenticated_data_crc32c:
                raise _IntegrityError("additional_authenticated_data_crc32c not verified by KMS")
            ciphertext = bytes(response.ciphertext)
            if response.ciphertext_crc32c != _crc32c(ciphertext):
                raise _IntegrityError("ciphertext_crc32c does not match the ciphertext")
            key_version = self._version_id(response.name)
        except Exception as exc:
            raise self._failure("encrypt", exc) from exc
        return EncryptedSecret(ciphertext=ciphertext, key_version=key_version)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        _require_bytes(ciphertext, associated_data)
        self.counters["decrypt"] += 1
        try:
            response = self._call(
                "decrypt",
                {
                    "name": self.key_name,
                    "ciphertext": ciphertext,
                    "additional_authenticated_data": associated_data,
                    "ciphertext_crc32c": _crc32c(ciphertext),
                    "additional_authenticated_data_crc32c": _crc32c(associated_data),
                },
            )
            plaintext = bytes(response.plaintext)
            if response.plaintext_crc32c != _crc32c(plaintext):
                raise _IntegrityError("plaintext_crc32c does not match the plaintext")
        except Exception as exc:
            raise self._failure("decrypt", exc) from exc
        return plaintext

    # --- key management -------------------------------------------------------------

    def primary_version(self) -> str:
        try:
            key = self._call("get_crypto_key", {"name": self.key_name})
            version_id = self._version_id(key.primary.name)
        except Exception as exc:
            raise self._failure("get_crypto_key", exc) from exc
        return version_id

    def key_versions(self) -> dict[str, str]:
        try:
            client = self._get_client()
            pages = client.list_crypto_key_versions(
                request={"parent": self.key_name, "page_size": 1000}, retry=self._retry, timeout=self._timeout
            )
            versions = {self._version_id(version.name): version.state.name.lower() for version in pages}
        except Exception as exc:
            raise self._failure("list_crypto_key_versions", exc) from exc
        return dict(sorted(versions.items(), key=lambda item: int(item[0])))

    def rotate_key(self, *, generation_wait_seconds: float = 30.0) -> str:
        self.counters["rotate"] += 1
        try:
            from google.cloud import kms

            # Not retried: a retried create could make two versions.
            created = self._get_client().create_crypto_key_version(
                request={"parent": self.key_name, "crypto_key_version": {}}, timeout=self._timeout
            )
            version_id = self._version_id(created.name)
            deadline = time.monotonic() + generation_wait_seconds
            state = created.state
            while state == kms.CryptoKeyVersion.CryptoKeyVersionState.PENDING_GENERATION:
                if time.monotonic() > deadline:
                    raise _IntegrityError("the new key version is still being generated")
                time.sleep(0.5)
                state = self._call("get_crypto_key_version", {"name": created.name}).state
            self._call(
                "update_crypto_key_primary_version", {"name": self.key_name, "crypto_key_version_id": version_id}
            )
        except Exception as exc:
            raise self._failure("rotate_key", exc) from exc
        return version_id

    # --- internals -----------------------------------------------------------------

    def _call(self, method: str, request: dict[str, Any]) -> Any:
        client = self._get_client()
        return getattr(client, method)(request=request, retry=self._retry, timeout=self._timeout)

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from google.api_core import exceptions as api_exceptions
                from google.api_core import retry as api_retry
                from google.cloud import kms

                options: dict[str, Any] = {"transport": "rest"}
                if self._api_endpoint:
                    options["client_options"] = {"api_endpoint": self._api_endpoint}
                self._retry = api_retry.Retry(
                    predicate=api_retry.if_exception_type(
                        api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded
                    ),
                    initial=0.1,
                    maximum=2.0,
                    multiplier=2.0,
                    timeout=self._retry_deadline,
                )
                self._client = kms.KeyManagementServiceClient(credentials=self._credentials, **options)
            return self._client

    def _version_id(self, version_name: str) -> str:
        prefix = f"{self.key_name}/cryptoKeyVersions/"
        version_id = version_name[len(prefix) :] if version_name.startswith(prefix) else ""
        if not _VERSION_ID.fullmatch(version_id):
            raise _IntegrityError("response name is not a version of the configured key")
        return version_id

    @staticmethod
    def _failure(operation: str, cause: Exception) -> EncryptionFailed:
        if not _is_expected_failure(cause):
            # A bug of ours (or of the client library) still must not leak
            # plaintext through its message; log it louder and fail the same way.
            logger.error("Cloud KMS %s failed unexpectedly: %s", operation, type(cause).__name__)
        else:
            logger.warning("Cloud KMS %s failed: %s", operation, type(cause).__name__)
        return EncryptionFailed()


def _require_bytes(data: bytes, associated_data: bytes) -> None:
    # Checked before the client sees them: protobuf's own type errors quote the value.
    if not isinstance(data, bytes) or not isinstance(associated_data, bytes):
        raise TypeError("Cloud KMS data and associated_data must be bytes")


def _is_expected_failure(exc: Exception) -> bool:
    """Errors a KMS call is expected to produce; anything else is logged as a bug."""
    if isinstance(exc, _IntegrityError):
        return True
    try:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from requests.exceptions import RequestException
    except ImportError:
        return False
    return isinstance(exc, GoogleAPIError | GoogleAuthError | RequestException)
