"""OAuth with the providers: the service's client, the token set an OAuth credential
stores, the provider's endpoints and PKCE; ``token_endpoint`` sends the token
requests (code and refresh grants), one attempt each.

The use cases built on them are ``shared.usecases.oauth_flow`` (start, callback
and the org's completion: the authorization-code flow with PKCE) and
``shared.usecases.oauth_refresh`` (a refresh that never races, decided by a
conditional write on the credential's version).

The stored secret of an OAuth credential is the JSON of ``TokenSet``; its
``expires_at`` column is the access token's expiry. The client id and secret
come from the service's secret source (Secret Manager in GCP, environment
locally), never from the registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.domain.errors import ConfigurationError, OAuthNotConfigured

if TYPE_CHECKING:
    from shared.common.config import Settings
    from shared.domain.providers import OAuthSpec, ProviderSpec
    from shared.secret_sources import SecretSource

CALLBACK_PATH = "/api/v1/oauth/callback"


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str


@dataclass
class TokenSet:
    """What an OAuth credential stores (encrypted): never logged, never answered."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    token_type: str = "Bearer"
    scope: str | None = None
    refresh_token_expires_at: datetime | None = None

    def to_secret(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": _iso(self.expires_at),
                "token_type": self.token_type,
                "scope": self.scope,
                "refresh_token_expires_at": _iso(self.refresh_token_expires_at),
            },
            sort_keys=True,
        )

    @classmethod
    def from_secret(cls, secret: str) -> TokenSet:
        document: dict[str, Any] = json.loads(secret)
        return cls(
            access_token=document["access_token"],
            refresh_token=document.get("refresh_token"),
            expires_at=_parse(document.get("expires_at")),
            token_type=document.get("token_type") or "Bearer",
            scope=document.get("scope"),
            refresh_token_expires_at=_parse(document.get("refresh_token_expires_at")),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def oauth_spec(spec: ProviderSpec) -> OAuthSpec:
    if spec.oauth is None:
        raise ConfigurationError(f"{spec.provider_id} is not an OAuth provider")
    return spec.oauth


def client_secret_names(provider_id: str) -> tuple[str, str]:
    """Secret ids of a provider's client id and secret (``INTEGRATIONS_SECRET_OAUTH_<ID>_CLIENT_ID`` locally)."""
    return f"oauth-{provider_id}-client-id", f"oauth-{provider_id}-client-secret"


def client_for(secrets: SecretSource, spec: ProviderSpec) -> OAuthClient:
    """The service's client id and secret for ``spec``, from the service's own secrets."""
    id_name, secret_name = client_secret_names(spec.provider_id)
    try:
        return OAuthClient(secrets.get(id_name), secrets.get(secret_name))
    except ConfigurationError:
        raise OAuthNotConfigured(
            f"OAuth is not configured for {spec.display_name} on this deployment: its client id and secret"
            f" ({id_name}, {secret_name}) are not set"
        ) from None


def authorize_url(settings: Settings, spec: ProviderSpec) -> str:
    return settings.oauth_endpoint_urls.get(f"{spec.provider_id}.authorize", oauth_spec(spec).authorize_url)


def token_url(settings: Settings, spec: ProviderSpec) -> str:
    return settings.oauth_endpoint_urls.get(f"{spec.provider_id}.token", oauth_spec(spec).token_url)


def state_hash(state: str) -> str:
    """Only this is stored: a copy of the table cannot complete anyone's flow."""
    return hashlib.sha256(state.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
