"""What a validator gets besides the credential, and what a live check mints for a pipeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from shared.common.config import Settings
    from shared.domain.providers import ProviderSpec
    from shared.domain.validation import ValidationResult


class ValidationContext(NamedTuple):  # a NamedTuple, not a frozen dataclass: see shared.domain.caller.Caller
    """What a validator knows besides the credential: the provider's base URL and the operator's settings.

    Every knob a check reads (timeouts, attempts, the token and API endpoints of
    Google, AWS and Azure, the billing export's age limit) is a field of
    ``Settings``, declared and defaulted there once; a validator reads it as
    ``context.settings.<field>``.
    """

    base_url: str
    settings: Settings

    @classmethod
    def of(cls, settings: Settings, spec: ProviderSpec) -> ValidationContext:
        """The context for ``spec``'s checks: its base URL (``PROVIDER_<ID>_BASE_URL`` or the registry's)."""
        return cls(settings.provider_base_urls.get(spec.provider_id, spec.base_url), settings)


class MintedToken(NamedTuple):
    """An access token minted from a stored credential for a pipeline, and when it stops working."""

    access_token: str
    expires_at: datetime | None


# A code validator (``validation.kind: code`` in the registry): the provider, the secret, the
# integration's config and the context, to a verdict; it never raises for a provider's fault.
CodeValidator = Callable[["ProviderSpec", str, dict[str, Any], ValidationContext], "ValidationResult"]
