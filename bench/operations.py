"""Per-operation store/KMS cost and cold-start time of the integrations service.

A benchmark, not a test: it prints tables (and ``--json PATH`` writes them)
for a person to read; ``bench/README.md`` says how to read them. Run from the
repository root::

    .venv/bin/python -m bench.operations [--json bench-results.json]

1. Operations. setup, validate, list, get, update (disable), rotate and delete,
   each sent once through the real WSGI app (``shared.local_server``) with the
   auth cache warm, in local mode (SQLite + keyring) and in gcp mode (BigQuery
   emulator, KMS and Secret Manager fakes, provider simulator, all started
   here). Store jobs and cipher calls come from the adapters' counters (exact)
   and are checked against ARCHITECTURE.md's budget; wall time is a median
   over a few repetitions (noisy).
2. Import time, gcp mode. Each function module and ``main`` imported in fresh
   interpreters, median over N runs, as a ratio to a bare functions-framework
   hello world timed in the same run.
3. First request. A fresh process loads ``main.py`` the way Cloud Functions
   does (``functions_framework.create_app``) and serves one GET list / get, in
   gcp and local mode; which Google modules that loaded (list/get must not
   load ``google.cloud.kms``).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings
    from tests.conftest import GcpStack
    from tests.simulators.providers import ProviderSimulator

REPO = Path(__file__).resolve().parent.parent
API = "/api/v1/integrations"
ORG = "bench"
PROVIDER = "openai"
OPENAI_KEY = "sk-admin-BenchKeyAbcdefghijklmnop0123456789"  # admin: can read costs, so validate -> active
PROJECT = "integrations-bench"
KMS_KEY = f"projects/{PROJECT}/locations/us/keyRings/integrations/cryptoKeys/credentials"

# ARCHITECTURE.md, "Performance budgets": (store jobs, KMS encrypts, KMS decrypts) for one call.
BUDGET: dict[str, tuple[int, int, int]] = {
    "setup": (1, 1, 0),
    "validate": (2, 0, 1),
    "list": (1, 0, 0),
    "get": (1, 0, 0),
    "update": (1, 0, 0),
    "rotate": (2, 1, 0),
    "delete": (1, 0, 0),
    # SaaS subscriptions (issue 12): one job each, no KMS.
    "subscriptions_list": (1, 0, 0),
    "subscription_toggle": (1, 0, 0),
}
OPERATIONS = tuple(BUDGET)
FUNCTION_MODULES = (
    "functions.setup",
    "functions.validate",
    "functions.list_integrations",
    "functions.get",
    "functions.update",
    "functions.delete",
    "functions.rotate",
    "functions.revalidate",
    "functions.subscriptions",
)
HELLO_MODULE = "bench_hello_function"
HELLO_SOURCE = 'import functions_framework\n\n\n@functions_framework.http\ndef hello(request):\n    return "ok"\n'
RESULT_MARKER = "BENCH_RESULT "
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

# Run in a fresh interpreter: argv = target source path [api key]. Loads the source as
# Cloud Functions does, serves the GET twice (cold, then warm) and reports what it took.
FIRST_REQUEST_PROBE = (
    f"RESULT_MARKER = {RESULT_MARKER!r}\nBLOCK_ENV = {BLOCK_ENV!r}\n"
    + """
import json, logging, os, sys, time
# Modules a deploy from requirements.txt would not have: importing them raises ImportError.
for name in filter(None, os.environ.get(BLOCK_ENV, "").split(",")):
    sys.modules[name] = None
started = time.perf_counter()
import functions_framework
app = functions_framework.create_app(target=sys.argv[1], source=sys.argv[2])
loaded = time.perf_counter()
logging.getLogger("integrations").setLevel(logging.WARNING)
client = app.test_client()
headers = {"X-API-Key": sys.argv[4]} if len(sys.argv) > 4 else {}
first = client.get(sys.argv[3], headers=headers)
answered = time.perf_counter()
http = sys.modules.get("shared.http")
service = getattr(http, "_service", None)
jobs_first = service.adapters.store.counters["jobs"] if service is not None else None
second = client.get(sys.argv[3], headers=headers)
warm = time.perf_counter()
result = {
    "import_s": loaded - started,
    "first_s": answered - loaded,
    "second_s": warm - answered,
    "status": [first.status_code, second.status_code],
    "store_jobs": None if service is None else [jobs_first, service.adapters.store.counters["jobs"] - jobs_first],
    "cipher_built": None if service is None else "cipher" in vars(service.adapters),
    "modules": sorted(
        m for m, module in sys.modules.items()
        if module is not None and (m == "grpc" or m.startswith(("google.", "grpc.")))
    ),
}
print(RESULT_MARKER + json.dumps(result))
"""
)


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
    from shared.config import API_KEY_PEPPER_SECRET
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
        yield simulator, GcpStack(bigquery, kms, secret_manager, KMS_KEY)


def mode_settings(mode: str, simulator: ProviderSimulator, gcp: GcpStack, data_dir: Path) -> Settings:
    """Local settings on ``data_dir``, or gcp settings on a fresh bootstrapped dataset."""
    from shared.config import Settings

    local = Settings(
        backend="local",
        data_dir=data_dir,
        provider_base_urls={p: simulator.base_url(p) for p in ("openai", "anthropic", "gemini")},
    )
    return local if mode == "local" else gcp.settings(local)


def mode_env(mode: str, settings: Settings, gcp: GcpStack) -> dict[str, str]:
    """The same settings as environment variables, for a fresh process."""
    env = {**base_env(), "INTEGRATIONS_BACKEND": mode, "INTEGRATIONS_DATA_DIR": str(settings.data_dir)}
    return {**env, **gcp.env(settings)} if mode == "gcp" else env


@contextmanager
def wsgi_client(settings: Settings) -> Iterator[tuple[Any, Any, str]]:
    """(test client over the local server's app, the service behind it, an API key of ORG)."""
    from shared import http
    from shared.local_server import create_app
    from shared.wiring import build_service

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


def measure_operations(mode: str, settings: Settings, reps: int, kms_server: Any = None) -> list[dict[str, Any]]:
    """One request per operation and repetition (after one warm-up round), counters and wall time."""
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
        store, cipher = service.adapters.store, service.adapters.cipher
        samples: dict[str, list[dict[str, Any]]] = {op: [] for op in OPERATIONS}
        for round_number in range(1 + reps):  # round 0 warms clients and connections; not recorded
            for op in OPERATIONS:
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
                samples[op].append(
                    {
                        "seconds": elapsed,
                        "jobs": store.counters["jobs"],
                        "retries": store.counters["conflict_retries"] + store.counters["transient_retries"],
                        "encrypt": cipher.counters["encrypt"],
                        "decrypt": cipher.counters["decrypt"],
                        "kms_server": None if kms_seen is None else [kms_seen["encrypt"], kms_seen["decrypt"]],
                    }
                )
    rows = []
    for op in OPERATIONS:
        runs = samples[op]
        worst = {name: max(run[name] for run in runs) for name in ("jobs", "encrypt", "decrypt", "retries")}
        exact = len({(run["jobs"], run["encrypt"], run["decrypt"]) for run in runs}) == 1
        budget = BUDGET[op]
        measured = (worst["jobs"], worst["encrypt"], worst["decrypt"])
        within = all(got <= allowed for got, allowed in zip(measured, budget, strict=True))
        seconds = [run["seconds"] for run in runs]
        rows.append(
            {
                "operation": op,
                "mode": mode,
                "jobs": worst["jobs"],
                "encrypt": worst["encrypt"],
                "decrypt": worst["decrypt"],
                "retries": worst["retries"],
                "same_every_run": exact,
                "budget": {"jobs": budget[0], "encrypt": budget[1], "decrypt": budget[2]},
                "verdict": "OK" if within else "OVER",
                "median_s": median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
                "runs": runs,
            }
        )
    return rows


def print_operations(rows: list[dict[str, Any]], reps: int) -> None:
    print(f"\n== 1. Per operation: one request through the WSGI app, auth cache warm ({reps} runs per row) ==")
    print(
        "Counters are exact (adapters' counters); times are wall-clock medians after 1 warm-up round, noisy on"
        " this machine. budget j/e/d = store jobs / KMS encrypts / KMS decrypts allowed by ARCHITECTURE.md."
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
        table.append(
            [
                row["operation"],
                row["mode"],
                str(row["jobs"]),
                str(row["encrypt"]),
                str(row["decrypt"]),
                f"{budget['jobs']}/{budget['encrypt']}/{budget['decrypt']}",
                row["verdict"],
                ms(row["median_s"]),
                f"{ms(row['min_s'])}..{ms(row['max_s'])}",
                "; ".join(notes),
            ]
        )
    print_table(
        [
            "operation",
            "mode",
            "jobs",
            "encrypt",
            "decrypt",
            "budget j/e/d",
            "budget?",
            "median ms",
            "min..max ms",
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


def probe_args(case: dict[str, Any]) -> list[str]:
    api_key = [case["api_key"]] if case["api_key"] else []
    return ["-c", FIRST_REQUEST_PROBE, case["target"], str(case["source"]), case["path"], *api_key]


def measure_first_requests(cases: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """Each case in a fresh process ``runs`` times (round-robin); medians and what it loaded."""
    samples: dict[str, list[dict[str, Any]]] = {case["label"]: [] for case in cases}
    for _ in range(runs):
        for case in cases:
            out, wall = spawn(probe_args(case), case["env"])
            line = next(line for line in reversed(out.splitlines()) if line.startswith(RESULT_MARKER))
            result = json.loads(line[len(RESULT_MARKER) :])
            if result["status"] != [200, 200]:
                raise RuntimeError(f"{case['label']}: statuses {result['status']}")
            samples[case["label"]].append({**result, "process_s": wall})
    rows = []
    for case in cases:
        runs_of = samples[case["label"]]
        packages = google_packages(sorted({m for r in runs_of for m in r["modules"]}))
        jobs = {tuple(r["store_jobs"]) for r in runs_of if r["store_jobs"] is not None}
        rows.append(
            {
                "label": case["label"],
                "mode": case["mode"],
                "operation": case["operation"],
                "runtime_deps_only": case.get("runtime_deps_only", False),
                "median_import_s": median([r["import_s"] for r in runs_of]),
                "median_first_request_s": median([r["first_s"] for r in runs_of]),
                "median_to_first_response_s": median([r["import_s"] + r["first_s"] for r in runs_of]),
                "median_second_request_s": median([r["second_s"] for r in runs_of]),
                "median_process_s": median([r["process_s"] for r in runs_of]),
                "store_jobs_first_then_warm": runs_of[0]["store_jobs"],
                "store_jobs_same_every_run": len(jobs) <= 1,
                "cipher_built": any(r["cipher_built"] for r in runs_of),
                "google_packages": packages,
                "kms_imported": any(p.startswith("google.cloud.kms") for p in packages),
                "runs": [{k: v for k, v in r.items() if k != "modules"} for r in runs_of],
                "heaviest_google_imports": (
                    heaviest_imports(probe_args(case), case["env"], is_google_client, top=5)
                    if case.get("breakdown")
                    else []
                ),
            }
        )
    return rows


def print_first_requests(rows: list[dict[str, Any]], runs: int, blocked: list[str]) -> None:
    print(f"\n== 3. First request in a fresh process: load main.py as Cloud Functions does, GET twice ({runs} runs) ==")
    print(
        "load = functions_framework.create_app(source=main.py); 1st = cold GET (settings, clients, pepper, auth "
        "lookup, query);\n2nd = the same GET again, warm. jobs = store jobs of the 1st / 2nd request"
        " (* = varied between runs; local mode's 1st includes creating the SQLite schema)."
    )
    baseline = next(row for row in rows if row["operation"] == "hello")
    baseline_packages = set(baseline["google_packages"])
    table = []
    for row in rows:
        is_read = row["operation"] in ("list", "get")
        clients = [p for p in row["google_packages"] if p not in baseline_packages and is_client_package(p)]
        kms_used = row["kms_imported"] or (row["mode"] == "gcp" and row["cipher_built"])
        kms_check = ("FAIL: loaded" if kms_used else "OK: not loaded") if is_read else "-"
        jobs = row["store_jobs_first_then_warm"]
        jobs_text = "-" if jobs is None else f"{jobs[0]}/{jobs[1]}" + ("" if row["store_jobs_same_every_run"] else "*")
        table.append(
            [
                row["label"],
                ms(row["median_import_s"]),
                ms(row["median_first_request_s"]),
                ms(row["median_to_first_response_s"]),
                f"{row['median_to_first_response_s'] / baseline['median_to_first_response_s']:.2f}",
                ms(row["median_second_request_s"]),
                ms(row["median_process_s"]),
                jobs_text,
                kms_check,
                ", ".join(clients) or "(none beyond the baseline)",
            ]
        )
    print_table(
        [
            "case",
            "load ms",
            "1st ms",
            "to 1st resp ms",
            "x hello",
            "2nd ms",
            "process ms",
            "jobs",
            "google.cloud.kms",
            "Google clients loaded (all modules: JSON)",
        ],
        table,
    )
    print(f"hello world loads: {', '.join(sorted(baseline_packages)) or 'no Google modules'}")
    examples = ("google.cloud.bigquery_storage", "google.cloud.bigquery_storage_v1", "pyarrow", "numpy", "pandas")
    shown = [name for name in examples if name in blocked]
    print(
        f"'runtime deps' rows: the process blocks the {len(blocked)} modules that only development packages provide"
        f" (e.g. {', '.join(shown[:6])}), as a deploy from requirements.txt would lack them; the other rows run"
        " in this dev venv, where bqemulator's dependencies make google.cloud.bigquery import more."
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
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes per first-request case (default 3)")
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    started = time.perf_counter()
    print(
        f"bench.operations  {datetime.now(UTC).isoformat(timespec='seconds')}  python {platform.python_version()}  "
        f"{platform.system()} {platform.machine()}  {cpus} CPUs\n"
        f"Times are wall-clock and noisy ({cpus}-core machine, emulator and fakes share it); counters are exact."
    )
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as temp, running_stack() as (simulator, gcp):
        temp_dir = Path(temp)
        progress(f"stand-ins up (BigQuery emulator started in {gcp.bigquery.startup_seconds:.1f} s)")

        operations: list[dict[str, Any]] = []
        for mode in ("local", "gcp"):
            progress(f"operations, {mode} mode")
            settings = mode_settings(mode, simulator, gcp, temp_dir / f"ops-{mode}")
            operations += measure_operations(mode, settings, args.reps, gcp.kms if mode == "gcp" else None)
        print_operations(operations, args.reps)

        # Data for the fresh processes: one org key and one integration in each mode.
        cold: dict[str, tuple[dict[str, str], str]] = {}
        for mode in ("local", "gcp"):
            settings = mode_settings(mode, simulator, gcp, temp_dir / f"cold-{mode}")
            with wsgi_client(settings) as (client, _, api_key):
                expect(
                    client.post(
                        f"{API}/{ORG}/{PROVIDER}/setup",
                        json={"credentials": {"api_key": OPENAI_KEY}},
                        headers={"X-API-Key": api_key},
                    ),
                    201,
                )
            cold[mode] = (mode_env(mode, settings, gcp), api_key)

        hello_dir = temp_dir / "hello"
        hello_dir.mkdir()
        (hello_dir / f"{HELLO_MODULE}.py").write_text(HELLO_SOURCE)
        progress(f"imports, {args.import_runs} runs per module")
        imports = measure_imports(cold["gcp"][0], args.import_runs, hello_dir)
        print_imports(imports, cpus)

        progress(f"first requests, {args.cold_runs} runs per case")
        cases: list[dict[str, Any]] = [
            {
                "label": "hello world (baseline)",
                "mode": "-",
                "operation": "hello",
                "target": "hello",
                "source": hello_dir / f"{HELLO_MODULE}.py",
                "path": "/",
                "api_key": None,
                "env": base_env(),
            }
        ]
        blocked = dev_only_modules()
        variants = [
            ("gcp", False, cold["gcp"][0]),
            ("gcp", True, {**cold["gcp"][0], BLOCK_ENV: ",".join(blocked)}),
            ("local", False, cold["local"][0]),
        ]
        for mode, runtime_only, env in variants:
            for operation, target, path in (
                ("list", "integration_list", f"{API}/{ORG}"),
                ("get", "integration_get", f"{API}/{ORG}/{PROVIDER}"),
            ):
                cases.append(
                    {
                        "label": f"{mode} {operation}" + (", runtime deps" if runtime_only else ""),
                        "mode": mode,
                        "operation": operation,
                        "runtime_deps_only": runtime_only,
                        "target": target,
                        "source": REPO / "main.py",
                        "path": path,
                        "api_key": cold[mode][1],
                        "env": env,
                        "breakdown": (mode, operation) == ("gcp", "list"),
                    }
                )
        first_requests = measure_first_requests(cases, args.cold_runs)
        print_first_requests(first_requests, args.cold_runs, blocked)

    over = [f"{row['operation']} ({row['mode']})" for row in operations if row["verdict"] == "OVER"]
    kms_loaded = [
        row["label"]
        for row in first_requests
        if row["operation"] in ("list", "get")
        and (row["kms_imported"] or (row["mode"] == "gcp" and row["cipher_built"]))
    ]
    elapsed = time.perf_counter() - started
    print(
        f"\nSummary: budget {'OVER for ' + ', '.join(over) if over else 'OK for every operation in both modes'}; "
        f"google.cloud.kms {'loaded by ' + ', '.join(kms_loaded) if kms_loaded else 'not loaded by list/get'}; "
        f"run took {elapsed:.0f} s."
    )
    if args.json:
        report = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": cpus,
            "settings": {"reps": args.reps, "import_runs": args.import_runs, "cold_runs": args.cold_runs},
            "budget_source": "ARCHITECTURE.md, Performance budgets",
            "operations": operations,
            "imports": imports,
            "first_requests": first_requests,
            "dev_only_modules_blocked_in_runtime_deps_rows": blocked,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
