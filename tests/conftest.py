"""Shared fixtures: settings on a temp data dir, the provider simulator, the
service built from real adapters, and a WSGI client over the local server app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from shared.app.wiring import Adapters
from shared.common.config import Settings
from shared.domain.providers import default_registry
from shared.inbound import http
from shared.usecases.api_keys import SIGNED_API_KEY_SHAPE
from shared.usecases.integrations import IntegrationService
from tests.emulators.bigquery_emulator import EmulatorProcess
from tests.fakes.kms_server import FakeKmsServer
from tests.fakes.secret_manager_server import FakeSecretManagerServer
from tests.simulators.oauth import OAuthSimulator
from tests.simulators.providers import ProviderSimulator
from tests.simulators.saas import SaasSimulator

# Keys the simulator treats as valid; shaped like the real ones. The default
# OpenAI/Anthropic keys are admin keys: only those can read costs, which is
# what the cost pipelines need (project/standard keys validate to "error").
OPENAI_KEY = "sk-admin-TestKeyAbcdefghijklmnop0123456789"
OPENAI_PROJECT_KEY = "sk-proj-TestKeyAbcdefghijklmnop0123456789"
ANTHROPIC_KEY = "sk-ant-admin01-TestKeyAbcdefghijklmnop0123456789"
ANTHROPIC_STANDARD_KEY = "sk-ant-api03-TestKeyAbcdefghijklmnop0123456789"
GEMINI_KEY = "AIzaSyTestKey0123456789abcdefghijklmnop"


def key_parts(api_key: str) -> tuple[str, ...]:
    """A signed org API key's parts: (org, key id, role, signature)."""
    match = SIGNED_API_KEY_SHAPE.fullmatch(api_key)
    assert match is not None, "not a signed API key"
    return match.groups()


def key_with(marker: str, base: str = OPENAI_KEY) -> str:
    """A valid-looking key carrying a simulator scenario marker (bad, ratelimit, ...)."""
    if base.startswith("AIza"):
        key = f"AIza{marker}" + base[4 + len(marker) :]
        assert len(key) == len(base)
        return key
    return f"{base[: base.index('Test')]}{marker}-{base[base.index('Test') :]}"


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def simulator() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as running:
        yield running


@pytest.fixture(scope="session")
def oauth_sim() -> Iterator[OAuthSimulator]:
    """The OAuth provider simulator (tests/simulators/oauth.py): consent, token endpoint, one API call each."""
    with OAuthSimulator() as running:
        yield running


@pytest.fixture(scope="session")
def saas_simulator() -> Iterator[SaasSimulator]:
    """The SaaS admin APIs (GitHub, Slack, Cursor, ...); it refuses and records any call that is not a free read."""
    with SaasSimulator() as running:
        yield running


@dataclass
class GcpStack:
    """The Google Cloud stand-ins on loopback: BigQuery emulator, KMS and Secret Manager fakes."""

    bigquery: EmulatorProcess
    kms: FakeKmsServer
    secret_manager: FakeSecretManagerServer
    key_name: str

    def settings(self, base: Settings) -> Settings:
        """``base`` switched to gcp mode on a fresh dataset (created like ``shared.cli bootstrap`` does)."""
        from shared.store.bigquery import BigQueryStore

        dataset = f"organizations_{uuid.uuid4().hex[:10]}"
        BigQueryStore(self.bigquery.jobs(), dataset).bootstrap()
        return replace(
            base,
            backend="gcp",
            gcp_project=self.bigquery.project,
            bigquery_dataset=dataset,
            bigquery_api_endpoint=self.bigquery.endpoint,
            kms_key_name=self.key_name,
            kms_api_endpoint=self.kms.endpoint,
            secret_manager_api_endpoint=self.secret_manager.endpoint,
        )

    def env(self, settings: Settings) -> dict[str, str]:
        """The same settings as environment variables, for a server process."""
        return {
            "INTEGRATIONS_BACKEND": "gcp",
            "GCP_PROJECT": str(settings.gcp_project),
            "BIGQUERY_DATASET": settings.bigquery_dataset,
            "BIGQUERY_API_ENDPOINT": str(settings.bigquery_api_endpoint),
            "KMS_KEY_NAME": str(settings.kms_key_name),
            "KMS_API_ENDPOINT": str(settings.kms_api_endpoint),
            "SECRET_MANAGER_API_ENDPOINT": str(settings.secret_manager_api_endpoint),
        }


@pytest.fixture(scope="session")
def gcp_stack() -> Iterator[GcpStack]:
    from tests.emulators.bigquery_emulator import start_bigquery_emulator

    project = "integrations-test"
    bigquery = start_bigquery_emulator(project)
    kms = FakeKmsServer().start()
    secret_manager = FakeSecretManagerServer().start()
    key_name = f"projects/{project}/locations/us/keyRings/integrations/cryptoKeys/credentials"
    kms.create_key(key_name)
    secret_manager.put_secret(project, "api-key-pepper", "test-pepper-" + uuid.uuid4().hex)
    try:
        yield GcpStack(bigquery, kms, secret_manager, key_name)
    finally:
        secret_manager.stop()
        kms.stop()
        bigquery.stop()


@pytest.fixture
def backend() -> str:
    """Overridden with params=["local", "gcp"] by modules that run on both."""
    return "local"


@pytest.fixture
def settings(tmp_path: Path, simulator: ProviderSimulator, backend: str, request: pytest.FixtureRequest) -> Settings:
    simulator.reset()
    simulator.configure(latency_ms=0, slow_seconds=3)
    local = Settings(
        backend="local",
        data_dir=tmp_path / "data",
        provider_base_urls={p: simulator.base_url(p) for p in ("openai", "anthropic", "gemini")},
        request_timeout_seconds=2.0,
        validation_deadline_seconds=4.0,
        retry_after_cap_seconds=0.2,
        gcp_token_uri=simulator.token_uri,
    )
    if backend == "local":
        return local
    return request.getfixturevalue("gcp_stack").settings(local)


def make_service(settings: Settings) -> IntegrationService:
    return IntegrationService(Adapters(settings), default_registry())


@pytest.fixture
def service(settings: Settings) -> IntegrationService:
    return make_service(settings)


@pytest.fixture
def client(service: IntegrationService) -> Iterator:
    from shared.commands.local_server import create_app

    http.use_service(service)
    try:
        yield create_app().test_client()
    finally:
        http.use_service(None)


@pytest.fixture
def org_key(service: IntegrationService) -> str:
    return service.create_api_key("acme")[1]


@pytest.fixture
def other_org_key(service: IntegrationService) -> str:
    return service.create_api_key("globex")[1]


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
