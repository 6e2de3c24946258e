"""``make demo``: the README walkthrough's stage, in one process and one terminal.

Starts, on loopback:

- the provider simulator (``tests.simulators``; port ``SIMULATOR_PORT``, default 9999),
- the Azure simulator (``tests.simulators.azure``, HTTPS with a throwaway CA;
  ``AZURE_SIMULATOR_PORT``, default 9997) with a demo tenant, app and export,
- the SaaS simulator (``tests.simulators.saas``: GitHub, Slack, Cursor, Vercel,
  Figma, Notion, Asana; ``SAAS_SIMULATOR_PORT``, default 9996),
- the AWS stand-in (``tests.simulators.aws``: moto behind a layer that evaluates trust
  policies, external IDs and S3 permissions, and plays the GCP metadata server;
  ``AWS_SIMULATOR_PORT``, default: a free port),
- the OAuth simulator (``tests.simulators.oauth``: Canva and GitHub App consent, token
  endpoints and APIs; ``OAUTH_SIMULATOR_PORT``, default: a free port), whose access
  tokens live ``DEMO_ACCESS_TOKEN_SECONDS`` (3 s) so a refresh shows within seconds,
- a webhook receiver that prints every alert delivered to it (``RECEIVER_PORT``, default 9998),
- the service itself, exactly as ``make run`` serves it (``PORT``, default 8001),
  pointed at the simulators.

and writes ``$INTEGRATIONS_DATA_DIR/demo.env`` (default ``.data/demo.env``): the
addresses a second terminal needs, plus the settings the admin CLI must share
with the service (the provider URLs, so ``shared.cli revalidate`` checks against
the simulators too, and the OAuth simulator's client ids and secrets, which are
the simulator's own made-up values, never a real app's), and ``AZURE_DEMO_SETUP``,
the demo Azure setup body.
``. .data/demo.env`` there, then follow the README.

Before it starts, writes or prints anything, it checks its settings (a bad
port number or ``INTEGRATIONS_DATA_DIR`` is one line ``{"error": ...}`` on
stderr and exit code 2, as with ``make run`` and the CLI) and that every fixed
port is free (exit code 1 naming the ones taken); the service's own port is
held from that check on.

DEMO AND TESTS ONLY: the service here accepts a plain-http webhook on 127.0.0.1
(``WEBHOOK_INSECURE_HOSTS``), so the receiver can run locally without TLS. In
production webhooks must be https:// to a public host. Likewise the short OAuth
access tokens and ``OAUTH_REFRESH_WINDOW_MINUTES=0`` (refresh only once a token
has expired; production refreshes 10 minutes ahead) exist for the demo only.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from shared.commands.local_server import (
    EXIT_CANNOT_LISTEN,
    bind,
    configure_logs,
    listen,
    serve,
    settings_error,
    start_up_problem,
)
from shared.common.config import Settings
from shared.domain.errors import ConfigurationError
from tests.simulators.aws import ADMIN_PATH, AwsStandIn
from tests.simulators.azure import AzureSimulator
from tests.simulators.oauth import OAuthSimulator
from tests.simulators.providers import ProviderSimulator
from tests.simulators.saas import SaasSimulator

DEFAULT_PORTS = {
    "PORT": 8001,
    "SIMULATOR_PORT": 9999,
    "RECEIVER_PORT": 9998,
    "AZURE_SIMULATOR_PORT": 9997,
    "SAAS_SIMULATOR_PORT": 9996,
    # 0: the system picks a free port; the walkthrough reads the address from demo.env.
    "AWS_SIMULATOR_PORT": 0,
    "OAUTH_SIMULATOR_PORT": 0,
}
# DEMO ONLY: OAuth access tokens that expire within seconds, refreshed only once expired,
# so the walkthrough sees a refresh after a short sleep (real ones live hours).
DEMO_ACCESS_TOKEN_SECONDS = 3
DEMO_OAUTH_SETTINGS = {"OAUTH_REFRESH_WINDOW_MINUTES": "0"}
RECEIVED_PREFIX = "==> webhook received"


def say(line: str) -> None:
    """The demo's own narration: plain lines, so they stand out among the service's JSON logs."""
    print(line, flush=True)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class WebhookReceiver:
    """What an organization would run: accepts alert deliveries and shows them."""

    def __init__(self, port: int) -> None:
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.method != "POST":
            response = Response("POST alerts here\n", status=405)
            return response(environ, start_response)
        try:
            alert = json.loads(request.get_data())
            summary = f"{alert['type']} for {alert['org_slug']}/{alert['provider']}: {alert['message']}"
        except (ValueError, KeyError, TypeError):
            summary = f"a body that is not an alert ({len(request.get_data())} bytes)"
        say(f"{RECEIVED_PREFIX} at {request.path}: {summary}")
        say(
            f"    delivery {request.headers.get('X-Integrations-Delivery')}, "
            f"signature {request.headers.get('X-Integrations-Signature', 'missing')[:19]}... "
            "(verify it with the signing secret: shared.egress.webhooks.verify_signature)"
        )
        response = Response(json.dumps({"received": True}), mimetype="application/json")
        return response(environ, start_response)

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()


@dataclass
class Stage:
    """Everything ``make demo`` runs besides the service."""

    simulator: ProviderSimulator
    azure: AzureSimulator
    saas: SaasSimulator
    aws: AwsStandIn
    oauth: OAuthSimulator
    receiver: WebhookReceiver

    def service_env(self) -> dict[str, str]:
        """What the service and the admin CLI both need: where the providers are, and the demo-only settings."""
        return {
            **self.simulator.env(),
            **self.azure.env(),
            **self.saas.env(),
            **self.aws.env(),
            **self.oauth.env(),
            **DEMO_OAUTH_SETTINGS,
            "WEBHOOK_INSECURE_HOSTS": "127.0.0.1",
        }

    def stop(self) -> None:
        for part in (self.simulator, self.azure, self.saas, self.aws, self.oauth):
            part.stop()


def demo_env(service_url: str, stage: Stage, azure_setup: dict[str, Any], data_dir: Path) -> str:
    lines = [
        f"# Written by `make demo` for the README walkthrough. In a second terminal: . {data_dir / 'demo.env'}",
        f"export BASE={service_url}                # the service",
        f"export SIMULATOR={stage.simulator.url}         # the provider simulator (and its /_sim control API)",
        f"export WEBHOOK_URL={stage.receiver.url}/acme   # the receiver; make demo's terminal prints what it gets",
        f"export AWS_STAND_IN={stage.aws.url}   # the AWS stand-in; {ADMIN_PATH} plays the customer's console",
        f"export OAUTH_SIMULATOR={stage.oauth.url}   # the OAuth simulator (consent, tokens; /_sim/stats counts them)",
        "# The CLI reads the same settings as the service: same data, same provider URLs.",
        f"export INTEGRATIONS_DATA_DIR={shlex.quote(str(data_dir.resolve()))}",
        *(f"export {name}={shlex.quote(value)}" for name, value in stage.simulator.env().items()),
        *(f"export {name}={shlex.quote(value)}" for name, value in stage.azure.env().items()),
        *(f"export {name}={shlex.quote(value)}" for name, value in stage.saas.env().items()),
        "# AWS: the stand-in plays STS, S3 and the metadata server's ID token; no AWS key anywhere.",
        *(f"export {name}={shlex.quote(value)}" for name, value in stage.aws.env().items()),
        "# OAuth: the simulator's endpoints and its OAuth clients (made-up ids and secrets, the simulator's own;",
        "# a real app's come from Secret Manager in GCP and are never written to a file).",
        *(f"export {name}={shlex.quote(value)}" for name, value in stage.oauth.env().items()),
        f"# DEMO/TESTS ONLY: access tokens live {DEMO_ACCESS_TOKEN_SECONDS} s and are refreshed once expired "
        "(production: 10 minutes ahead).",
        *(f"export {name}={value}" for name, value in DEMO_OAUTH_SETTINGS.items()),
        "# The Azure walkthrough's setup body: the demo tenant's app, its secret and the subscription scope.",
        f"export AZURE_DEMO_SETUP={shlex.quote(json.dumps(azure_setup))}",
        "# DEMO/TESTS ONLY: plain http:// webhooks on loopback (production: https:// to a public host).",
        "export WEBHOOK_INSECURE_HOSTS=127.0.0.1",
    ]
    return "\n".join(lines) + "\n"


def start_stage(ports: dict[str, int]) -> Stage:
    started: list[Any] = []
    try:
        for part in (
            ProviderSimulator(ports["SIMULATOR_PORT"]),
            AzureSimulator(ports["AZURE_SIMULATOR_PORT"]),
            SaasSimulator(ports["SAAS_SIMULATOR_PORT"]),
            AwsStandIn(ports["AWS_SIMULATOR_PORT"]),
            OAuthSimulator(ports["OAUTH_SIMULATOR_PORT"]),
        ):
            started.append(part.start())
        receiver = WebhookReceiver(ports["RECEIVER_PORT"])
    except OSError:
        for part in started:
            part.stop()
        raise
    simulator, azure, saas, aws, oauth = started
    oauth.configure(access_token_seconds=DEMO_ACCESS_TOKEN_SECONDS)
    return Stage(simulator, azure, saas, aws, oauth, receiver)


def read_ports(environ: dict[str, str]) -> dict[str, int]:
    """Each port setting, a whole number up to 65535 (0: any free port, not for PORT); else ``ConfigurationError``."""
    ports = {}
    for name, default in DEFAULT_PORTS.items():
        raw = environ.get(name) or str(default)
        lowest = 1 if name == "PORT" else 0  # the service's address goes into demo.env: it must be known
        if not (raw.isascii() and raw.isdigit() and lowest <= int(raw) <= 65535):
            raise ConfigurationError(f"{name} must be a whole number from {lowest} to 65535, got {raw[:40]!r}")
        ports[name] = int(raw)
    return ports


def taken_ports(ports: dict[str, int]) -> list[str]:
    """The settings whose fixed port something else already listens on (0 means any free port: never taken)."""
    from shared.commands.local_server import listen

    taken = []
    for name, port in ports.items():
        if name == "PORT" or not port:
            continue  # the service's port is held by main() itself
        try:
            listen("127.0.0.1", port).close()
        except OSError:
            taken.append(f"{name}={port}")
    return taken


def _busy(names: list[str]) -> int:
    say(f"demo: cannot listen: {', '.join(names)} already in use. Another demo running? Choose ports, e.g.:")
    say("  make demo PORT=8011 SIMULATOR_PORT=9011 RECEIVER_PORT=9012 AZURE_SIMULATOR_PORT=9013 \\")
    say("            SAAS_SIMULATOR_PORT=9014")
    return EXIT_CANNOT_LISTEN


def main() -> int:
    # Settings and ports first: nothing is started, written or printed until they are known good.
    try:
        ports = read_ports(dict(os.environ))
        os.environ["PORT"] = str(ports["PORT"])
        settings = Settings.from_env()
    except ConfigurationError as error:
        return settings_error(str(error))
    try:
        service_socket = listen(settings.host, ports["PORT"])  # held from here on: nobody can take it meanwhile
    except OSError:
        return _busy([f"PORT={ports['PORT']}", *taken_ports(ports)])
    taken = taken_ports(ports)
    if taken:
        service_socket.close()
        return _busy(taken)
    try:
        stage = start_stage(ports)
    except OSError:  # taken in the instant since the check
        service_socket.close()
        return _busy(["a simulator port"])
    # What the service process needs: the simulators' URLs and (demo only) the local receiver.
    os.environ.update(stage.service_env())
    problem = configure_logs() or start_up_problem()
    if problem:
        stage.stop()
        service_socket.close()
        return settings_error(problem)
    server = bind(service_socket)
    stage.receiver.start()
    principal, scope = stage.azure.seed_demo()
    azure_setup = {"credentials": principal.credentials(), "config": {"scope": scope}}
    data_dir = settings.data_dir
    service_url = f"http://127.0.0.1:{ports['PORT']}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env_file = data_dir / "demo.env"
    env_file.write_text(demo_env(service_url, stage, azure_setup, data_dir))
    say(
        f"demo: provider simulator on {stage.simulator.url}"
        " (OpenAI, Anthropic, Gemini; markers in docs/walkthroughs/llm.md)"
    )
    say(f"demo: Azure simulator on {stage.azure.url} (a demo tenant whose app secret expires in 6 days)")
    say(f"demo: SaaS simulator on {stage.saas.url} (GitHub, Slack, Cursor, Vercel, Figma, Notion, Asana)")
    say(f"demo: AWS stand-in on {stage.aws.url} (STS, S3, the metadata server; the customer's side at {ADMIN_PATH})")
    say(
        f"demo: OAuth simulator on {stage.oauth.url} (Canva, GitHub App; "
        f"DEMO ONLY: access tokens live {DEMO_ACCESS_TOKEN_SECONDS} s)"
    )
    say(
        f"demo: webhook receiver on {stage.receiver.url}: every alert it receives is printed here "
        f"({RECEIVED_PREFIX} ...)"
    )
    say(f"demo: the service on {service_url}, data in {data_dir}; its JSON logs follow")
    say(
        f"demo: in a second terminal: . {env_file}   then the README walkthrough (and docs/walkthroughs/)."
        " Ctrl-C stops them all."
    )
    try:
        return serve(server)
    finally:
        stage.stop()


if __name__ == "__main__":
    sys.exit(main())
