"""Local stand-ins for the provider APIs (see ``providers`` for the marker table)."""

from tests.simulators.providers import (
    PROVIDER_IDS,
    ProviderSimulator,
    SimulatorApp,
    SimulatorState,
    create_app,
    decode_jwt_claims,
    mask_openai_key,
)

__all__ = [
    "PROVIDER_IDS",
    "ProviderSimulator",
    "SimulatorApp",
    "SimulatorState",
    "create_app",
    "decode_jwt_claims",
    "mask_openai_key",
]
