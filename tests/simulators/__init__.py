"""Local stand-ins for the provider APIs (see ``providers`` for the marker table)."""

from tests.simulators.provider_apis.common import PROVIDER_IDS, SimulatorState
from tests.simulators.provider_apis.google_token import decode_jwt_claims
from tests.simulators.provider_apis.openai import mask_openai_key
from tests.simulators.providers import ProviderSimulator, SimulatorApp, create_app

__all__ = [
    "PROVIDER_IDS",
    "ProviderSimulator",
    "SimulatorApp",
    "SimulatorState",
    "create_app",
    "decode_jwt_claims",
    "mask_openai_key",
]
