"""Sections 2 and 3 of ``bench.operations``: import time and the first request of every entry point.

2. Import time, gcp mode. Each function module and ``main`` imported in fresh
   interpreters, median over N runs, as a ratio to a bare functions-framework
   hello world timed in the same run.
3. First request of every entry point. A fresh process loads ``main.py`` the
   way Cloud Functions does (``functions_framework.create_app``) and sends the
   entry point's request cold, then warm, in gcp mode (deploy dependencies
   only, pepper mounted as an env var) and local mode; the median ratio of the
   first response to the hello world's in the same round, and which Google
   modules loaded (list/get must not use KMS; no request may import
   ``google.cloud.kms``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from bench.harness import (
    ANTHROPIC_KEY,
    API,
    BIGQUERY_LATENCY_SOURCE,
    BIGQUERY_SECONDS_PER_JOB,
    OAUTH_PROVIDER,
    OPENAI_KEY,
    ORG,
    PROVIDER,
    REPO,
    median,
    ms,
    print_table,
    projected,
    spawn,
)

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


# The cold-start targets: first response as a ratio to the hello world, gcp (runtime deps) and local.
GOALS = {
    "gcp": {"integration_list": 2.0, "integration_get": 2.0, "integration_validate": 2.5, "integration_setup": 2.5},
    "local": dict.fromkeys(("integration_list", "integration_get", "integration_validate", "integration_setup"), 1.3),
}


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
