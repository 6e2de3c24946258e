"""Per-operation store/KMS cost and cold-start time of the integrations service.

A benchmark, not a test: it prints tables (and ``--json PATH`` writes them)
for a person to read; ``bench/README.md`` says how to read them. Run from the
repository root::

    .venv/bin/python -m bench.operations [--json bench-results.json]

1. Operations. setup, validate, list, get, update (disable), rotate and delete,
   each sent once through the real WSGI app (``shared.commands.local_server``) on a warm
   instance (auth cache filled) and on a cold one (a fresh service), in local
   mode (SQLite + keyring) and in gcp mode (BigQuery emulator, KMS and Secret
   Manager fakes, provider simulator, all started here). Store jobs and cipher
   calls come from the adapters' counters (exact) and are checked against the
   budget in docs/architecture.md, cold and warm; the BigQuery latency they
   would add is projected from a published per-job figure; wall time is a
   median over a few repetitions (noisy).
2. Import time, gcp mode. Each function module and ``main`` imported in fresh
   interpreters, median over N runs, as a ratio to a bare functions-framework
   hello world timed in the same run.
3. First request of every entry point. A fresh process loads ``main.py`` the
   way Cloud Functions does (``functions_framework.create_app``) and sends the
   entry point's request cold, then warm, in gcp mode (deploy dependencies
   only, pepper mounted as an env var) and local mode; the median ratio of the
   first response to the hello world's in the same round (``--json`` writes
   them as ``first_response_ratio``), and which Google modules loaded
   (list/get must not use KMS; no request may import ``google.cloud.kms``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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

# docs/architecture.md, "Budgets": (store jobs, KMS encrypts, KMS decrypts) for one call, cold or warm.
BUDGET: dict[str, tuple[int, int, int]] = {
    "setup": (1, 1, 0),
    "validate": (2, 0, 1),
    "list": (1, 0, 0),
    "get": (1, 0, 0),
    "update": (1, 0, 0),
    "rotate": (2, 1, 0),
    "delete": (1, 0, 0),
    # SaaS subscriptions: one job each, no KMS.
    "subscriptions_list": (1, 0, 0),
    "subscription_toggle": (1, 0, 0),
}
OPERATIONS = tuple(BUDGET)
# The projection's per-job latency: `SELECT 1` through jobs.query (google-cloud-bigquery's query_and_wait),
# 394 ms +- 38 ms over 10 x 10 runs, against 1.08 s through jobs.insert and polling, as measured and
# published by a BigQuery client maintainer. A trivial query: the store's jobs are small but not that
# small, and scripts (transactions) take longer, so the projection is a floor for BigQuery's share.
BIGQUERY_SECONDS_PER_JOB = 0.394
BIGQUERY_LATENCY_SOURCE = "https://github.com/googleapis/python-bigquery-pandas/pull/722"
# Every function module in the tree (new ones join the import table by themselves).
FUNCTION_MODULES = tuple(
    f"functions.{path.stem}" for path in sorted((REPO / "functions").glob("*.py")) if path.stem != "__init__"
)
HELLO_MODULE = "bench_hello_function"
HELLO_SOURCE = 'import functions_framework\n\n\n@functions_framework.http\ndef hello(request):\n    return "ok"\n'
RESULT_MARKER = "BENCH_RESULT "
PEPPER_ENV = "INTEGRATIONS_SECRET_API_KEY_PEPPER"  # shared.secret_sources.env_var_name("api-key-pepper")
BLOCK_ENV = "BENCH_BLOCK_MODULES"
# Installed for development but part of any Python environment: never blocked.
NEVER_BLOCK = {"pip", "setuptools"}

# Run in a fresh interpreter: argv = module [extra sys.path entry]; prints the import's seconds.
IMPORT_PROBE = """
import importlib, sys, time
if len(sys.argv) > 2:
    sys.path.insert(0, sys.argv[2])
started = time.perf_counter()
importlib.import_module(sys.argv[1])
print(time.perf_counter() - started)
"""

# Run in a fresh interpreter: argv = target, source path, JSON request plan. Loads the source
# as Cloud Functions does, sends the cold request, then (untimed) restores the state the warm
# request needs through the service, then sends the warm request, and reports what it took.
FIRST_REQUEST_PROBE = (
    f"RESULT_MARKER = {RESULT_MARKER!r}\nBLOCK_ENV = {BLOCK_ENV!r}\n"
    + """
import json, logging, os, sys, time
# Modules a deploy from requirements.txt would not have: importing them raises ImportError.
for name in filter(None, os.environ.get(BLOCK_ENV, "").split(",")):
    sys.modules[name] = None
plan = json.loads(sys.argv[3])
started, started_cpu = time.perf_counter(), time.process_time()
import functions_framework
app = functions_framework.create_app(target=sys.argv[1], source=sys.argv[2])
loaded, loaded_cpu = time.perf_counter(), time.process_time()
logging.getLogger("integrations").setLevel(logging.WARNING)
client = app.test_client()
headers = {"X-API-Key": plan["api_key"]} if plan.get("api_key") else {}
def send(call):
    method, path, body, expected = call
    response = client.open(path, method=method, json=body, headers=headers)
    if response.status_code != expected:
        raise SystemExit(f"{method} {path}: {response.status_code} (expected {expected}) {response.text[:300]}")
def jobs():
    service = getattr(sys.modules.get("shared.inbound.http"), "_service", None)
    return None if service is None else service.adapters.store.counters["jobs"]
send(plan["cold"])
answered, answered_cpu = time.perf_counter(), time.process_time()
jobs_cold = jobs()
_service = getattr(sys.modules.get("shared.inbound.http"), "_service", None)
cipher_built = None if _service is None else "cipher" in vars(_service.adapters)
# What the cold start loaded (before the state is restored, which may load more).
loaded_modules = sorted(
    m for m, module in sys.modules.items()
    if module is not None and (m in ("grpc", "jsonschema") or m.startswith(("google.", "grpc.")))
)
if plan.get("between"):
    # Restore the state through the instance's service (another function serves that route).
    from shared.domain.caller import Caller
    service = sys.modules["shared.inbound.http"]._service
    caller = Caller(key_id="bench-restore", org_slug=plan["org"], is_admin=False, request_id="bench")
    action, argument = plan["between"]
    if action == "delete":
        service.delete(caller, argument)
    elif action == "setup":
        service.setup(caller, argument, {"api_key": plan["setup_key"]}, None, None)
    else:
        service.set_webhook(plan["org"], argument, caller)
jobs_before_warm = jobs()
warm_started = time.perf_counter()
send(plan.get("warm") or plan["cold"])
warm = time.perf_counter()
service = getattr(sys.modules.get("shared.inbound.http"), "_service", None)
result = {
    "import_s": loaded - started,
    "first_s": answered - loaded,
    # CPU seconds of this process: what other sessions on a shared machine disturb least.
    "import_cpu_s": loaded_cpu - started_cpu,
    "first_cpu_s": answered_cpu - loaded_cpu,
    "second_s": warm - warm_started,
    "store_jobs": None if service is None else [jobs_cold, jobs() - jobs_before_warm],
    "cipher_built": cipher_built,
    "modules": loaded_modules,
}
print(RESULT_MARKER + json.dumps(result))
"""
)

WEBHOOK_URL = "http://127.0.0.1:9/bench-hook"  # nothing listens; WEBHOOK_INSECURE_HOSTS lets it through


@dataclass(frozen=True)
class ColdCase:
    """One entry point's first request: the state it needs, the cold request, what restores
    the state for the warm one (untimed) and the warm request (None: the cold one again)."""

    state: str  # "present" (integration, enabled), "active" (validated), "absent" (none), "webhook" (+ webhook)
    cold: tuple[str, str, Any, int]  # method, path, JSON body, expected status
    between: tuple[str, str] | None = None  # ("delete" | "setup", provider) or ("webhook", url)
    warm: tuple[str, str, Any, int] | None = None
    admin: bool = False


_ONE = f"{API}/{ORG}/{PROVIDER}"
_HOOK = f"/api/v1/organizations/{ORG}/webhook"
_SETUP = ("POST", f"{_ONE}/setup", {"credentials": {"api_key": OPENAI_KEY}}, 201)


def _rotate(new_key: str) -> tuple[str, str, Any, int]:
    return ("POST", f"{_ONE}/rotate", {"new_credentials": {"api_key": new_key}}, 200)


# main.py's ENTRY_POINTS -> its first request (tests/test_bench.py keeps the two in step).
COLD_CASES: dict[str, ColdCase] = {
    "integration_setup": ColdCase("absent", _SETUP, between=("delete", PROVIDER)),
    "integration_validate": ColdCase("present", ("POST", f"{_ONE}/validate", None, 200)),
    "integration_list": ColdCase("present", ("GET", f"{API}/{ORG}", None, 200)),
    "integration_get": ColdCase("present", ("GET", _ONE, None, 200)),
    "integration_update": ColdCase("present", ("PUT", _ONE, {"enabled": True}, 200)),
    "integration_delete": ColdCase("present", ("DELETE", _ONE, None, 200), between=("setup", PROVIDER)),
    "integration_rotate": ColdCase(
        "present",
        _rotate("sk-admin-BenchColdRotationAbcdefghijkl"),
        warm=_rotate("sk-admin-BenchWarmRotationAbcdefghij"),
    ),
    "integration_revalidate": ColdCase("present", ("POST", "/api/v1/admin/revalidate", None, 200), admin=True),
    "webhook_set": ColdCase("present", ("PUT", _HOOK, {"url": WEBHOOK_URL}, 200)),
    "webhook_get": ColdCase("webhook", ("GET", _HOOK, None, 200)),
    "webhook_delete": ColdCase("webhook", ("DELETE", _HOOK, None, 200), between=("webhook", WEBHOOK_URL)),
    "alerts_list": ColdCase("present", ("GET", f"/api/v1/organizations/{ORG}/alerts", None, 200)),
    "aws_setup_instructions": ColdCase("present", ("GET", f"{API}/{ORG}/aws/setup-instructions", None, 200)),
    "oauth_start": ColdCase("present", ("POST", f"{API}/{ORG}/{OAUTH_PROVIDER}/oauth/start", None, 200)),
    # Without a started flow the callback's answer is the 400 page: the function's load and first answer.
    "oauth_callback": ColdCase("-", ("GET", "/api/v1/oauth/callback", None, 400)),
    # Likewise a completion code no flow holds: the function's load, the key lookup and one store read.
    "oauth_complete": ColdCase(
        "present",
        ("POST", f"{API}/{ORG}/{OAUTH_PROVIDER}/oauth/complete", {"completion_code": "B" * 43}, 400),
    ),
    "subscription_providers_list": ColdCase("present", ("GET", f"/api/v1/subscriptions/{ORG}/providers", None, 200)),
    "subscription_provider_update": ColdCase(
        "present", ("PUT", f"/api/v1/subscriptions/{ORG}/providers/chatgpt_plus", {"enabled": True}, 200)
    ),
    # A dry run: checks (and prices) the item against the org's integrations without writing.
    "integration_import": ColdCase(
        "present",
        (
            "POST",
            f"{API}/{ORG}/import",
            {"items": [{"provider": "anthropic", "credentials": {"api_key": ANTHROPIC_KEY}}], "dry_run": True},
            200,
        ),
    ),
    "admin_keys": ColdCase("present", ("GET", "/api/v1/admin/keys", None, 200), admin=True),
    "admin_key_rotate": ColdCase("present", ("POST", "/api/v1/admin/keys/rotate", None, 200), admin=True),
    "admin_key_rewrap": ColdCase("present", ("POST", "/api/v1/admin/keys/rewrap", None, 200), admin=True),
    # An active integration (validated, untimed, before the process starts): the answer is the key.
    "credential_access": ColdCase(
        "active", ("POST", f"{_ONE}/access", {"pipeline": "cost/usage_cost"}, 200), admin=True
    ),
}
HELLO_CASE = ColdCase("-", ("GET", "/", None, 200))
# Cases that also get a -X importtime run, for the heaviest imports line.
BREAKDOWN = {("gcp", "integration_list"), ("gcp", "integration_validate")}
# The goals: first response as a ratio to the hello world, gcp (runtime deps) and local.
GOALS = {
    "gcp": {"integration_list": 2.0, "integration_get": 2.0, "integration_validate": 2.5, "integration_setup": 2.5},
    "local": dict.fromkeys(("integration_list", "integration_get", "integration_validate", "integration_setup"), 1.3),
}


# --- helpers -------------------------------------------------------------------------------------


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


def runtime_distributions() -> set[str]:
    """Distributions a deploy installs: requirements.txt and everything it requires (extras followed)."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = (line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    pending = [Requirement(line) for line in lines if line]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for raw in requires:
            dependency = Requirement(raw)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                pending.append(dependency)
    return {name for name, _ in seen}


def dev_only_modules() -> list[str]:
    """Importable names only development packages provide (bqemulator pulls in pyarrow,
    google-cloud-bigquery-storage, numpy...). Each is the shallowest dotted prefix no runtime
    package shares, so namespace packages (``google.cloud``, ``opentelemetry``) stay importable."""
    import importlib.metadata

    from packaging.utils import canonicalize_name

    def module_path(file: Any) -> tuple[str, ...] | None:
        parts = file.parts
        if not parts or ".." in parts or "__pycache__" in parts:
            return None
        if parts[0].endswith((".dist-info", ".data", ".egg-info", ".pth")):
            return None
        return (*parts[:-1], parts[-1].split(".")[0])

    runtime = runtime_distributions()
    runtime_prefixes: set[str] = set()
    dev_paths: list[tuple[str, ...]] = []
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        if name in NEVER_BLOCK:
            continue
        for path in filter(None, map(module_path, distribution.files or [])):
            if name in runtime:
                runtime_prefixes.update(".".join(path[:depth]) for depth in range(1, len(path) + 1))
            else:
                dev_paths.append(path)
    blocked = set()
    for path in dev_paths:
        prefixes = (".".join(path[:depth]) for depth in range(1, len(path) + 1))
        first_own = next((prefix for prefix in prefixes if prefix not in runtime_prefixes), None)
        if first_own:
            blocked.add(first_own)
    return sorted(blocked)


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


# --- 1. operations ----------------------------------------------------------------------------------


def projected(jobs: int | None) -> float | None:
    """Seconds BigQuery round trips would add: ``jobs`` x the published per-job latency."""
    return None if jobs is None else round(jobs * BIGQUERY_SECONDS_PER_JOB, 3)


def measure_operations(mode: str, settings: Settings, reps: int, kms_server: Any = None) -> list[dict[str, Any]]:
    """One request per operation, repetition and instance (after one warm-up round), counters and wall time.

    Each operation is sent on a warm instance (its auth cache filled by a request just before) and on a
    cold one (a fresh service over the same store: nothing cached, new clients).
    """
    from shared.app.wiring import build_service
    from shared.inbound import http

    with wsgi_client(settings) as (client, service, api_key):
        headers = {"X-API-Key": api_key}
        every = f"{API}/{ORG}"
        one = f"{every}/{PROVIDER}"
        rotation = itertools.count()
        toggles = itertools.count()
        subscriptions = f"/api/v1/subscriptions/{ORG}/providers"
        requests: dict[str, Callable[[], Any]] = {
            "setup": lambda: client.post(
                f"{one}/setup", json={"credentials": {"api_key": OPENAI_KEY}}, headers=headers
            ),
            "validate": lambda: client.post(f"{one}/validate", headers=headers),
            "list": lambda: client.get(every, headers=headers),
            "get": lambda: client.get(one, headers=headers),
            "update": lambda: client.put(one, json={"enabled": False}, headers=headers),
            "rotate": lambda: client.post(
                f"{one}/rotate",
                json={"new_credentials": {"api_key": f"sk-admin-BenchRotated{next(rotation):04d}Abcdefghijklmnop"}},
                headers=headers,
            ),
            "delete": lambda: client.delete(one, headers=headers),
            "subscriptions_list": lambda: client.get(subscriptions, headers=headers),
            # Alternating on/off: every measured toggle is a real change.
            "subscription_toggle": lambda: client.put(
                f"{subscriptions}/slack", json={"enabled": next(toggles) % 2 == 0}, headers=headers
            ),
        }
        present, enabled = False, False
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {op: {"warm": [], "cold": []} for op in OPERATIONS}
        for round_number in range(1 + reps):  # round 0 warms clients and connections; not recorded
            for op in OPERATIONS:
                for instance in ("warm", "cold"):
                    http.use_service(service)
                    # Bring the integration to the state the operation needs (not counted).
                    if op == "setup" and present:
                        expect(requests["delete"](), 200)
                        present = False
                    elif op != "setup" and not present:
                        expect(requests["setup"](), 201)
                        present, enabled = True, True
                    elif op != "setup" and not enabled:
                        expect(client.put(one, json={"enabled": True}, headers=headers), 200)
                        enabled = True
                    expect(client.get(every, headers=headers), 200)  # auth cache warm, as in a warm instance
                    measured = service
                    if instance == "cold":
                        measured = build_service(settings)  # a new instance: nothing cached
                        http.use_service(measured)
                    store, cipher = measured.adapters.store, measured.adapters.cipher
                    store.counters.clear()
                    cipher.counters.clear()
                    kms_before = Counter(kms_server.calls) if kms_server is not None else Counter()
                    started = time.perf_counter()
                    response = requests[op]()
                    elapsed = time.perf_counter() - started
                    expect(response, 200, 201)
                    if op == "validate" and response.get_json().get("status") != "active":
                        raise RuntimeError(f"validate did not activate the integration: {response.text}")
                    present, enabled = {"setup": (True, True), "update": (True, False), "delete": (False, False)}.get(
                        op, (present, enabled)
                    )
                    if round_number == 0:
                        continue
                    kms_seen = Counter(kms_server.calls) - kms_before if kms_server is not None else None
                    samples[op][instance].append(
                        {
                            "seconds": elapsed,
                            "jobs": store.counters["jobs"],
                            "short_queries": store.counters["short_queries"],
                            "retries": store.counters["conflict_retries"] + store.counters["transient_retries"],
                            "encrypt": cipher.counters["encrypt"],
                            "decrypt": cipher.counters["decrypt"],
                            "kms_server": None if kms_seen is None else [kms_seen["encrypt"], kms_seen["decrypt"]],
                        }
                    )
        http.use_service(service)
    rows = []
    for op in OPERATIONS:
        runs, cold = samples[op]["warm"], samples[op]["cold"]
        worst = {name: max(run[name] for run in runs + cold) for name in ("encrypt", "decrypt", "retries")}
        jobs_warm, jobs_cold = max(run["jobs"] for run in runs), max(run["jobs"] for run in cold)
        exact = len({(run["jobs"], run["encrypt"], run["decrypt"]) for run in runs}) == 1
        exact_cold = len({(run["jobs"], run["encrypt"], run["decrypt"]) for run in cold}) == 1
        budget = BUDGET[op]
        within = all(
            got <= allowed
            for measured in (
                (jobs_warm, worst["encrypt"], worst["decrypt"]),
                (jobs_cold, worst["encrypt"], worst["decrypt"]),
            )
            for got, allowed in zip(measured, budget, strict=True)
        )
        seconds = [run["seconds"] for run in runs]
        cold_seconds = [run["seconds"] for run in cold]
        rows.append(
            {
                "operation": op,
                "mode": mode,
                "jobs": jobs_warm,
                "jobs_cold": jobs_cold,
                "short_queries": max(run["short_queries"] for run in runs),
                "encrypt": worst["encrypt"],
                "decrypt": worst["decrypt"],
                "retries": worst["retries"],
                "same_every_run": exact and exact_cold,
                "budget": {"jobs": budget[0], "encrypt": budget[1], "decrypt": budget[2]},
                "verdict": "OK" if within else "OVER",
                # What BigQuery would add to the request at the published per-job latency (gcp mode).
                "projected_bigquery_s": {"cold": projected(jobs_cold), "warm": projected(jobs_warm)}
                if mode == "gcp"
                else None,
                "median_s": median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
                "median_cold_s": median(cold_seconds),
                "runs": runs,
                "cold_runs": cold,
            }
        )
    return rows


def print_operations(rows: list[dict[str, Any]], reps: int) -> None:
    print(
        f"\n== 1. Per operation: one request through the WSGI app, on a warm instance (auth cache filled) and a"
        f" cold one (a fresh service), {reps} runs per row =="
    )
    print(
        "Counters are exact (adapters' counters); times are wall-clock medians after 1 warm-up round, noisy on"
        " this machine. budget j/e/d = store jobs / KMS encrypts / KMS decrypts allowed by docs/architecture.md's"
        f" budget table, cold and warm. BigQuery ms = jobs x {BIGQUERY_SECONDS_PER_JOB * 1000:.0f} ms, the published"
        f" per-job latency of a trivial jobs.query ({BIGQUERY_LATENCY_SOURCE}): what BigQuery round trips would"
        " add in production (a floor; gcp rows only)."
    )
    table = []
    for row in rows:
        budget = row["budget"]
        kms_seen = {tuple(run["kms_server"]) for run in row["runs"] if run["kms_server"] is not None}
        notes = []
        if not row["same_every_run"]:
            notes.append("counters varied between runs (max shown)")
        if row["retries"]:
            notes.append(f"{row['retries']} store retries")
        if kms_seen and kms_seen != {(row["encrypt"], row["decrypt"])}:
            notes.append(f"fake KMS saw enc/dec {sorted(kms_seen)}")
        elif kms_seen:
            notes.append("fake KMS agrees")
        if row["short_queries"]:
            notes.append(f"{row['short_queries']} answered without a job")
        projection = row["projected_bigquery_s"]
        table.append(
            [
                row["operation"],
                row["mode"],
                f"{row['jobs_cold']}/{row['jobs']}",
                str(row["encrypt"]),
                str(row["decrypt"]),
                f"{budget['jobs']}/{budget['encrypt']}/{budget['decrypt']}",
                row["verdict"],
                "-" if projection is None else f"{ms(projection['cold'])}/{ms(projection['warm'])}",
                ms(row["median_s"]),
                f"{ms(row['min_s'])}..{ms(row['max_s'])}",
                ms(row["median_cold_s"]),
                "; ".join(notes),
            ]
        )
    print_table(
        [
            "operation",
            "mode",
            "jobs cold/warm",
            "encrypt",
            "decrypt",
            "budget j/e/d",
            "budget?",
            "BigQuery ms cold/warm",
            "median ms",
            "min..max ms",
            "cold ms",
            "notes",
        ],
        table,
    )


# --- 2. import time ------------------------------------------------------------------------------------


def measure_imports(env: dict[str, str], runs: int, hello_dir: Path) -> dict[str, Any]:
    """Median import seconds per module in fresh interpreters, round-robin so drift hits all alike."""
    modules = [m for m in FUNCTION_MODULES if (REPO / (m.replace(".", "/") + ".py")).exists()]
    targets: list[tuple[str, list[str]]] = [(HELLO_MODULE, [HELLO_MODULE, str(hello_dir)])]
    targets += [(m, [m]) for m in [*modules, "main"]]
    samples: dict[str, dict[str, list[float]]] = {name: {"import_s": [], "process_s": []} for name, _ in targets}
    for round_number in range(1 + runs):  # round 0 writes .pyc files and warms the page cache; not recorded
        for name, argv in targets:
            out, wall = spawn(["-c", IMPORT_PROBE, *argv], env)
            if round_number:
                samples[name]["import_s"].append(float(out.strip().splitlines()[-1]))
                samples[name]["process_s"].append(wall)
    baseline = {kind: median(samples[HELLO_MODULE][kind]) for kind in ("import_s", "process_s")}
    rows = []
    for name, _ in targets:
        medians = {kind: median(values) for kind, values in samples[name].items()}
        rows.append(
            {
                "module": name,
                "median_import_s": medians["import_s"],
                "median_process_s": medians["process_s"],
                "import_ratio": medians["import_s"] / baseline["import_s"],
                "process_ratio": medians["process_s"] / baseline["process_s"],
                "import_samples_s": samples[name]["import_s"],
                "process_samples_s": samples[name]["process_s"],
            }
        )
    missing = [m for m in FUNCTION_MODULES if m not in modules]
    return {
        "runs": runs,
        "rows": rows,
        "missing_modules": missing,
        "heaviest_in_main": heaviest_imports(["-c", "import main"], env, is_root_package),
    }


def heaviest_imports(
    args: list[str], env: dict[str, str], wanted: Callable[[str], bool], top: int = 8
) -> list[dict[str, Any]]:
    """Modules named ``wanted`` by cumulative import time in one ``python -X importtime *args`` run."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"-X importtime run failed:\n{result.stderr[-3000:]}")
    cumulative: dict[str, int] = {}
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if wanted(name):
            cumulative[name] = max(cumulative.get(name, 0), int(parts[1]))
    ranked = sorted(cumulative.items(), key=lambda item: item[1], reverse=True)[:top]
    return [{"module": name, "cumulative_s": us / 1e6} for name, us in ranked]


def is_root_package(name: str) -> bool:
    return "." not in name and name != "main"


def is_google_client(name: str) -> bool:
    """``grpc`` and the Google packages a client pulls in (``google.cloud.bigquery``, ``google.auth``, ...)."""
    parts = name.split(".")
    if name == "grpc":
        return True
    if parts[0] != "google" or len(parts) != (3 if name.startswith("google.cloud.") else 2):
        return False
    return not parts[-1].startswith("_") and not parts[-1].startswith("functions")


GOOGLE_CLOUD_CORE = {"client", "exceptions", "version", "location", "environment_vars", "obsolete"}


def is_client_package(name: str) -> bool:
    """A Google Cloud client library or grpc, as opposed to their shared plumbing."""
    if name == "grpc":
        return True
    return name.startswith("google.cloud.") and is_google_client(name) and name.split(".")[2] not in GOOGLE_CLOUD_CORE


def heaviest_text(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{entry['module']} {ms(entry['cumulative_s'])}" for entry in entries)


def print_imports(imports: dict[str, Any], cpus: int) -> None:
    print(f"\n== 2. Import time in fresh interpreters, gcp-mode environment (median of {imports['runs']} runs) ==")
    print(
        f"import = in-process time of the import statement; process = spawn to exit (includes interpreter start).\n"
        f"Ratios are against the functions-framework hello world measured in this same run ({cpus}-core machine)."
    )
    print_table(
        ["module", "import ms", "x hello", "process ms", "x hello"],
        [
            [
                "hello world (baseline)" if row["module"] == HELLO_MODULE else row["module"],
                ms(row["median_import_s"]),
                f"{row['import_ratio']:.2f}",
                ms(row["median_process_s"]),
                f"{row['process_ratio']:.2f}",
            ]
            for row in imports["rows"]
        ],
    )
    if imports["missing_modules"]:
        print(f"(not in this tree, skipped: {', '.join(imports['missing_modules'])})")
    print(
        "Heaviest root packages under `import main` (ms, one -X importtime run; nested ones count in their parents"
        f" too): {heaviest_text(imports['heaviest_in_main'])}"
    )


# --- 3. first request ----------------------------------------------------------------------------------


def google_packages(modules: list[str]) -> list[str]:
    """``google.cloud.bigquery.client`` -> ``google.cloud.bigquery``; ``google.auth.x`` -> ``google.auth``."""
    packages = set()
    for name in modules:
        parts = name.split(".")
        depth = 3 if name.startswith("google.cloud.") else 2 if parts[0] == "google" else 1
        packages.add(".".join(parts[:depth]))
    return sorted(packages)


class ColdState:
    """Puts one mode's store in the state a cold case needs, before each fresh process (not timed)."""

    def __init__(self, service: Any) -> None:
        from shared.domain.caller import Caller

        self.service = service
        self.caller = Caller(key_id="bench-prepare", org_slug=ORG, is_admin=False, request_id="bench")

    def prepare(self, state: str) -> None:
        from shared.domain.models import SettingsChange

        if state == "-":
            return
        integration = self.service.adapters.store.get_integration(ORG, PROVIDER)
        if state == "absent":
            if integration is not None:
                self.service.delete(self.caller, PROVIDER)
            return
        if integration is None:
            self.service.setup(self.caller, PROVIDER, {"api_key": OPENAI_KEY}, None, None)
        elif integration.status == "disabled":
            self.service.update(self.caller, PROVIDER, SettingsChange(enabled=True))
        if state == "webhook":
            self.service.set_webhook(ORG, WEBHOOK_URL, self.caller)
        if state == "active" and self.service.adapters.store.get_integration(ORG, PROVIDER).status != "active":
            self.service.validate(self.caller, PROVIDER)


def probe_args(case: dict[str, Any]) -> list[str]:
    cold: ColdCase = case["cold_case"]
    plan = {
        "api_key": case["api_key"],
        "org": ORG,
        "setup_key": OPENAI_KEY,
        "cold": cold.cold,
        "between": cold.between,
        "warm": cold.warm,
    }
    return ["-c", FIRST_REQUEST_PROBE, case["target"], str(case["source"]), json.dumps(plan)]


def measure_first_requests(cases: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """Each case in a fresh process, 1 + ``runs`` rounds (round-robin; round 0 is a warm-up:
    it writes .pyc files and warms the page cache); medians, ratios to the same round's hello."""
    samples: dict[str, list[dict[str, Any]]] = {case["label"]: [] for case in cases}
    for round_number in range(1 + runs):
        for case in cases:
            case["state"].prepare(case["cold_case"].state)
            out, wall = spawn(probe_args(case), case["env"])
            line = next(line for line in reversed(out.splitlines()) if line.startswith(RESULT_MARKER))
            if round_number:
                samples[case["label"]].append({**json.loads(line[len(RESULT_MARKER) :]), "process_s": wall})
    hello = [r["import_s"] + r["first_s"] for r in samples[cases[0]["label"]]]
    hello_cpu = [r["import_cpu_s"] + r["first_cpu_s"] for r in samples[cases[0]["label"]]]
    rows = []
    for case in cases:
        runs_of = samples[case["label"]]
        to_first = [r["import_s"] + r["first_s"] for r in runs_of]
        to_first_cpu = [r["import_cpu_s"] + r["first_cpu_s"] for r in runs_of]
        packages = google_packages(sorted({m for r in runs_of for m in r["modules"]}))
        jobs = {tuple(r["store_jobs"]) for r in runs_of if r["store_jobs"] is not None}
        if case.get("breakdown"):
            case["state"].prepare(case["cold_case"].state)
        rows.append(
            {
                "label": case["label"],
                "mode": case["mode"],
                "operation": case["operation"],
                "runtime_deps_only": case.get("runtime_deps_only", False),
                "median_import_s": median([r["import_s"] for r in runs_of]),
                "median_first_request_s": median([r["first_s"] for r in runs_of]),
                "median_to_first_response_s": median(to_first),
                # Each round's time over the hello world's in the same round: drift hits both alike.
                "first_response_ratio": median([mine / base for mine, base in zip(to_first, hello, strict=True)]),
                # The same for this process's CPU time: without the time spent waiting on the stand-ins.
                "median_to_first_response_cpu_s": median(to_first_cpu),
                "first_response_cpu_ratio": median(
                    [mine / base for mine, base in zip(to_first_cpu, hello_cpu, strict=True)]
                ),
                "median_second_request_s": median([r["second_s"] for r in runs_of]),
                "median_process_s": median([r["process_s"] for r in runs_of]),
                "store_jobs_first_then_warm": runs_of[0]["store_jobs"],
                "store_jobs_same_every_run": len(jobs) <= 1,
                # What BigQuery round trips would add to the 1st / 2nd request (jobs x the published latency).
                "projected_bigquery_s_first_then_warm": (
                    [projected(count) for count in runs_of[0]["store_jobs"]]
                    if case["mode"] == "gcp" and runs_of[0]["store_jobs"] is not None
                    else None
                ),
                "cipher_built": any(r["cipher_built"] for r in runs_of),
                "google_packages": packages,
                "jsonschema_loaded": any("jsonschema" in r["modules"] for r in runs_of),
                "kms_imported": any(p.startswith("google.cloud.kms") for p in packages),
                "runs": [{k: v for k, v in r.items() if k != "modules"} for r in runs_of],
                "heaviest_google_imports": (
                    heaviest_imports(probe_args(case), case["env"], is_google_client, top=6)
                    if case.get("breakdown")
                    else []
                ),
            }
        )
    return rows


def first_response_ratios(rows: list[dict[str, Any]], key: str = "first_response_ratio") -> dict[str, dict[str, float]]:
    """mode -> entry point -> median ratio of its first response (wall, or CPU with
    ``key="first_response_cpu_ratio"``) to the hello world's."""
    ratios: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["operation"] != "hello":
            ratios.setdefault(row["mode"], {})[row["operation"]] = round(row[key], 3)
    return ratios


def goal_verdicts(ratios: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    return [
        {"mode": mode, "entry_point": entry_point, "ratio": ratios[mode][entry_point], "goal": goal}
        | {"met": ratios[mode][entry_point] <= goal}
        for mode, goals in GOALS.items()
        for entry_point, goal in goals.items()
        if entry_point in ratios.get(mode, {})
    ]


def print_first_requests(rows: list[dict[str, Any]], runs: int, blocked: list[str]) -> None:
    print(
        f"\n== 3. First request in a fresh process: load main.py as Cloud Functions does, send the entry point's"
        f" request cold, then warm (median of {runs} runs after a warm-up round) =="
    )
    print(
        "load = functions_framework.create_app(source=main.py); 1st = cold request (settings, clients, pepper, the"
        " key's signature, the work);\nx hello = median over rounds of (load + 1st) / the hello world's in the same"
        " round; 2nd = the same request warm (state restored in between, untimed).\njobs = store jobs of the 1st /"
        " 2nd request (* = varied between runs; the key is confirmed inside the request's own first job).\nx hello"
        " CPU = the"
        " same ratio of the process's CPU time: it leaves out the wait on the stand-ins (the BigQuery emulator spends"
        " ~10 ms on a read job and ~60-90 ms on a transaction script; production's BigQuery latency differs anyway)."
        f"\nBigQuery ms = the 1st / 2nd request's store jobs x {BIGQUERY_SECONDS_PER_JOB * 1000:.0f} ms, the published"
        f" latency of a trivial jobs.query ({BIGQUERY_LATENCY_SOURCE}): what production adds to them (gcp rows)."
    )
    baseline = next(row for row in rows if row["operation"] == "hello")
    baseline_packages = set(baseline["google_packages"])
    table = []
    for row in rows:
        is_read = row["operation"] in ("integration_list", "integration_get")
        clients = [p for p in row["google_packages"] if p not in baseline_packages and is_client_package(p)]
        kms_used = row["kms_imported"] or (row["mode"] == "gcp" and row["cipher_built"])
        # The adapter speaks REST: a built cipher loads no client library; google.cloud.kms would be a regression.
        kms_how = "FAIL: google.cloud.kms" if row["kms_imported"] else "REST"
        kms_check = ("FAIL: used" if kms_used else "OK: not used") if is_read else (kms_how if kms_used else "-")
        jobs = row["store_jobs_first_then_warm"]
        jobs_text = "-" if jobs is None else f"{jobs[0]}/{jobs[1]}" + ("" if row["store_jobs_same_every_run"] else "*")
        projection = row["projected_bigquery_s_first_then_warm"]
        projection_text = "-" if projection is None else f"{ms(projection[0])}/{ms(projection[1])}"
        goal = GOALS.get(row["mode"], {}).get(row["operation"])
        table.append(
            [
                row["label"],
                ms(row["median_import_s"]),
                ms(row["median_first_request_s"]),
                ms(row["median_to_first_response_s"]),
                f"{row['first_response_ratio']:.2f}",
                f"{row['first_response_cpu_ratio']:.2f}",
                projection_text,
                "-" if goal is None else f"<= {goal:g} " + ("met" if row["first_response_ratio"] <= goal else "MISSED"),
                ms(row["median_second_request_s"]),
                ms(row["median_process_s"]),
                jobs_text,
                kms_check,
                ", ".join(clients) + (" +jsonschema" if row["jsonschema_loaded"] else "") or "-",
            ]
        )
    print_table(
        [
            "case",
            "load ms",
            "1st ms",
            "to 1st resp ms",
            "x hello",
            "x hello CPU",
            "BigQuery ms",
            "goal",
            "2nd ms",
            "process ms",
            "jobs",
            "KMS",
            "Google clients loaded (all modules: JSON)",
        ],
        table,
    )
    print(f"hello world loads: {', '.join(sorted(baseline_packages)) or 'no Google modules'}")
    examples = ("google.cloud.bigquery_storage", "google.cloud.bigquery_storage_v1", "pyarrow", "numpy", "pandas")
    shown = [name for name in examples if name in blocked]
    print(
        f"gcp rows: the process blocks the {len(blocked)} modules that only development packages provide"
        f" (e.g. {', '.join(shown[:6])}), as a deploy from requirements.txt lacks them, and gets the API-key"
        " pepper as INTEGRATIONS_SECRET_API_KEY_PEPPER, as Terraform mounts it."
    )
    for row in rows:
        if row.get("heaviest_google_imports"):
            print(
                f"Heaviest Google imports in one `{row['label']}` cold start (ms, one -X importtime run, which adds"
                f" its own overhead; nested ones count in their parents too):"
                f" {heaviest_text(row['heaviest_google_imports'])}"
            )


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write every number (and raw samples) to this file")
    parser.add_argument("--reps", type=int, default=5, help="measured runs per operation and mode (default 5)")
    parser.add_argument("--import-runs", type=int, default=7, help="fresh interpreters per module (default 7)")
    parser.add_argument(
        "--cold-runs", type=int, default=5, help="fresh processes per first-request case, after a warm-up (default 5)"
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="time the first request only of cases whose label contains TEXT (e.g. 'local integration_validate');"
        " the hello world is always timed; for a quick look, not for the figures a note reports",
    )
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    started = time.perf_counter()
    print(
        f"bench.operations  {datetime.now(UTC).isoformat(timespec='seconds')}  python {platform.python_version()}  "
        f"{platform.system()} {platform.machine()}  {cpus} CPUs\n"
        f"Times are wall-clock and noisy ({cpus}-core machine, emulator and fakes share it); counters are exact."
    )
    from shared.domain.providers import check_registry

    # As Cloud Build's lint step does before a deploy: cold starts then load the checked copy.
    if problems := check_registry(write_copy=True):
        raise SystemExit(f"provider registry fails its check: {problems}")
    from tests.fakes.metadata_server import FakeMetadataServer

    with (
        tempfile.TemporaryDirectory(prefix="bench-ops-") as temp,
        running_stack() as (simulator, gcp),
        FakeMetadataServer() as metadata,
    ):
        temp_dir = Path(temp)
        progress(f"stand-ins up (BigQuery emulator started in {gcp.bigquery.startup_seconds:.1f} s)")

        operations: list[dict[str, Any]] = []
        for mode in ("local", "gcp"):
            progress(f"operations, {mode} mode")
            settings = mode_settings(mode, simulator, gcp, temp_dir / f"ops-{mode}")
            operations += measure_operations(mode, settings, args.reps, gcp.kms if mode == "gcp" else None)
        print_operations(operations, args.reps)

        # State for the fresh processes: an org key (and an admin key) per mode; ColdState keeps
        # the integration/webhook each case needs in place between the processes.
        blocked = dev_only_modules()
        cold: dict[str, dict[str, Any]] = {}
        for mode in ("local", "gcp"):
            settings = replace(
                mode_settings(mode, simulator, gcp, temp_dir / f"cold-{mode}"), webhook_insecure_hosts=("127.0.0.1",)
            )
            from shared.app.wiring import build_service
            from shared.secret_sources import env_var_name

            service = build_service(settings)
            # Revalidation checks the integration even though it was just set up; the webhook goes to loopback.
            env = {
                **mode_env(mode, settings, gcp),
                "WEBHOOK_INSECURE_HOSTS": "127.0.0.1",
                "REVALIDATION_MIN_INTERVAL_MINUTES": "0",
                "OAUTH_REDIRECT_URI": "https://integrations.example.com/api/v1/oauth/callback",
                "AWS_PLATFORM_ROLE_ARN": "arn:aws:iam::111122223333:role/integrations-bench",
            }
            if mode == "local":
                env |= {env_var_name(name): value for name, value in OAUTH_CLIENT.items()}
            if mode == "gcp":
                env[BLOCK_ENV] = ",".join(blocked)
                env[PEPPER_ENV] = service.adapters.api_key_pepper.decode()  # as Terraform mounts it
                # As on Cloud Functions: the Google adapters take the runtime's token from the metadata server.
                env["GCE_METADATA_HOST"] = metadata.host
            cold[mode] = {
                "env": env,
                "state": ColdState(service),
                "api_key": service.create_api_key(ORG)[1],
                "admin_key": service.create_api_key("ops", is_admin=True)[1],
            }

        hello_dir = temp_dir / "hello"
        hello_dir.mkdir()
        (hello_dir / f"{HELLO_MODULE}.py").write_text(HELLO_SOURCE)
        progress(f"imports, {args.import_runs} runs per module")
        imports = measure_imports(cold["gcp"]["env"], args.import_runs, hello_dir)
        print_imports(imports, cpus)

        progress(f"first requests, {args.cold_runs} runs (+1 warm-up) per case")
        cases: list[dict[str, Any]] = [
            {
                "label": "hello world (baseline)",
                "mode": "-",
                "operation": "hello",
                "target": "hello",
                "source": hello_dir / f"{HELLO_MODULE}.py",
                "cold_case": HELLO_CASE,
                "api_key": None,
                "env": base_env(),
                "state": None,
            }
        ]
        for mode in ("gcp", "local"):
            for entry_point, cold_case in COLD_CASES.items():
                cases.append(
                    {
                        "label": f"{mode} {entry_point}",
                        "mode": mode,
                        "operation": entry_point,
                        "runtime_deps_only": mode == "gcp",
                        "target": entry_point,
                        "source": REPO / "main.py",
                        "cold_case": cold_case,
                        "api_key": cold[mode]["admin_key" if cold_case.admin else "api_key"],
                        "env": cold[mode]["env"],
                        "state": cold[mode]["state"],
                        "breakdown": (mode, entry_point)
                        in (("gcp", "integration_list"), ("gcp", "integration_validate")),
                    }
                )
        if args.only:
            cases = [case for case in cases if case["operation"] == "hello" or args.only in case["label"]]
        cases[0]["state"] = ColdState(None)
        first_requests = measure_first_requests(cases, args.cold_runs)
        print_first_requests(first_requests, args.cold_runs, blocked)
        print(
            f"gcp rows take their access token from a stand-in metadata server (GCE_METADATA_HOST), as on Cloud"
            f" Functions: {metadata.fetches} token fetches over the run's gcp processes."
        )

    ratios = first_response_ratios(first_requests)
    cpu_ratios = first_response_ratios(first_requests, key="first_response_cpu_ratio")
    verdicts = goal_verdicts(ratios)
    missed = [f"{v['mode']} {v['entry_point']} {v['ratio']:.2f} > {v['goal']:g}" for v in verdicts if not v["met"]]
    cpu_missed = [
        f"{v['mode']} {v['entry_point']} {v['ratio']:.2f} > {v['goal']:g}"
        for v in goal_verdicts(cpu_ratios)
        if not v["met"]
    ]
    over = [f"{row['operation']} ({row['mode']})" for row in operations if row["verdict"] == "OVER"]
    colder = [f"{row['operation']} ({row['mode']})" for row in operations if row["jobs_cold"] != row["jobs"]]
    kms_loaded = [
        row["label"]
        for row in first_requests
        if row["operation"] in ("integration_list", "integration_get")
        and (row["kms_imported"] or (row["mode"] == "gcp" and row["cipher_built"]))
    ]
    kms_imported = [row["label"] for row in first_requests if row["kms_imported"]]
    elapsed = time.perf_counter() - started
    print(
        f"\nSummary: budget {'OVER for ' + ', '.join(over) if over else 'OK for every operation in both modes'}; "
        f"cold {'costs more jobs than warm for ' + ', '.join(colder) if colder else 'and warm cost the same jobs'}; "
        f"KMS {'used by ' + ', '.join(kms_loaded) if kms_loaded else 'not used by list/get'}; "
        f"google.cloud.kms {'imported by ' + ', '.join(kms_imported) if kms_imported else 'imported by no request'}; "
        f"first-response goals {'MISSED: ' + '; '.join(missed) if missed else f'met ({len(verdicts)} of them)'}; "
        f"by CPU time {'MISSED: ' + '; '.join(cpu_missed) if cpu_missed else 'all met'}; "
        f"run took {elapsed:.0f} s."
        + (f" Only the cases matching {args.only!r} were timed: not a full run." if args.only else "")
    )
    if args.json:
        report = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": cpus,
            "settings": {
                "reps": args.reps,
                "import_runs": args.import_runs,
                "cold_runs": args.cold_runs,
                "only": args.only,
            },
            "budget_source": "docs/architecture.md, Budgets",
            "bigquery_seconds_per_job": BIGQUERY_SECONDS_PER_JOB,
            "bigquery_latency_source": BIGQUERY_LATENCY_SOURCE,
            "operations": operations,
            "imports": imports,
            "first_requests": first_requests,
            "first_response_ratio": ratios,
            "first_response_cpu_ratio": cpu_ratios,
            "first_response_goals": verdicts,
            "dev_only_modules_blocked_in_runtime_deps_rows": blocked,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
