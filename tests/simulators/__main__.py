"""Run the provider simulator in the foreground: ``python -m tests.simulators --port 9999``.

Prints the ``export`` lines that point the service at it (only settings the
service reads), then serves until interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import sys

from tests.simulators._serving import print_exports, serve_until_stopped
from tests.simulators.provider_apis.common import DEFAULT_SLOW_SECONDS
from tests.simulators.providers import ProviderSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.simulators",
        description="Local simulator of the OpenAI, Anthropic, Gemini and Google token APIs.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to responses")
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=DEFAULT_SLOW_SECONDS,
        help="sleep for keys containing 'slow' (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)

    simulator = ProviderSimulator(
        args.port,
        latency_ms=args.latency_ms,
        slow_seconds=args.slow_seconds,
        log_requests=not args.quiet,
    )
    with simulator:
        print_exports(f"# provider simulator on {simulator.url} (Ctrl-C to stop)", simulator.env())
        serve_until_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
