"""Settings from the environment, read once.

Every setting has one environment variable; docs/configuration.md lists them.
This module is a leaf: it imports nothing from the service, the stores or the
adapters (``shared.app.wiring`` builds those from these settings), so anything
may read settings without pulling the rest of the package in.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.domain.errors import ConfigurationError

API_KEY_PEPPER_SECRET = "api-key-pepper"
# Where a Cloud Function gets a Google-signed ID token for its service account.
METADATA_IDENTITY_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):  # float() reads "nan", "inf" and 1e400: no deadline or count can be one
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
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


def _port(environ: Mapping[str, str]) -> int:
    """PORT: the local server's port, a whole number from 1 to 65535 (default 8001)."""
    raw = environ.get("PORT") or "8001"
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535):
        raise ConfigurationError(f"PORT must be a whole number from 1 to 65535, got {raw[:40]!r}")
    return int(raw)


def check_data_dir(path: Path) -> None:
    """Refuse an INTEGRATIONS_DATA_DIR that cannot hold the local state, before anything is written.

    It must be a writable directory, or not exist yet under a writable
    directory (it is created on first use). Only looks; creates nothing.
    """
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "is not a directory" if existing == path else f"cannot be created: {existing} is not a directory"
        raise ConfigurationError(f"INTEGRATIONS_DATA_DIR {str(path)!r} {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
        raise ConfigurationError(f"INTEGRATIONS_DATA_DIR {str(path)!r} {what}")


def _platform_role_arn(environ: Mapping[str, str]) -> str | None:
    value = environ.get("AWS_PLATFORM_ROLE_ARN") or None
    if value is not None and not re.fullmatch(
        r"arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/[\x21-\x7e]{1,576}", value
    ):
        raise ConfigurationError(f"AWS_PLATFORM_ROLE_ARN must be an IAM role ARN, got {value!r}")
    return value


SERVICE_ACCOUNT_EMAIL = re.compile(r"[a-z][a-z0-9\-]{4,28}[a-z0-9]@[a-z0-9\-.]+\.iam\.gserviceaccount\.com")


def _service_account_email(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name) or None
    if value is not None and not SERVICE_ACCOUNT_EMAIL.fullmatch(value):
        raise ConfigurationError(f"{name} must be a service account email (name@project.iam.gserviceaccount.com)")
    return value


def _whole_in_range(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _float(environ, name, default)
    if value != int(value) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _authority_host(environ: Mapping[str, str]) -> str:
    """AZURE_AUTHORITY_HOST: https and no path, as msal requires (it appends the tenant)."""
    from urllib.parse import urlsplit

    value = (environ.get("AZURE_AUTHORITY_HOST") or "https://login.microsoftonline.com").rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path or parts.query:
        raise ConfigurationError(f"AZURE_AUTHORITY_HOST must be https://host[:port] with no path, got {value!r}")
    return value


# eq=False: settings are never compared, and their dict fields make them unhashable by value
# anyway; that leaves two of the methods a 48-field dataclass compiles at every cold start.
@dataclass(frozen=True, eq=False)
class Settings:
    """Everything the service reads from its environment (``Settings.from_env``), immutable once built."""

    backend: str = "local"
    data_dir: Path = Path(".data")
    # The local server's address (make run, make demo); Cloud Functions picks its own.
    host: str = "127.0.0.1"
    port: int = 8001
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
    # Service-account tokens come from here whatever the uploaded key's token_uri says
    # (GCP_TOKEN_URI points it at a loopback stand-in in tests only).
    gcp_token_uri: str = "https://oauth2.googleapis.com/token"
    # Origins a browser frontend may call the API from (CORS); empty = no CORS headers.
    cors_allowed_origins: tuple[str, ...] = ()
    # Azure: Entra ID authority host (https://host[:port], no path: msal appends the tenant),
    # Microsoft Graph, and a CA bundle for the Azure calls (the simulator's own CA).
    azure_authority_host: str = "https://login.microsoftonline.com"
    azure_graph_base_url: str = "https://graph.microsoft.com"
    azure_ca_bundle: str | None = None
    # Revalidation (Cloud Scheduler -> integration_revalidate)
    revalidate_auth: str = "admin_key"  # or "platform": Cloud Run verified the scheduler's OIDC token
    # Credential access (the pipelines' route): in platform mode, the only service account whose
    # OIDC token it accepts (Cloud Run's invoker binding is the first check, this the second).
    pipelines_service_account: str | None = None
    # Lifetime of the AWS STS session a pipeline gets: 900 (AWS's minimum) to 3600 (role chaining's maximum).
    access_aws_session_seconds: int = 900
    revalidation_concurrency: int = 16
    revalidation_per_provider: int = 8
    revalidation_failures_before_error: int = 3
    revalidation_max_seconds: float = 240.0
    revalidation_min_interval_seconds: float = 3600.0
    # A run works in pages (one read, one write each) until REVALIDATION_MAX_SECONDS; the batch
    # limit optionally caps the integrations one run reads (0: no cap, the time box decides).
    revalidation_page_size: int = 500
    revalidation_batch_limit: int = 0
    expiry_alert_days: tuple[int, ...] = (30, 7, 1)
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 3
    webhook_insecure_hosts: tuple[str, ...] = ()
    # OAuth connections
    oauth_redirect_uri: str | None = None  # the public URL of GET /api/v1/oauth/callback
    oauth_frontend_url: str | None = None  # where the callback sends the browser with the outcome
    oauth_state_ttl_seconds: float = 600.0
    oauth_refresh_window_seconds: float = 600.0
    oauth_refresh_lease_seconds: float = 30.0
    # PROVIDER_<ID>_AUTHORIZE_URL / PROVIDER_<ID>_TOKEN_URL: {"<id>.authorize": url, "<id>.token": url}
    oauth_endpoint_urls: dict[str, str] = field(default_factory=dict)
    # Fleet operations: bulk import (its body holds up to 100 credentials) and re-encryption.
    import_max_body_bytes: int = 2 * 1024 * 1024
    rewrap_batch_size: int = 500
    rewrap_concurrency: int = 16
    rewrap_max_seconds: float = 240.0

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
        oauth_urls = {
            f"{key[len('PROVIDER_') : -len(suffix)].lower()}.{kind}": value
            for key, value in environ.items()
            for suffix, kind in (("_AUTHORIZE_URL", "authorize"), ("_TOKEN_URL", "token"))
            if key.startswith("PROVIDER_") and key.endswith(suffix) and value
        }
        port = _port(environ)
        redirect_uri = environ.get("OAUTH_REDIRECT_URI") or None
        if redirect_uri is None and backend == "local":
            # make run serves the callback itself; in GCP it is the gateway's URL, which only the operator knows.
            redirect_uri = f"http://127.0.0.1:{port}/api/v1/oauth/callback"
        frontend_url = environ.get("OAUTH_FRONTEND_URL") or None
        for name, url in (("OAUTH_REDIRECT_URI", redirect_uri), ("OAUTH_FRONTEND_URL", frontend_url)):
            if url is not None and not url.startswith(("https://", "http://")):
                raise ConfigurationError(f"{name} must be an absolute http(s) URL, got {url!r}")
        settings = cls(
            backend=backend,
            data_dir=Path(environ.get("INTEGRATIONS_DATA_DIR") or ".data"),
            host=environ.get("HOST") or "127.0.0.1",
            port=port,
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
            gcp_token_uri=environ.get("GCP_TOKEN_URI") or "https://oauth2.googleapis.com/token",
            cors_allowed_origins=tuple(
                o.strip().rstrip("/") for o in environ.get("CORS_ALLOWED_ORIGINS", "").split(",") if o.strip()
            ),
            azure_authority_host=_authority_host(environ),
            azure_graph_base_url=(environ.get("AZURE_GRAPH_BASE_URL") or "https://graph.microsoft.com").rstrip("/"),
            azure_ca_bundle=environ.get("AZURE_CA_BUNDLE") or None,
            revalidate_auth=_choice(environ, "REVALIDATE_AUTH", ("admin_key", "platform")),
            pipelines_service_account=_service_account_email(environ, "PIPELINES_SERVICE_ACCOUNT"),
            access_aws_session_seconds=_whole_in_range(environ, "ACCESS_AWS_SESSION_SECONDS", 900, 900, 3600),
            revalidation_concurrency=max(1, int(_float(environ, "REVALIDATION_CONCURRENCY", 16))),
            revalidation_per_provider=max(1, int(_float(environ, "REVALIDATION_PER_PROVIDER", 8))),
            revalidation_failures_before_error=max(1, int(_float(environ, "REVALIDATION_FAILURES_BEFORE_ERROR", 3))),
            revalidation_max_seconds=_float(environ, "REVALIDATION_MAX_SECONDS", 240.0),
            revalidation_min_interval_seconds=60 * _float(environ, "REVALIDATION_MIN_INTERVAL_MINUTES", 60.0),
            revalidation_page_size=_whole_in_range(environ, "REVALIDATION_PAGE_SIZE", 500, 1, 5000),
            revalidation_batch_limit=max(0, int(_float(environ, "REVALIDATION_BATCH_LIMIT", 0))),
            expiry_alert_days=_days(environ, "EXPIRY_ALERT_DAYS", (30, 7, 1)),
            webhook_timeout_seconds=_float(environ, "WEBHOOK_TIMEOUT_SECONDS", 5.0),
            webhook_max_attempts=max(1, int(_float(environ, "WEBHOOK_MAX_ATTEMPTS", 3))),
            webhook_insecure_hosts=tuple(
                h.strip() for h in environ.get("WEBHOOK_INSECURE_HOSTS", "").split(",") if h.strip()
            ),
            oauth_redirect_uri=redirect_uri,
            oauth_frontend_url=frontend_url,
            oauth_state_ttl_seconds=60 * _float(environ, "OAUTH_STATE_TTL_MINUTES", 10.0),
            oauth_refresh_window_seconds=60 * _float(environ, "OAUTH_REFRESH_WINDOW_MINUTES", 10.0),
            oauth_refresh_lease_seconds=max(1.0, _float(environ, "OAUTH_REFRESH_LEASE_SECONDS", 30.0)),
            oauth_endpoint_urls=oauth_urls,
            import_max_body_bytes=int(_float(environ, "IMPORT_MAX_BODY_BYTES", 2 * 1024 * 1024)),
            rewrap_batch_size=max(1, int(_float(environ, "REWRAP_BATCH_SIZE", 500))),
            rewrap_concurrency=max(1, int(_float(environ, "REWRAP_CONCURRENCY", 16))),
            rewrap_max_seconds=_float(environ, "REWRAP_MAX_SECONDS", 240.0),
        )
        if backend == "gcp" and not (settings.gcp_project and settings.kms_key_name):
            raise ConfigurationError("INTEGRATIONS_BACKEND=gcp needs GCP_PROJECT and KMS_KEY_NAME")
        if backend == "local":
            check_data_dir(settings.data_dir)
        return settings
