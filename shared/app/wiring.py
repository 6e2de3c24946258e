"""The composition root: builds the adapters and the service from ``Settings``.

``build_service`` picks the adapters for ``INTEGRATIONS_BACKEND`` and imports
Google client libraries only in ``gcp`` mode, and the KMS client only when an
operation first needs to encrypt or decrypt. Nothing below this module (the
service, the stores, the validators) imports it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from shared.common.config import API_KEY_PEPPER_SECRET, Settings
from shared.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from shared.crypto import CredentialCipher
    from shared.domain.providers import ProviderSpec
    from shared.secret_sources import SecretSource
    from shared.store import IntegrationStore
    from shared.usecases.integrations import IntegrationService
    from shared.validators import ValidationContext


class Adapters:
    """Builds each adapter on first use and keeps it for the instance's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def validation_context(self, spec: ProviderSpec) -> ValidationContext:
        from shared.validators import ValidationContext  # only a credential check needs the validators

        return ValidationContext.of(self.settings, spec)

    @cached_property
    def store(self) -> IntegrationStore:
        if self.settings.backend == "gcp":
            from shared.store.bigquery import BigQueryStore

            return BigQueryStore.from_settings(self.settings)
        from shared.store.sqlite import SqliteStore

        with _local_state(self.settings):
            return SqliteStore(self.settings.data_dir / "integrations.sqlite3")

    @cached_property
    def cipher(self) -> CredentialCipher:
        if self.settings.backend == "gcp":
            from shared.crypto.cloud_kms import CloudKmsCipher

            assert self.settings.kms_key_name is not None
            # The token (metadata server, a stand-in's none, or google-auth's) is shared.egress.google_rest's choice.
            return CloudKmsCipher(self.settings.kms_key_name, api_endpoint=self.settings.kms_api_endpoint)
        from shared.crypto.local_keyring import LocalKeyring

        with _local_state(self.settings):
            return LocalKeyring.open(self.settings.data_dir / "keyring.json")

    @cached_property
    def service_secrets(self) -> SecretSource:
        """The service's own secrets (OAuth client ids and secrets): Secret Manager in GCP, env locally."""
        if self.settings.backend == "gcp":
            from shared.secret_sources.secret_manager import SecretManagerSource

            assert self.settings.gcp_project is not None
            return SecretManagerSource(
                self.settings.gcp_project, api_endpoint=self.settings.secret_manager_api_endpoint
            )
        from shared.secret_sources.env import EnvSecretSource

        return EnvSecretSource()

    @cached_property
    def api_key_pepper(self) -> bytes:
        """Secret mixed into API-key hashes, so a copy of the table alone cannot be brute-forced offline.

        In production Cloud Functions hands the Secret Manager secret to the
        instance as ``INTEGRATIONS_SECRET_API_KEY_PEPPER`` (Terraform's
        ``secret_environment_variables``), resolved before the instance starts:
        a cold start loads no Secret Manager client and makes no call. Without
        that variable, gcp mode reads Secret Manager itself (the loopback
        stand-in in tests, or a deploy made without Terraform).
        """
        from shared.secret_sources import env_var_name
        from shared.secret_sources.env import EnvSecretSource

        if os.environ.get(env_var_name(API_KEY_PEPPER_SECRET)):
            return EnvSecretSource().get(API_KEY_PEPPER_SECRET).encode()
        if self.settings.backend == "gcp":
            return self.service_secrets.get(API_KEY_PEPPER_SECRET).encode()
        with _local_state(self.settings):
            return _local_pepper(self.settings.data_dir / "api_key_pepper")


@contextmanager
def _local_state(settings: Settings) -> Iterator[None]:
    """A data dir the OS refuses (full, read-only, a file in the way) is a settings error: one line, not a traceback."""
    import sqlite3  # local mode only: a gcp instance never loads it

    try:
        yield
    except (OSError, sqlite3.Error) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ConfigurationError(f"INTEGRATIONS_DATA_DIR {str(settings.data_dir)!r} cannot be used: {reason}") from None


def _local_pepper(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_bytes().strip()


def build_service(settings: Settings | None = None) -> IntegrationService:
    from shared.domain.providers import default_registry
    from shared.usecases.integrations import IntegrationService

    settings = settings or Settings.from_env()
    return IntegrationService(Adapters(settings), default_registry())
