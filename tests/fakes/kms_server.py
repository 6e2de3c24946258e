"""A Cloud KMS REST v1 stand-in for tests: symmetric keys with real AES-256-GCM.

Serves the subset of ``cloudkms.googleapis.com/v1`` that ``google-cloud-kms``
(``transport="rest"``) calls for symmetric encryption and rotation, with the
URLs and JSON field names of the generated REST transport
(``kms_v1/services/key_management_service/transports/rest_base.py``):

==========================================  ======  ===========================================================
client method                               verb    path (under ``/v1/``)
==========================================  ======  ===========================================================
``create_key_ring``                         POST    ``projects/*/locations/*/keyRings?keyRingId=``
``get_key_ring``                            GET     ``projects/*/locations/*/keyRings/*``
``create_crypto_key``                       POST    ``projects/*/locations/*/keyRings/*/cryptoKeys?cryptoKeyId=``
``get_crypto_key``                          GET     ``.../cryptoKeys/*``
``encrypt``                                 POST    ``.../cryptoKeys/**:encrypt`` (a key or one of its versions)
``decrypt``                                 POST    ``.../cryptoKeys/*:decrypt``
``create_crypto_key_version``               POST    ``.../cryptoKeys/*/cryptoKeyVersions``
``get_crypto_key_version``                  GET     ``.../cryptoKeys/*/cryptoKeyVersions/*``
``list_crypto_key_versions``                GET     ``.../cryptoKeys/*/cryptoKeyVersions?pageSize=&pageToken=``
``update_crypto_key_version``               PATCH   ``.../cryptoKeyVersions/*?updateMask=state``
``update_primary_version``                  POST    ``.../cryptoKeys/*:updatePrimaryVersion``
==========================================  ======  ===========================================================

Encrypt request ``{name, plaintext, additionalAuthenticatedData, plaintextCrc32c,
additionalAuthenticatedDataCrc32c}`` answers ``{name: <primary version>,
ciphertext, ciphertextCrc32c, verifiedPlaintextCrc32c,
verifiedAdditionalAuthenticatedDataCrc32c, protectionLevel}``; decrypt request
``{name, ciphertext, additionalAuthenticatedData, ciphertextCrc32c,
additionalAuthenticatedDataCrc32c}`` answers ``{plaintext, plaintextCrc32c,
usedPrimary, protectionLevel}``. Bytes are base64, CRC32C values are int64
strings, a request checksum that does not match its data is rejected with 400
as real KMS does.

Ciphertext layout (this fake's own; real KMS ciphertext is opaque too)::

    version number   4 bytes, big-endian (the CryptoKeyVersion that encrypted it)
    nonce           12 bytes, random
    AES-256-GCM     ciphertext || 16-byte tag, over the version's own 32-byte key,
                    associated data = len(key name) (2 bytes, big-endian)
                                      || key name || caller's AAD

Decrypt uses the embedded version whichever version is primary, and fails
with 400 ``FAILED_PRECONDITION`` when that version is disabled or destroyed,
400 ``INVALID_ARGUMENT`` "Decryption failed" on a wrong AAD, key or blob.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes._google_rest import (
    UINT32_MASK,
    ApiError,
    FakeGoogleRestServer,
    Route,
    already_exists,
    b64encode,
    bytes_field,
    failed_precondition,
    int64_field,
    int64_json,
    invalid_argument,
    json_field,
    not_found,
    now_rfc3339,
)

_SEGMENT = r"[^/:]+"
_LOCATION = rf"projects/{_SEGMENT}/locations/{_SEGMENT}"
_KEY_RING = rf"{_LOCATION}/keyRings/{_SEGMENT}"
_CRYPTO_KEY = rf"{_KEY_RING}/cryptoKeys/{_SEGMENT}"
_VERSION = rf"{_CRYPTO_KEY}/cryptoKeyVersions/{_SEGMENT}"
_ID = re.compile(r"[a-zA-Z0-9_-]{1,63}")

MAX_PLAINTEXT = 64 * 1024
MAX_AAD = 64 * 1024
_VERSION_PREFIX = 4
_NONCE = 12


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


@dataclass
class _Version:
    number: int
    material: bytes | None  # None once destroyed
    protection_level: str
    state: str = "ENABLED"
    create_time: str = field(default_factory=now_rfc3339)
    destroy_time: str | None = None


@dataclass
class _CryptoKey:
    name: str
    protection_level: str = "SOFTWARE"
    versions: dict[int, _Version] = field(default_factory=dict)
    primary: int | None = None
    create_time: str = field(default_factory=now_rfc3339)

    def add_version(self) -> _Version:
        number = max(self.versions, default=0) + 1
        version = _Version(number, AESGCM.generate_key(bit_length=256), self.protection_level)
        self.versions[number] = version
        return version

    def version_name(self, number: int) -> str:
        return f"{self.name}/cryptoKeyVersions/{number}"


class FakeKmsServer(FakeGoogleRestServer):
    """Cloud KMS on loopback. ``start()``, ``stop()``, ``endpoint``; test helpers below.

    ``calls`` counts requests by client method name (``encrypt``, ``decrypt``,
    ``get_crypto_key``, ``create_crypto_key_version``, ``update_primary_version``,
    ``update_crypto_key_version``, ...). Besides the base class's faults:
    ``corrupt_next_response_crc()``, ``skip_next_request_crc_verification()`` and
    ``drop_next_primary_update()``.
    """

    ENUMS: Mapping[str, Mapping[str, int]] = {
        "state": {
            "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED": 0,
            "ENABLED": 1,
            "DISABLED": 2,
            "DESTROYED": 3,
            "DESTROY_SCHEDULED": 4,
            "PENDING_GENERATION": 5,
        },
        "protectionLevel": {"PROTECTION_LEVEL_UNSPECIFIED": 0, "SOFTWARE": 1, "HSM": 2},
        "purpose": {"CRYPTO_KEY_PURPOSE_UNSPECIFIED": 0, "ENCRYPT_DECRYPT": 1},
        "algorithm": {"CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED": 0, "GOOGLE_SYMMETRIC_ENCRYPTION": 1},
    }
    PERMISSIONS: Mapping[str, str] = {
        "encrypt": "cloudkms.cryptoKeyVersions.useToEncrypt",
        "decrypt": "cloudkms.cryptoKeyVersions.useToDecrypt",
        "get_crypto_key": "cloudkms.cryptoKeys.get",
        "create_crypto_key": "cloudkms.cryptoKeys.create",
        "update_primary_version": "cloudkms.cryptoKeys.update",
        "create_crypto_key_version": "cloudkms.cryptoKeyVersions.create",
        "get_crypto_key_version": "cloudkms.cryptoKeyVersions.get",
        "list_crypto_key_versions": "cloudkms.cryptoKeyVersions.list",
        "update_crypto_key_version": "cloudkms.cryptoKeyVersions.update",
        "create_key_ring": "cloudkms.keyRings.create",
        "get_key_ring": "cloudkms.keyRings.get",
    }

    def __init__(self) -> None:
        self._key_rings: dict[str, str] = {}  # name -> createTime
        self._keys: dict[str, _CryptoKey] = {}
        self._corrupt_crc = 0
        self._skip_request_crc = 0
        self._drop_primary_update = 0
        super().__init__()

    # --- test helpers ------------------------------------------------------------

    def create_key(self, name: str, *, protection_level: str = "SOFTWARE", initial_version: bool = True) -> str:
        """Create ``projects/*/locations/*/keyRings/*/cryptoKeys/*`` (and its key ring) with version 1 primary."""
        if not re.fullmatch(_CRYPTO_KEY, name):
            raise ValueError(f"not a CryptoKey name: {name!r}")
        with self._lock:
            ring = name.rsplit("/cryptoKeys/", 1)[0]
            self._key_rings.setdefault(ring, now_rfc3339())
            if name in self._keys:
                raise ValueError(f"CryptoKey {name} already exists")
            key = _CryptoKey(name, protection_level)
            if initial_version:
                key.primary = key.add_version().number
            self._keys[name] = key
        return name

    def add_version(self, key_name: str, *, make_primary: bool = False) -> str:
        """A new ENABLED version; returns its id (``"2"``)."""
        with self._lock:
            key = self._key(key_name)
            version = key.add_version()
            if make_primary:
                key.primary = version.number
            return str(version.number)

    def set_primary(self, key_name: str, version_id: str) -> None:
        with self._lock:
            self._update_primary(self._key(key_name), version_id)

    def set_version_state(self, key_name: str, version_id: str, state: str) -> None:
        """``ENABLED``, ``DISABLED`` or ``DESTROYED`` (destroying drops the key material)."""
        with self._lock:
            version = self._version(self._key(key_name), version_id)
            if state == "DESTROYED":
                version.material = None
                version.destroy_time = now_rfc3339()
            elif version.state == "DESTROYED":
                raise ValueError("a destroyed version cannot change state")
            version.state = state

    def primary_version(self, key_name: str) -> str | None:
        with self._lock:
            primary = self._key(key_name).primary
            return None if primary is None else str(primary)

    def version_state(self, key_name: str, version_id: str) -> str:
        with self._lock:
            return self._version(self._key(key_name), version_id).state

    def corrupt_next_response_crc(self, n: int = 1) -> None:
        """The next ``n`` encrypt/decrypt answers carry a wrong ``ciphertextCrc32c``/``plaintextCrc32c``."""
        with self._lock:
            self._corrupt_crc += n

    def skip_next_request_crc_verification(self, n: int = 1) -> None:
        """The next ``n`` encrypt answers say ``verified...Crc32c: false`` (checksums lost in transit)."""
        with self._lock:
            self._skip_request_crc += n

    def drop_next_primary_update(self, n: int = 1) -> None:
        """The next ``n`` ``updatePrimaryVersion`` calls answer success but change nothing (a lost write)."""
        with self._lock:
            self._drop_primary_update += n

    def _reset_extra_faults(self) -> None:
        self._corrupt_crc = 0
        self._skip_request_crc = 0
        self._drop_primary_update = 0

    def _take(self, counter: str) -> bool:
        with self._lock:
            if getattr(self, counter) > 0:
                setattr(self, counter, getattr(self, counter) - 1)
                return True
            return False

    def _response_crc(self, data: bytes) -> str:
        crc = _crc32c(data)
        if self._take("_corrupt_crc"):
            crc = (crc ^ 0x1) & UINT32_MASK
        return int64_json(crc)

    # --- routes --------------------------------------------------------------------

    def routes(self) -> list[Route]:
        v1 = "/v1/"
        return [
            self.route("POST", rf"{v1}(?P<parent>{_LOCATION})/keyRings", "create_key_ring", self._create_key_ring),
            self.route("GET", rf"{v1}(?P<name>{_KEY_RING})", "get_key_ring", self._get_key_ring),
            self.route(
                "POST", rf"{v1}(?P<parent>{_KEY_RING})/cryptoKeys", "create_crypto_key", self._create_crypto_key
            ),
            self.route("GET", rf"{v1}(?P<name>{_CRYPTO_KEY})", "get_crypto_key", self._get_crypto_key),
            self.route(
                "POST",
                rf"{v1}(?P<name>{_CRYPTO_KEY}(?:/cryptoKeyVersions/{_SEGMENT})?):encrypt",
                "encrypt",
                self._encrypt,
            ),
            self.route("POST", rf"{v1}(?P<name>{_CRYPTO_KEY}):decrypt", "decrypt", self._decrypt),
            self.route(
                "POST",
                rf"{v1}(?P<name>{_CRYPTO_KEY}):updatePrimaryVersion",
                "update_primary_version",
                self._update_primary_version,
            ),
            self.route(
                "POST",
                rf"{v1}(?P<parent>{_CRYPTO_KEY})/cryptoKeyVersions",
                "create_crypto_key_version",
                self._create_crypto_key_version,
            ),
            self.route("GET", rf"{v1}(?P<name>{_VERSION})", "get_crypto_key_version", self._get_crypto_key_version),
            self.route(
                "GET",
                rf"{v1}(?P<parent>{_CRYPTO_KEY})/cryptoKeyVersions",
                "list_crypto_key_versions",
                self._list_crypto_key_versions,
            ),
            self.route(
                "PATCH", rf"{v1}(?P<name>{_VERSION})", "update_crypto_key_version", self._update_crypto_key_version
            ),
        ]

    # --- lookups and JSON --------------------------------------------------------

    def _key(self, name: str) -> _CryptoKey:
        key = self._keys.get(name)
        if key is None:
            raise not_found(f"CryptoKey {name} not found.")
        return key

    @staticmethod
    def _version(key: _CryptoKey, version_id: str | int) -> _Version:
        try:
            version = key.versions.get(int(version_id))
        except ValueError:
            version = None
        if version is None:
            raise not_found(f"CryptoKeyVersion {key.name}/cryptoKeyVersions/{version_id} not found.")
        return version

    def _key_and_version(self, version_name: str) -> tuple[_CryptoKey, _Version]:
        key_name, version_id = version_name.rsplit("/cryptoKeyVersions/", 1)
        key = self._key(key_name)
        return key, self._version(key, version_id)

    @staticmethod
    def _require_enabled(key: _CryptoKey, version: _Version) -> None:
        if version.state != "ENABLED":
            raise failed_precondition(
                f"{key.version_name(version.number)} is not enabled, current state is: {version.state}."
            )

    def _version_json(self, key: _CryptoKey, version: _Version) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": key.version_name(version.number),
            "state": version.state,
            "protectionLevel": version.protection_level,
            "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
            "createTime": version.create_time,
            "generateTime": version.create_time,
        }
        if version.destroy_time:
            body["destroyTime"] = version.destroy_time
            body["destroyEventTime"] = version.destroy_time
        return body

    def _key_json(self, key: _CryptoKey) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": key.name,
            "purpose": "ENCRYPT_DECRYPT",
            "createTime": key.create_time,
            "versionTemplate": {"protectionLevel": key.protection_level, "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION"},
            "destroyScheduledDuration": "2592000s",
        }
        if key.primary is not None:
            body["primary"] = self._version_json(key, key.versions[key.primary])
        return body

    def _update_primary(self, key: _CryptoKey, version_id: str) -> None:
        version = self._version(key, version_id)
        self._require_enabled(key, version)
        key.primary = version.number

    @staticmethod
    def _check_crc(data: bytes, crc: int | None, field_name: str, data_field: str) -> bool:
        if crc is None:
            return False
        if crc != _crc32c(data):
            raise invalid_argument(f"The checksum in field {field_name} did not match the data in field {data_field}.")
        return True

    @staticmethod
    def _gcm_aad(key_name: str, aad: bytes) -> bytes:
        encoded = key_name.encode()
        return len(encoded).to_bytes(2, "big") + encoded + aad

    # --- handlers ------------------------------------------------------------------

    def _create_key_ring(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        ring_id = query.get("keyRingId", "")
        if not _ID.fullmatch(ring_id):
            raise invalid_argument(f"Invalid key ring id: {ring_id!r}.")
        name = f"{match['parent']}/keyRings/{ring_id}"
        with self._lock:
            if name in self._key_rings:
                raise already_exists(f"KeyRing {name} already exists.")
            self._key_rings[name] = now_rfc3339()
            return {"name": name, "createTime": self._key_rings[name]}

    def _get_key_ring(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            if match["name"] not in self._key_rings:
                raise not_found(f"KeyRing {match['name']} not found.")
            return {"name": match["name"], "createTime": self._key_rings[match["name"]]}

    def _create_crypto_key(
        self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]
    ) -> dict[str, Any]:
        key_id = query.get("cryptoKeyId", "")
        if not _ID.fullmatch(key_id):
            raise invalid_argument(f"Invalid crypto key id: {key_id!r}.")
        purpose = json_field(body, "purpose")
        if purpose is None or self.enum_name("purpose", purpose) != "ENCRYPT_DECRYPT":
            raise invalid_argument("This fake supports only purpose ENCRYPT_DECRYPT.")
        template = json_field(body, "versionTemplate") or {}
        level = json_field(template, "protectionLevel")
        protection_level = "SOFTWARE" if level is None else self.enum_name("protectionLevel", level)
        skip_initial = query.get("skipInitialVersionCreation", "false").lower() == "true"
        name = f"{match['parent']}/cryptoKeys/{key_id}"
        with self._lock:
            if match["parent"] not in self._key_rings:
                raise not_found(f"KeyRing {match['parent']} not found.")
            if name in self._keys:
                raise already_exists(f"CryptoKey {name} already exists.")
            self.create_key(name, protection_level=protection_level, initial_version=not skip_initial)
            return self._key_json(self._keys[name])

    def _get_crypto_key(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            return self._key_json(self._key(match["name"]))

    def _create_crypto_key_version(
        self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]
    ) -> dict[str, Any]:
        with self._lock:
            key = self._key(match["parent"])
            return self._version_json(key, key.add_version())

    def _get_crypto_key_version(
        self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]
    ) -> dict[str, Any]:
        with self._lock:
            key, version = self._key_and_version(match["name"])
            return self._version_json(key, version)

    def _list_crypto_key_versions(
        self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]
    ) -> dict[str, Any]:
        # Ordered by version number, paged like KMS: pageSize (default and cap 1000 here) and an opaque token.
        try:
            page_size = min(int(query.get("pageSize") or 1000), 1000)
            start = int(query.get("pageToken") or 0)
        except ValueError:
            raise invalid_argument("Invalid page size or page token.") from None
        if page_size <= 0 or start < 0:
            raise invalid_argument("Invalid page size or page token.")
        with self._lock:
            key = self._key(match["parent"])
            numbers = sorted(key.versions)
            page = numbers[start : start + page_size]
            answer: dict[str, Any] = {
                "cryptoKeyVersions": [self._version_json(key, key.versions[number]) for number in page],
                "totalSize": len(numbers),
            }
            if start + page_size < len(numbers):
                answer["nextPageToken"] = str(start + page_size)
            return answer

    def _update_crypto_key_version(
        self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]
    ) -> dict[str, Any]:
        mask = {path.strip() for path in query.get("updateMask", "").split(",") if path.strip()}
        if not mask:
            raise invalid_argument("update_mask must be set.")
        if mask - {"state"}:
            raise invalid_argument(f"This fake can update only 'state', got {sorted(mask)}.")
        state = self.enum_name("state", json_field(body, "state"))
        if state not in ("ENABLED", "DISABLED"):
            raise invalid_argument(f"The state of a CryptoKeyVersion can be set to ENABLED or DISABLED, not {state}.")
        with self._lock:
            key, version = self._key_and_version(match["name"])
            if version.state not in ("ENABLED", "DISABLED"):
                raise failed_precondition(
                    f"{key.version_name(version.number)} is not enabled or disabled, current state is: {version.state}."
                )
            version.state = state
            return self._version_json(key, version)

    def _update_primary_version(
        self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]
    ) -> dict[str, Any]:
        version_id = json_field(body, "cryptoKeyVersionId")
        if not version_id:
            raise invalid_argument("crypto_key_version_id must be set.")
        dropped = self._take("_drop_primary_update")
        with self._lock:
            key = self._key(match["name"])
            if dropped:
                self._version(key, str(version_id))  # still a real version: only the write is lost
                return {**self._key_json(key), "primary": self._version_json(key, self._version(key, version_id))}
            self._update_primary(key, str(version_id))
            return self._key_json(key)

    def _encrypt(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        plaintext = bytes_field(body, "plaintext", required=True)
        aad = bytes_field(body, "additionalAuthenticatedData")
        if len(plaintext) > MAX_PLAINTEXT:
            raise invalid_argument(f"The plaintext must be at most {MAX_PLAINTEXT} bytes.")
        if len(aad) > MAX_AAD:
            raise invalid_argument(f"The additional authenticated data must be at most {MAX_AAD} bytes.")
        verified_plaintext = self._check_crc(
            plaintext, int64_field(body, "plaintextCrc32c"), "plaintext_crc32c", "plaintext"
        )
        verified_aad = self._check_crc(
            aad,
            int64_field(body, "additionalAuthenticatedDataCrc32c"),
            "additional_authenticated_data_crc32c",
            "additional_authenticated_data",
        )
        with self._lock:
            if "/cryptoKeyVersions/" in match["name"]:
                key, version = self._key_and_version(match["name"])
            else:
                key = self._key(match["name"])
                if key.primary is None:
                    raise failed_precondition(f"CryptoKey {key.name} has no primary CryptoKeyVersion.")
                version = key.versions[key.primary]
            self._require_enabled(key, version)
            assert version.material is not None
            nonce = os.urandom(_NONCE)
            sealed = AESGCM(version.material).encrypt(nonce, plaintext, self._gcm_aad(key.name, aad))
            ciphertext = version.number.to_bytes(_VERSION_PREFIX, "big") + nonce + sealed
            if self._take("_skip_request_crc"):
                verified_plaintext = verified_aad = False
            return {
                "name": key.version_name(version.number),
                "ciphertext": b64encode(ciphertext),
                "ciphertextCrc32c": self._response_crc(ciphertext),
                "verifiedPlaintextCrc32c": verified_plaintext,
                "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
                "protectionLevel": version.protection_level,
            }

    def _decrypt(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        ciphertext = bytes_field(body, "ciphertext", required=True)
        aad = bytes_field(body, "additionalAuthenticatedData")
        self._check_crc(ciphertext, int64_field(body, "ciphertextCrc32c"), "ciphertext_crc32c", "ciphertext")
        self._check_crc(
            aad,
            int64_field(body, "additionalAuthenticatedDataCrc32c"),
            "additional_authenticated_data_crc32c",
            "additional_authenticated_data",
        )
        invalid = invalid_argument("Decryption failed: the ciphertext is invalid.")
        if len(ciphertext) < _VERSION_PREFIX + _NONCE + 16:
            raise invalid
        number = int.from_bytes(ciphertext[:_VERSION_PREFIX], "big")
        nonce = ciphertext[_VERSION_PREFIX : _VERSION_PREFIX + _NONCE]
        sealed = ciphertext[_VERSION_PREFIX + _NONCE :]
        with self._lock:
            key = self._key(match["name"])
            version = key.versions.get(number)
            if version is None:
                raise invalid
            self._require_enabled(key, version)
            assert version.material is not None
            try:
                plaintext = AESGCM(version.material).decrypt(nonce, sealed, self._gcm_aad(key.name, aad))
            except InvalidTag as exc:
                raise ApiError(
                    400, "Decryption failed: verify that 'name' refers to the correct CryptoKey.", "INVALID_ARGUMENT"
                ) from exc
            return {
                "plaintext": b64encode(plaintext),
                "plaintextCrc32c": self._response_crc(plaintext),
                "usedPrimary": version.number == key.primary,
                "protectionLevel": version.protection_level,
            }
