"""Settings errors at start-up, as a newcomer meets them: `make run` (shared.local_server), the CLI
and `make demo` each answer a bad PORT or INTEGRATIONS_DATA_DIR with one JSON line on stderr and exit
code 2, never a traceback; `make demo` checks its ports before it writes or prints anything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "make run": ["-m", "shared.local_server"],
    "cli": ["-m", "shared.cli", "list-keys"],
    "make demo": ["-m", "tests.demo"],
}


def run(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PROVIDER_", "OAUTH_"))}
    env.pop("INTEGRATIONS_SECRET_API_KEY_PEPPER", None)
    return {**env, "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"), "PORT": "1"}


def _bad_settings(tmp_path: Path) -> dict[str, dict[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    return {
        "port not a number": {"PORT": "80a"},
        "port out of range": {"PORT": "70000"},
        "data dir is a file": {"INTEGRATIONS_DATA_DIR": str(a_file)},
        "data dir under a file": {"INTEGRATIONS_DATA_DIR": str(a_file / "data")},
        # Not finite: a whole-number setting would crash on it, a deadline would never pass.
        "count too large for a number": {"REWRAP_BATCH_SIZE": "1e400"},
        "deadline not a number": {"VALIDATION_DEADLINE_SECONDS": "nan"},
        "timeout infinite": {"WEBHOOK_TIMEOUT_SECONDS": "inf"},
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_settings_are_one_line_and_exit_2(command, base_env, tmp_path):
    for case, change in _bad_settings(tmp_path).items():
        done = run(COMMANDS[command], {**base_env, **change})
        assert done.returncode == 2, (command, case, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, (command, case)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (command, case, done.stderr)
        error = json.loads(lines[0])["error"]
        assert next(iter(change)) in error, (command, case, error)  # names the setting
        assert done.stdout == "", (command, case)  # nothing started, nothing printed
    assert not (tmp_path / "data").exists()  # and nothing written


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.parametrize("taken", ["PORT", "SIMULATOR_PORT", "RECEIVER_PORT"])
def test_demo_checks_its_ports_before_it_writes_or_prints_anything(taken, base_env, tmp_path):
    names = ["PORT", "SIMULATOR_PORT", "RECEIVER_PORT", "AZURE_SIMULATOR_PORT", "SAAS_SIMULATOR_PORT"]
    ports = dict(zip(names, map(str, _free_ports(len(names))), strict=True))
    with socket.socket() as holder:  # someone else listens on one of them
        holder.bind(("127.0.0.1", int(ports[taken])))
        holder.listen()
        done = run(COMMANDS["make demo"], {**base_env, **ports})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    first, *_ = done.stdout.splitlines()
    assert first.startswith("demo: cannot listen: ") and f"{taken}={ports[taken]}" in first
    assert "simulator on" not in done.stdout and "the service on" not in done.stdout
    assert not (tmp_path / "data").exists()  # no demo.env, no state
