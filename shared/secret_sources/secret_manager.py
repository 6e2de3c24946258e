"""Secrets from Secret Manager (GCP), over its REST API."""

from __future__ import annotations

import base64
import logging
import re
import threading
from typing import TYPE_CHECKING, Any

from shared.domain.errors import ConfigurationError
from shared.secret_sources import check_secret_name

if TYPE_CHECKING:
    from shared.egress.google_rest import GoogleRestSession

logger = logging.getLogger("integrations.service_secrets")

_PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]{0,99}")

SECRET_MANAGER_BASE_URL = "https://secretmanager.googleapis.com"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_DEADLINE = 20.0


class SecretManagerSource:
    """Secrets from Secret Manager, the ``latest`` version, cached per instance.

    Each ``get(name)`` reads ``projects/{project}/secrets/{name}/versions/latest``
    once for the life of the instance (rotating a secret takes a new instance,
    i.e. a new Cloud Function instance). The payload's ``data_crc32c`` must be
    present and match the data; the value must be UTF-8.

    It speaks Secret Manager's REST API (``versions.access``) through
    ``shared.egress.google_rest``, as the BigQuery and KMS adapters do, so neither
    ``google-cloud-secret-manager`` nor gRPC is loaded (the OAuth start reads
    its client secret here on a cold start); the tests hold it to that library.
    ``api_endpoint`` (e.g. ``http://127.0.0.1:8086``) points it at a loopback
    stand-in; the token comes as ``shared.egress.google_rest`` says. Production
    instances get the pepper as an environment variable instead (see
    ``shared.app.wiring``). Each attempt has ``timeout`` seconds and retries of
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
        check_secret_name(name)
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
            from shared.egress.google_rest import failure_text

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
        from shared.egress.google_rest import GoogleRestSession

        if self._session is None:
            self._session = GoogleRestSession(
                SECRET_MANAGER_BASE_URL, api_endpoint=self._api_endpoint, credentials=self._credentials
            )
        return self._session


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))
