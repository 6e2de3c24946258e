"""A Secret Manager REST v1 stand-in for tests (global secrets only).

Serves what ``google-cloud-secret-manager`` (``transport="rest"``) sends, per
the generated ``secretmanager_v1/.../transports/rest_base.py``:

==========================  ======  =============================================================
client method               verb    path (under ``/v1/``)
==========================  ======  =============================================================
``create_secret``           POST    ``projects/*/secrets?secretId=`` body: ``Secret`` (replication required)
``get_secret``              GET     ``projects/*/secrets/*``
``add_secret_version``      POST    ``projects/*/secrets/*:addVersion`` body ``{payload: {data, dataCrc32c}}``
``access_secret_version``   GET     ``projects/*/secrets/*/versions/*:access`` (``latest`` or a number)
==========================  ======  =============================================================

``access`` answers ``{name, payload: {data: <base64>, dataCrc32c: "<int64>"}}``;
``latest`` resolves to the most recently created version, and a disabled one
answers 400 ``FAILED_PRECONDITION`` as the real service does. Real Secret
Manager writes the project *number* into returned names; this fake echoes the
project as given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import google_crc32c

from tests.fakes._google_rest import (
    UINT32_MASK,
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
_PROJECT = rf"projects/{_SEGMENT}"
_SECRET = rf"{_PROJECT}/secrets/{_SEGMENT}"
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
MAX_PAYLOAD = 64 * 1024


@dataclass
class _SecretVersion:
    number: int
    data: bytes
    state: str = "ENABLED"
    create_time: str = field(default_factory=now_rfc3339)
    client_checksum: bool = False


@dataclass
class _Secret:
    name: str
    replication: dict[str, Any]
    versions: list[_SecretVersion] = field(default_factory=list)
    create_time: str = field(default_factory=now_rfc3339)


class FakeSecretManagerServer(FakeGoogleRestServer):
    """Secret Manager on loopback. ``start()``, ``stop()``, ``endpoint``; helpers below.

    ``calls`` counts requests by client method name (``access_secret_version``,
    ``create_secret``, ``add_secret_version``, ``get_secret``). Besides the base
    class's faults: ``corrupt_next_response_crc()``.
    """

    ENUMS: Mapping[str, Mapping[str, int]] = {
        "state": {"STATE_UNSPECIFIED": 0, "ENABLED": 1, "DISABLED": 2, "DESTROYED": 3},
    }
    PERMISSIONS: Mapping[str, str] = {
        "access_secret_version": "secretmanager.versions.access",
        "add_secret_version": "secretmanager.versions.add",
        "create_secret": "secretmanager.secrets.create",
        "get_secret": "secretmanager.secrets.get",
    }

    def __init__(self) -> None:
        self._secrets: dict[str, _Secret] = {}
        self._corrupt_crc = 0
        super().__init__()

    # --- test helpers ------------------------------------------------------------

    def put_secret(self, project: str, secret_id: str, value: str | bytes) -> str:
        """Create the secret if needed and add ``value`` as its newest version; returns the version name."""
        data = value.encode() if isinstance(value, str) else value
        with self._lock:
            name = f"projects/{project}/secrets/{secret_id}"
            secret = self._secrets.setdefault(name, _Secret(name, {"automatic": {}}))
            version = _SecretVersion(len(secret.versions) + 1, data)
            secret.versions.append(version)
            return f"{name}/versions/{version.number}"

    def set_version_state(self, project: str, secret_id: str, version: int, state: str) -> None:
        with self._lock:
            self._secret(f"projects/{project}/secrets/{secret_id}").versions[version - 1].state = state

    def corrupt_next_response_crc(self, n: int = 1) -> None:
        """The next ``n`` access answers carry a wrong ``payload.dataCrc32c``."""
        with self._lock:
            self._corrupt_crc += n

    def _reset_extra_faults(self) -> None:
        self._corrupt_crc = 0

    # --- routes --------------------------------------------------------------------

    def routes(self) -> list[Route]:
        v1 = "/v1/"
        return [
            self.route("POST", rf"{v1}(?P<parent>{_PROJECT})/secrets", "create_secret", self._create_secret),
            self.route("GET", rf"{v1}(?P<name>{_SECRET})", "get_secret", self._get_secret),
            self.route("POST", rf"{v1}(?P<parent>{_SECRET}):addVersion", "add_secret_version", self._add_version),
            self.route(
                "GET",
                rf"{v1}(?P<name>{_SECRET}/versions/{_SEGMENT}):access",
                "access_secret_version",
                self._access_version,
            ),
        ]

    def _secret(self, name: str) -> _Secret:
        secret = self._secrets.get(name)
        if secret is None:
            raise not_found(f"Secret [{name}] not found.")
        return secret

    @staticmethod
    def _secret_json(secret: _Secret) -> dict[str, Any]:
        return {
            "name": secret.name,
            "replication": secret.replication,
            "createTime": secret.create_time,
            "etag": f'"{len(secret.versions)}"',
        }

    # --- handlers ------------------------------------------------------------------

    def _create_secret(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        secret_id = query.get("secretId", "")
        if not _SECRET_ID.fullmatch(secret_id):
            raise invalid_argument(f"Invalid secret id: {secret_id!r}.")
        replication = json_field(body, "replication")
        if not replication:
            raise invalid_argument("Secret.replication is required.")
        name = f"{match['parent']}/secrets/{secret_id}"
        with self._lock:
            if name in self._secrets:
                raise already_exists(f"Secret [{name}] already exists.")
            self._secrets[name] = _Secret(name, replication)
            return self._secret_json(self._secrets[name])

    def _get_secret(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            return self._secret_json(self._secret(match["name"]))

    def _add_version(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        payload = json_field(body, "payload")
        if not isinstance(payload, dict):
            raise invalid_argument("payload is required.")
        data = bytes_field(payload, "data")
        if len(data) > MAX_PAYLOAD:
            raise invalid_argument(f"Secret payload must be at most {MAX_PAYLOAD} bytes.")
        crc = int64_field(payload, "dataCrc32c")
        if crc is not None and crc != google_crc32c.value(data):
            raise invalid_argument("Checksum mismatch: the data_crc32c does not match the payload data.")
        with self._lock:
            secret = self._secret(match["parent"])
            version = _SecretVersion(len(secret.versions) + 1, data, client_checksum=crc is not None)
            secret.versions.append(version)
            return {
                "name": f"{secret.name}/versions/{version.number}",
                "createTime": version.create_time,
                "state": version.state,
                "replicationStatus": {"automatic": {}},
                "etag": f'"{version.number}"',
                "clientSpecifiedPayloadChecksum": version.client_checksum,
            }

    def _access_version(self, match: re.Match[str], body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        secret_name, version_id = match["name"].rsplit("/versions/", 1)
        with self._lock:
            secret = self._secrets.get(secret_name)
            if secret is None or not secret.versions:
                raise not_found(f"Secret [{secret_name}] not found or has no versions.")
            if version_id == "latest":
                version = secret.versions[-1]
            elif version_id.isdigit() and 1 <= int(version_id) <= len(secret.versions):
                version = secret.versions[int(version_id) - 1]
            else:
                raise not_found(f"Secret Version [{match['name']}] not found.")
            version_name = f"{secret.name}/versions/{version.number}"
            if version.state != "ENABLED":
                raise failed_precondition(f"Secret Version [{version_name}] is in {version.state} state.")
            crc = google_crc32c.value(version.data)
            if self._corrupt_crc > 0:
                self._corrupt_crc -= 1
                crc = (crc ^ 0x1) & UINT32_MASK
            return {"name": version_name, "payload": {"data": b64encode(version.data), "dataCrc32c": int64_json(crc)}}
