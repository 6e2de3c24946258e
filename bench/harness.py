"""What every bench shares: the org, keys and project they use, small printing and process helpers,
and the stand-ins (provider simulator, BigQuery emulator, KMS and Secret Manager fakes) with the
service's settings in local and gcp mode."""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.common.config import Settings
    from tests.conftest import GcpStack
    from tests.simulators.providers import ProviderSimulator

REPO = Path(__file__).resolve().parent.parent
API = "/api/v1/integrations"
ORG = "bench"
PROVIDER = "openai"
OPENAI_KEY = "sk-admin-BenchKeyAbcdefghijklmnop0123456789"  # admin: can read costs, so validate -> active
ANTHROPIC_KEY = "sk-ant-admin01-BenchKeyAbcdefghijklmnop0123456789"
OAUTH_PROVIDER = "canva"
# The OAuth client of OAUTH_PROVIDER (shared.oauth.client_secret_names): Secret Manager in gcp, env locally.
OAUTH_CLIENT = {"oauth-canva-client-id": "bench-client-id", "oauth-canva-client-secret": "bench-client-secret"}
PROJECT = "integrations-bench"
KMS_KEY = f"projects/{PROJECT}/locations/us/keyRings/integrations/cryptoKeys/credentials"
# The projection's per-job latency: `SELECT 1` through jobs.query (google-cloud-bigquery's query_and_wait),
# 394 ms +- 38 ms over 10 x 10 runs, against 1.08 s through jobs.insert and polling, as measured and
# published by a BigQuery client maintainer. A trivial query: the store's jobs are small but not that
# small, and scripts (transactions) take longer, so the projection is a floor for BigQuery's share.
BIGQUERY_SECONDS_PER_JOB = 0.394
BIGQUERY_LATENCY_SOURCE = "https://github.com/googleapis/python-bigquery-pandas/pull/722"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def base_env() -> dict[str, str]:
    """A clean environment for child interpreters: nothing of this shell's settings leaks in."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def spawn(args: list[str], env: dict[str, str], timeout: float = 120.0) -> tuple[str, float]:
    """Run ``python *args`` from the repository root; its stdout and the process's wall seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"python {' '.join(args[:2])}... failed:\n{result.stderr[-3000:]}")
    return result.stdout, wall


def projected(jobs: int | None) -> float | None:
    """Seconds BigQuery round trips would add: ``jobs`` x the published per-job latency."""
    return None if jobs is None else round(jobs * BIGQUERY_SECONDS_PER_JOB, 3)


# --- the stand-ins and the service ---------------------------------------------------------------


@contextmanager
def running_stack() -> Iterator[tuple[ProviderSimulator, GcpStack]]:
    """Provider simulator, BigQuery emulator, KMS and Secret Manager fakes on loopback."""
    from shared.common.config import API_KEY_PEPPER_SECRET
    from tests.conftest import GcpStack
    from tests.emulators.bigquery_emulator import start_bigquery_emulator
    from tests.fakes.kms_server import FakeKmsServer
    from tests.fakes.secret_manager_server import FakeSecretManagerServer
    from tests.simulators.providers import ProviderSimulator

    with ExitStack() as stack:
        simulator = stack.enter_context(ProviderSimulator())
        bigquery = start_bigquery_emulator(PROJECT)
        stack.callback(bigquery.stop)
        kms = stack.enter_context(FakeKmsServer())
        kms.create_key(KMS_KEY)
        secret_manager = stack.enter_context(FakeSecretManagerServer())
        secret_manager.put_secret(PROJECT, API_KEY_PEPPER_SECRET, "bench-pepper-" + uuid.uuid4().hex)
        for name, value in OAUTH_CLIENT.items():
            secret_manager.put_secret(PROJECT, name, value)
        yield simulator, GcpStack(bigquery, kms, secret_manager, KMS_KEY)


def mode_settings(mode: str, simulator: ProviderSimulator, gcp: GcpStack | None, data_dir: Path) -> Settings:
    """Local settings on ``data_dir``, or gcp settings on a fresh bootstrapped dataset (``gcp`` needed then only)."""
    from shared.common.config import Settings

    local = Settings(
        backend="local",
        data_dir=data_dir,
        provider_base_urls={p: simulator.base_url(p) for p in ("openai", "anthropic", "gemini")},
    )
    if mode == "local":
        return local
    assert gcp is not None, "gcp mode needs the GCP stand-ins"
    return gcp.settings(local)


def mode_env(mode: str, settings: Settings, gcp: GcpStack) -> dict[str, str]:
    """The same settings as environment variables, for a fresh process."""
    env = {**base_env(), "INTEGRATIONS_BACKEND": mode, "INTEGRATIONS_DATA_DIR": str(settings.data_dir)}
    env |= {f"PROVIDER_{p.upper()}_BASE_URL": url for p, url in settings.provider_base_urls.items()}
    return {**env, **gcp.env(settings)} if mode == "gcp" else env


@contextmanager
def wsgi_client(settings: Settings) -> Iterator[tuple[Any, Any, str]]:
    """(test client over the local server's app, the service behind it, an API key of ORG)."""
    from shared.app.wiring import build_service
    from shared.commands.local_server import create_app
    from shared.inbound import http

    service = build_service(settings)
    http.use_service(service)
    try:
        app = create_app()  # imports main, which sends the service's INFO logs to stdout
        logging.getLogger("integrations").setLevel(logging.WARNING)
        yield app.test_client(), service, service.create_api_key(ORG)[1]
    finally:
        http.use_service(None)


def expect(response: Any, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise RuntimeError(f"{response.request.method} {response.request.path}: {response.status_code} {response.text}")
    return response
