"""The service's one exception hierarchy.

Every error a caller can see is a ``ServiceError``: it carries the HTTP status
and the user-facing message, and ``shared.inbound.http`` turns it into the JSON error
body in one place. Messages never contain a secret; callers that wrap provider
or client errors pass only redacted text.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error the HTTP layer maps to a response."""

    status_code = 500
    code = "internal_error"
    # Detail keys a caller reads so often that the answer also carries them at its top level.
    top_level_details: tuple[str, ...] = ()

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


# --- 4xx: the caller can fix these -------------------------------------------


class BadRequest(ServiceError):
    """The request is malformed: bad JSON, a missing or wrong-typed field."""

    status_code = 400
    code = "bad_request"


class InvalidCredentialFormat(BadRequest):
    """The credential does not have the provider's key format."""

    code = "invalid_credential_format"


class ProviderNotConnectable(BadRequest):
    """A toggle-only SaaS tool: there is no credential to set up, only its subscription toggle."""

    code = "provider_not_connectable"


class DuplicateInImport(BadRequest):
    """A bulk import names the same provider twice (an org has one integration per provider)."""

    code = "duplicate_in_import"


class UnknownProvider(ServiceError):
    status_code = 404
    code = "unknown_provider"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class MethodNotAllowed(ServiceError):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.allow = allow  # the methods the path takes: the response's Allow header


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Unauthenticated(ServiceError):
    """No API key, or a key that matches no active key."""

    status_code = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    """A valid key used on an organization it does not belong to."""

    status_code = 403
    code = "forbidden"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class IntegrationAlreadyExists(Conflict):
    code = "integration_exists"


class IntegrationDisabled(Conflict):
    code = "integration_disabled"


class IntegrationNotActive(Conflict):
    """A pipeline asked for the credential of an integration that is not ``active`` (nothing is handed out)."""

    code = "integration_not_active"
    # A pipeline reads why at once: {"status": "error", "error_message": ...} beside ``details``.
    top_level_details = ("status", "error_message")


class CredentialRejected(ServiceError):
    """A new credential (rotate) failed validation; the old one stays."""

    status_code = 422
    code = "credential_rejected"


class OAuthFlowRejected(BadRequest):
    """An OAuth callback that cannot complete: unknown, replayed or expired state,
    consent denied, or a code the provider refused. Nothing is stored."""

    code = "oauth_flow_rejected"


class ReauthorizationRequired(Conflict):
    """The provider refused the refresh token (invalid_grant): only a new consent helps."""

    code = "reauthorization_required"


# --- 5xx: our side or a dependency failed ------------------------------------


class ProviderUnavailable(ServiceError):
    """A new credential (rotate) could not be checked: rate limit, outage, network."""

    status_code = 503
    code = "provider_unavailable"


class OAuthNotConfigured(ServiceError):
    """The OAuth client (id, secret, redirect URI) of a provider is not set up on this deployment."""

    status_code = 503
    code = "oauth_not_configured"


class EncryptionFailed(ServiceError):
    """KMS or the local keyring failed; nothing was stored."""

    status_code = 503
    code = "encryption_failed"

    def __init__(self, message: str = "Credential encryption failed", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class KeyRotationFailed(EncryptionFailed):
    """A new key version could not be made primary durably; the previous primary stays primary.

    The message names the keyring (a file, or the Cloud KMS key) and says which
    version is still primary: a credential key is an operator's concern, and
    only admin callers reach rotation.
    """

    code = "key_rotation_failed"


class StoreUnavailable(ServiceError):
    """The store failed after retries; nothing was changed."""

    status_code = 503
    code = "store_unavailable"

    def __init__(self, message: str = "Integration store is unavailable, try again", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class ConfigurationError(Exception):
    """The service itself is misconfigured (bad env, bad registry file).

    Raised at start-up, never mapped to a client response.
    """
