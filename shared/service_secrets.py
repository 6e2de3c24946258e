"""The service's own secrets (e.g. the pepper that hashes org API keys).

Port: ``SecretSource.get(name) -> str``. Adapters:

- ``EnvSecretSource`` — local runtime and tests: environment variable
  ``INTEGRATIONS_SECRET_<NAME>`` first, then an optional JSON file;
- ``SecretManagerSource`` — GCP: Secret Manager
  ``projects/{project}/secrets/{name}/versions/latest``, read once per instance.

``name`` is a Secret Manager secret id (letters, digits, ``_`` and ``-``, at
most 255 characters) so the same name works with both adapters. Every failure
is a ``shared.errors.ConfigurationError`` that names the secret and says what
was expected — never its value.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ConfigurationError

if TYPE_CHECKING:
    from shared.google_rest import GoogleRestSession

logger = logging.getLogger("integrations.service_secrets")

ENV_PREFIX = "INTEGRATIONS_SECRET_"
_SECRET_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]{0,99}")

SECRET_MANAGER_BASE_URL = "https://secretmanager.googleapis.com"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_DEADLINE = 20.0


class SecretSource(Protocol):
    def get(self, name: str) -> str: ...


def _validate_name(name: str) -> str:
    if not isinstance(name, str) or _SECRET_NAME.fullmatch(name) is None:
        raise ConfigurationError(
            f"Secret name {name!r} is malformed: "
            "expected 1-255 letters, digits, '_' or '-' (a Secret Manager secret id)"
        )
    return name


def env_var_name(name: str) -> str:
    """``api-key-pepper`` -> ``INTEGRATIONS_SECRET_API_KEY_PEPPER``."""
    return ENV_PREFIX + _validate_name(name).upper().replace("-", "_")


class EnvSecretSource:
    """Secrets from the environment, else from a local JSON file.

    Lookup order for ``get(name)``:

    1. environment variable ``INTEGRATIONS_SECRET_<NAME>`` (``name`` upper-cased,
       ``-`` -> ``_``), read at each call;
    2. ``path``, if given: a JSON object ``{"<name>": "<value>", ...}`` keyed by
       the secret name as passed to ``get``; read once, on first need. Keep it
       out of version control and readable by the service user only (0600).

    An empty value counts as unset. ``environ`` replaces ``os.environ`` (tests).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._environ = environ
        self._file_values: dict[str, str] | None = None
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        variable = env_var_name(name)
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(variable)
        if value:
            return value
        if self._path is not None:
            value = self._load_file().get(name)
            if value:
                return value
        where = f"env var {variable}" + (f" or key {name!r} in {self._path}" if self._path is not None else "")
        raise ConfigurationError(f"Secret {name!r} is not set: expected a non-empty {where}")

    def _load_file(self) -> dict[str, str]:
        with self._lock:
            if self._file_values is None:
                self._file_values = _read_secret_file(self._path)  # type: ignore[arg-type]
            return self._file_values


def _read_secret_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"Secrets file {path} cannot be read: {type(exc).__name__}") from exc
    except UnicodeDecodeError:
        raise ConfigurationError(f"Secrets file {path} is not UTF-8 text") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        # Not chained: the decode error keeps the whole document (the secrets) in ``exc.doc``.
        raise ConfigurationError(
            f"Secrets file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
            'expected an object {"<name>": "<value>"}'
        ) from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ConfigurationError(f'Secrets file {path} must hold a JSON object of strings {{"<name>": "<value>"}}')
    return values


class SecretManagerSource:
    """Secrets from Secret Manager, the ``latest`` version, cached per instance.

    Each ``get(name)`` reads ``projects/{project}/secrets/{name}/versions/latest``
    once for the life of the instance (rotating a secret takes a new instance,
    i.e. a new Cloud Function instance). The payload's ``data_crc32c`` must be
    present and match the data; the value must be UTF-8.

    It speaks Secret Manager's REST API (``versions.access``) through
    ``shared.google_rest``, as the BigQuery and KMS adapters do, so neither
    ``google-cloud-secret-manager`` nor gRPC is loaded (the OAuth start reads
    its client secret here on a cold start); the tests hold it to that library.
    ``api_endpoint`` (e.g. ``http://127.0.0.1:8086``) points it at a loopback
    stand-in; the token comes as ``shared.google_rest`` says. Production
    instances get the pepper as an environment variable instead (see
    ``shared.wiring``). Each attempt has ``timeout`` seconds and retries of
    transient failures (429, 5xx, transport) stop after ``retry_deadline``
    seconds.
    """

    def __init__(
        self,
        project: str,
        *,
        api_endpoint: str | None = None,
        credentials: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry_deadline: float = DEFAULT_RETRY_DEADLINE,
    ) -> None:
        if not isinstance(project, str) or _PROJECT.fullmatch(project) is None:
            raise ConfigurationError(
                f"Secret Manager project {project!r} is malformed: expected a project id or number such as 'my-project'"
            )
        self.project = project
        self._api_endpoint = api_endpoint
        self._credentials = credentials
        self._timeout = timeout
        self._retry_deadline = retry_deadline
        self._session: GoogleRestSession | None = None
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        _validate_name(name)
        # One lock for reads and the cache: concurrent first reads of a name
        # still cost one Secret Manager call.
        with self._lock:
            if name not in self._values:
                self._values[name] = self._read(name)
            return self._values[name]

    def _read(self, name: str) -> str:
        resource = f"projects/{self.project}/secrets/{name}/versions/latest"
        try:
            answer = self._get_session().call(
                "GET", f"/v1/{resource}:access", timeout=self._timeout, retry_deadline=self._retry_deadline
            )
            payload = answer.get("payload")
            payload = payload if isinstance(payload, dict) else {}
            data = base64.b64decode(str(payload.get("data", "")), validate=True)
            expected_crc = payload.get("dataCrc32c")
        except Exception as exc:
            from shared.google_rest import failure_text

            cause = failure_text(exc)
            logger.warning("Secret Manager read of %s failed: %s", resource, cause)
            raise ConfigurationError(
                f"Secret {name!r} could not be read from Secret Manager ({resource}): {cause}"
            ) from exc
        # proto3 JSON writes an int64 as a decimal string.
        if expected_crc is None or str(expected_crc) != str(_crc32c(data)):
            logger.warning("Secret Manager read of %s failed: payload checksum mismatch", resource)
            raise ConfigurationError(
                f"Secret {name!r} from Secret Manager ({resource}) failed its CRC32C check: "
                "expected payload.data_crc32c to match the data"
            )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # Not chained: the decode error holds the raw secret bytes.
            raise ConfigurationError(
                f"Secret {name!r} from Secret Manager ({resource}) is not UTF-8 text: expected a text value"
            ) from None

    def _get_session(self) -> GoogleRestSession:
        # Imported here: the local runtime reads its secrets from the environment and never needs it.
        from shared.google_rest import GoogleRestSession

        if self._session is None:
            self._session = GoogleRestSession(
                SECRET_MANAGER_BASE_URL, api_endpoint=self._api_endpoint, credentials=self._credentials
            )
        return self._session


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))
