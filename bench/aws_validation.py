"""What an AWS validation costs: AWS calls, wall time, and what boto3 adds to a cold start.

A benchmark, not a test: it prints a table for a person to read. Run from the
repository root::

    .venv/bin/python -m bench.aws_validation [--reps 20] [--import-runs 5]

1. Validation. One customer account in the AWS stand-in (moto + the
   evaluating layer, ``tests/simulators/aws.py``); the validator is run
   ``--reps`` times, cold (the first, which fetches the platform's own
   credentials) and warm (the platform credentials cached). Calls per
   validation by action come from the stand-in's counters (exact); times are
   medians (noisy, loopback only: real AWS adds its own latency per call).
2. Import. ``main`` (every entry point) and then the AWS adapter imported in
   fresh interpreters: what loading boto3 lazily keeps off every other
   function's cold start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import Counter

from shared.app.wiring import Adapters
from shared.common.config import Settings
from shared.domain.providers import default_registry
from shared.validators import validate_credential
from shared.validators.aws import stored_credential
from tests.simulators.aws import AwsStandIn

IMPORT_PROBE = """
import time
started = time.perf_counter()
import main
entry_points = time.perf_counter()
import shared.validators.aws_live
adapter = time.perf_counter()
print(1000 * (entry_points - started), 1000 * (adapter - entry_points))
"""


def validations(reps: int) -> None:
    with AwsStandIn() as stand_in:
        spec = default_registry().providers["aws"]
        context = Adapters(Settings.from_env(stand_in.env())).validation_context(spec)
        customer = stand_in.create_customer(external_id="pi-bench")
        secret = stored_credential(customer["role_arn"], "pi-bench")
        config = {name: customer[name] for name in ("export_bucket", "export_prefix", "region")}
        timings, calls = [], []
        for _ in range(reps):
            stand_in.reset()
            started = time.perf_counter()
            result = validate_credential(spec, secret, config, context)
            timings.append(1000 * (time.perf_counter() - started))
            assert result.ok, result.message
            calls.append(Counter(stand_in.state.calls))
        print("| validation | wall ms | AWS calls |")
        print("|---|---|---|")
        print(f"| cold (platform credentials fetched) | {timings[0]:.0f} | {_calls(calls[0])} |")
        warm = statistics.median(timings[1:]) if reps > 1 else float("nan")
        print(f"| warm, median of {reps - 1} | {warm:.0f} | {_calls(calls[-1])} |")
        print(f"paid calls (Cost Explorer): {stand_in.state.paid_calls}")


def _calls(counter: Counter[str]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counter.items())) + f" (= {sum(counter.values())})"


def imports(runs: int) -> None:
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
        samples.append(tuple(float(value) for value in out.stdout.split()))
    main_ms = statistics.median(sample[0] for sample in samples)
    adapter_ms = statistics.median(sample[1] for sample in samples)
    print(f"\nimport main (every entry point): {main_ms:.0f} ms; then the AWS adapter (boto3): +{adapter_ms:.0f} ms")
    print(f"(median of {runs} fresh interpreters; only an AWS validation pays the second number)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aws_validation", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--import-runs", type=int, default=5)
    args = parser.parse_args(argv)
    validations(max(2, args.reps))
    imports(args.import_runs)


if __name__ == "__main__":
    main()
