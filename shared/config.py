"""Settings from the environment (read once) and the adapter factory.

Every setting has one environment variable; the README's table lists them.
``build_service`` picks the adapters for ``INTEGRATIONS_BACKEND`` and imports
Google client libraries only in ``gcp`` mode, and the KMS client only when an
operation first needs to encrypt or decrypt.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ConfigurationError
from shared.providers import ProviderSpec
from shared.validators import METADATA_IDENTITY_URL, ValidationContext

if TYPE_CHECKING:
    from shared.crypto import CredentialCipher
    from shared.service import IntegrationService
    from shared.store import IntegrationStore

API_KEY_PEPPER_SECRET = "api-key-pepper"


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative, got {raw!r}")
    return value


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = environ.get(name) or allowed[0]
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _days(environ: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        days = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True))
    except ValueError:
        raise ConfigurationError(f"{name} must be comma-separated whole days such as 30,7,1, got {raw!r}") from None
    if not days or min(days) < 1:
        raise ConfigurationError(f"{name} must list positive days, got {raw!r}")
    return days


def _platform_role_arn(environ: Mapping[str, str]) -> str | None:
    value = environ.get("AWS_PLATFORM_ROLE_ARN") or None
    if value is not None and not re.fullmatch(
        r"arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/[\x21-\x7e]{1,576}", value
    ):
        raise ConfigurationError(f"AWS_PLATFORM_ROLE_ARN must be an IAM role ARN, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    data_dir: Path = Path(".data")
    # GCP mode
    gcp_project: str | None = None
    bigquery_dataset: str = "organizations"
    bigquery_location: str = "US"
    kms_key_name: str | None = None
    # Loopback endpoints for emulators/stand-ins; unset in production.
    bigquery_api_endpoint: str | None = None
    kms_api_endpoint: str | None = None
    secret_manager_api_endpoint: str | None = None
    # HTTP
    max_body_bytes: int = 64 * 1024
    auth_cache_seconds: float = 60.0
    # Provider calls
    provider_base_urls: dict[str, str] = field(default_factory=dict)
    request_timeout_seconds: float = 5.0
    validation_deadline_seconds: float = 10.0
    validation_max_attempts: int = 3
    retry_after_cap_seconds: float = 5.0
    allowed_token_hosts: tuple[str, ...] = ("oauth2.googleapis.com", "accounts.google.com")
    billing_export_max_age_hours: float = 72.0
    gcp_iam_base_url: str = "https://iam.googleapis.com"
    # AWS: no static key anywhere. The function's Google ID token (for this
    # audience) is exchanged for the platform role, which assumes customers' roles.
    aws_platform_role_arn: str | None = None
    aws_web_identity_audience: str = "provider-integrations-aws"
    aws_id_token_url: str = METADATA_IDENTITY_URL
    # Revalidation (Cloud Scheduler -> integration_revalidate)
    revalidate_auth: str = "admin_key"  # or "platform": Cloud Run verified the scheduler's OIDC token
    revalidation_concurrency: int = 16
    revalidation_per_provider: int = 8
    revalidation_failures_before_error: int = 3
    revalidation_max_seconds: float = 240.0
    revalidation_min_interval_seconds: float = 3600.0
    revalidation_batch_limit: int = 5000
    expiry_alert_days: tuple[int, ...] = (30, 7, 1)
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 3
    webhook_insecure_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        backend = environ.get("INTEGRATIONS_BACKEND", "local")
        if backend not in ("local", "gcp"):
            raise ConfigurationError(f"INTEGRATIONS_BACKEND must be 'local' or 'gcp', got {backend!r}")
        extra_hosts = tuple(h.strip() for h in environ.get("GCP_ALLOWED_TOKEN_HOSTS", "").split(",") if h.strip())
        base_urls = {
            key[len("PROVIDER_") : -len("_BASE_URL")].lower(): value.rstrip("/")
            for key, value in environ.items()
            if key.startswith("PROVIDER_") and key.endswith("_BASE_URL") and value
        }
        settings = cls(
            backend=backend,
            data_dir=Path(environ.get("INTEGRATIONS_DATA_DIR", ".data")),
            gcp_project=environ.get("GCP_PROJECT") or environ.get("GOOGLE_CLOUD_PROJECT"),
            bigquery_dataset=environ.get("BIGQUERY_DATASET", "organizations"),
            bigquery_location=environ.get("BIGQUERY_LOCATION", "US"),
            kms_key_name=environ.get("KMS_KEY_NAME"),
            bigquery_api_endpoint=environ.get("BIGQUERY_API_ENDPOINT"),
            kms_api_endpoint=environ.get("KMS_API_ENDPOINT"),
            secret_manager_api_endpoint=environ.get("SECRET_MANAGER_API_ENDPOINT"),
            max_body_bytes=int(_float(environ, "MAX_BODY_BYTES", 64 * 1024)),
            auth_cache_seconds=_float(environ, "AUTH_CACHE_SECONDS", 60.0),
            provider_base_urls=base_urls,
            request_timeout_seconds=_float(environ, "VALIDATION_REQUEST_TIMEOUT_SECONDS", 5.0),
            validation_deadline_seconds=_float(environ, "VALIDATION_DEADLINE_SECONDS", 10.0),
            validation_max_attempts=max(1, int(_float(environ, "VALIDATION_MAX_ATTEMPTS", 3))),
            retry_after_cap_seconds=_float(environ, "VALIDATION_RETRY_AFTER_CAP_SECONDS", 5.0),
            allowed_token_hosts=("oauth2.googleapis.com", "accounts.google.com", *extra_hosts),
            billing_export_max_age_hours=_float(environ, "BILLING_EXPORT_MAX_AGE_HOURS", 72.0),
            gcp_iam_base_url=(environ.get("GCP_IAM_BASE_URL") or "https://iam.googleapis.com").rstrip("/"),
            aws_platform_role_arn=_platform_role_arn(environ),
            aws_web_identity_audience=environ.get("AWS_WEB_IDENTITY_AUDIENCE") or "provider-integrations-aws",
            aws_id_token_url=environ.get("AWS_ID_TOKEN_URL") or METADATA_IDENTITY_URL,
            revalidate_auth=_choice(environ, "REVALIDATE_AUTH", ("admin_key", "platform")),
            revalidation_concurrency=max(1, int(_float(environ, "REVALIDATION_CONCURRENCY", 16))),
            revalidation_per_provider=max(1, int(_float(environ, "REVALIDATION_PER_PROVIDER", 8))),
            revalidation_failures_before_error=max(1, int(_float(environ, "REVALIDATION_FAILURES_BEFORE_ERROR", 3))),
            revalidation_max_seconds=_float(environ, "REVALIDATION_MAX_SECONDS", 240.0),
            revalidation_min_interval_seconds=60 * _float(environ, "REVALIDATION_MIN_INTERVAL_MINUTES", 60.0),
            revalidation_batch_limit=max(1, int(_float(environ, "REVALIDATION_BATCH_LIMIT", 5000))),
            expiry_alert_days=_days(environ, "EXPIRY_ALERT_DAYS", (30, 7, 1)),
            webhook_timeout_seconds=_float(environ, "WEBHOOK_TIMEOUT_SECONDS", 5.0),
            webhook_max_attempts=max(1, int(_float(environ, "WEBHOOK_MAX_ATTEMPTS", 3))),
            webhook_insecure_hosts=tuple(
                h.strip() for h in environ.get("WEBHOOK_INSECURE_HOSTS", "").split(",") if h.strip()
            ),
        )
        if backend == "gcp" and not (settings.gcp_project and settings.kms_key_name):
            raise ConfigurationError("INTEGRATIONS_BACKEND=gcp needs GCP_PROJECT and KMS_KEY_NAME")
        return settings

    def validation_context(self, spec: ProviderSpec) -> ValidationContext:
        return ValidationContext(
            base_url=self.provider_base_urls.get(spec.provider_id, spec.base_url),
            request_timeout_seconds=self.request_timeout_seconds,
            deadline_seconds=self.validation_deadline_seconds,
            max_attempts=self.validation_max_attempts,
            retry_after_cap_seconds=self.retry_after_cap_seconds,
            allowed_token_hosts=self.allowed_token_hosts,
            billing_export_max_age_hours=self.billing_export_max_age_hours,
            gcp_iam_base_url=self.gcp_iam_base_url,
            aws_platform_role_arn=self.aws_platform_role_arn,
            aws_web_identity_audience=self.aws_web_identity_audience,
            aws_id_token_url=self.aws_id_token_url,
        )


class Adapters:
    """Builds each adapter on first use and keeps it for the instance's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> IntegrationStore:
        if self.settings.backend == "gcp":
            from shared.store.bigquery_store import BigQueryStore

            return BigQueryStore.from_settings(self.settings)
        from shared.store.sqlite_store import SqliteStore

        return SqliteStore(self.settings.data_dir / "integrations.sqlite3")

    @cached_property
    def cipher(self) -> CredentialCipher:
        if self.settings.backend == "gcp":
            from shared.crypto.cloud_kms import CloudKmsCipher

            assert self.settings.kms_key_name is not None
            endpoint = self.settings.kms_api_endpoint
            return CloudKmsCipher(
                self.settings.kms_key_name, api_endpoint=endpoint, credentials=_stand_in_credentials(endpoint)
            )
        from shared.crypto.local_keyring import LocalKeyring

        return LocalKeyring.open(self.settings.data_dir / "keyring.json")

    @cached_property
    def api_key_pepper(self) -> bytes:
        """Secret mixed into API-key hashes, so a copy of the table alone cannot be brute-forced offline."""
        if self.settings.backend == "gcp":
            from shared.service_secrets import SecretManagerSource

            assert self.settings.gcp_project is not None
            endpoint = self.settings.secret_manager_api_endpoint
            source = SecretManagerSource(
                self.settings.gcp_project, api_endpoint=endpoint, credentials=_stand_in_credentials(endpoint)
            )
            return source.get(API_KEY_PEPPER_SECRET).encode()
        from shared.service_secrets import EnvSecretSource, env_var_name

        if os.environ.get(env_var_name(API_KEY_PEPPER_SECRET)):
            return EnvSecretSource().get(API_KEY_PEPPER_SECRET).encode()
        return _local_pepper(self.settings.data_dir / "api_key_pepper")


def _stand_in_credentials(endpoint: str | None) -> object | None:
    """Anonymous credentials for a loopback stand-in; None = Google's default credentials."""
    if not endpoint:
        return None
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


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
    from shared.providers import default_registry
    from shared.service import IntegrationService

    settings = settings or Settings.from_env()
    return IntegrationService(Adapters(settings), default_registry())
