"""What the service needs from the outside world, as one small port.

``shared.app.wiring.Adapters`` is the implementation (it builds each adapter on
first use); tests may pass anything with these members. Keeping the port here
lets the service depend on it without importing the composition root above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shared.common.config import Settings
    from shared.crypto import CredentialCipher
    from shared.domain.providers import ProviderSpec
    from shared.secret_sources import SecretSource
    from shared.store import IntegrationStore
    from shared.validators import ValidationContext


class ServicePorts(Protocol):
    # An attribute, not a read-only property: tests (and benches) swap a running service's settings.
    settings: Settings

    @property
    def store(self) -> IntegrationStore: ...

    @property
    def cipher(self) -> CredentialCipher: ...

    @property
    def api_key_pepper(self) -> bytes: ...

    @property
    def service_secrets(self) -> SecretSource: ...

    def validation_context(self, spec: ProviderSpec) -> ValidationContext: ...
