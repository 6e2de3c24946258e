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
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.common.config import Settings

from bench.cold_start import (
    BLOCK_ENV,
    COLD_CASES,
    HELLO_CASE,
    HELLO_MODULE,
    HELLO_SOURCE,
    PEPPER_ENV,
    ColdState,
    dev_only_modules,
    first_response_ratios,
    goal_verdicts,
    measure_first_requests,
    measure_imports,
    print_first_requests,
    print_imports,
)
from bench.harness import (
    API,
    BIGQUERY_LATENCY_SOURCE,
    BIGQUERY_SECONDS_PER_JOB,
    OAUTH_CLIENT,
    OPENAI_KEY,
    ORG,
    PROVIDER,
    REPO,
    base_env,
    expect,
    median,
    mode_env,
    mode_settings,
    ms,
    print_table,
    progress,
    projected,
    running_stack,
    wsgi_client,
)

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


# --- 1. operations ----------------------------------------------------------------------------------


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
