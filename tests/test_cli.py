"""The admin CLI as an operator runs it: a subprocess on a data dir, its output and its exit code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shared.app.wiring import build_service
from shared.common.config import Settings
from shared.domain.caller import Caller
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY

REPO = Path(__file__).resolve().parent.parent


def closed_port_url() -> str:
    """A loopback address nobody listens on: connecting fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def cli(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli_env(tmp_path, simulator) -> dict[str, str]:
    """Two integrations (OpenAI, Anthropic; admin keys) on a fresh data dir; providers via the simulator."""
    simulator.reset()
    env = {
        **os.environ,
        "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"),
        "REVALIDATION_MIN_INTERVAL_MINUTES": "0",
        "VALIDATION_MAX_ATTEMPTS": "1",
        **simulator.env(),
    }
    env.pop("INTEGRATIONS_SECRET_API_KEY_PEPPER", None)
    service = build_service(Settings.from_env(env))
    caller = Caller(key_id="test", org_slug="acme", is_admin=False, request_id="test")
    service.setup(caller, "openai", {"api_key": OPENAI_KEY}, {}, None)
    service.setup(caller, "anthropic", {"api_key": ANTHROPIC_KEY}, {}, None)
    return env


def test_revalidate_through_the_simulator_exits_zero(cli_env):
    done = cli(cli_env, "revalidate")

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["checked"], summary["active"], summary["transient_failures"], summary["unreachable"]) == (
        2,
        2,
        0,
        0,
    )
    assert summary["sent_to"] == {
        "anthropic": cli_env["PROVIDER_ANTHROPIC_BASE_URL"],
        "openai": cli_env["PROVIDER_OPENAI_BASE_URL"],
    }


def test_revalidate_counts_a_provider_it_could_not_reach_and_says_where_it_tried(cli_env):
    unreachable = closed_port_url() + "/anthropic"

    done = cli({**cli_env, "PROVIDER_ANTHROPIC_BASE_URL": unreachable}, "revalidate")

    assert done.returncode == 0, done.stderr  # one provider answered: a partial run, not a dead one
    summary = json.loads(done.stdout)
    assert (summary["checked"], summary["provider_checks"]) == (2, 2)
    assert (summary["transient_failures"], summary["unreachable"]) == (1, 1)
    assert summary["sent_to"]["anthropic"] == unreachable


def test_revalidate_exits_one_when_every_check_failed_to_connect(cli_env):
    nowhere = closed_port_url()
    env = {**cli_env, "PROVIDER_OPENAI_BASE_URL": nowhere + "/openai", "PROVIDER_ANTHROPIC_BASE_URL": nowhere + "/a"}

    done = cli(env, "revalidate")

    assert done.returncode == 1
    summary = json.loads(done.stdout)  # the summary is still printed, so the run can be inspected
    assert summary["checked"] == summary["unreachable"] == summary["transient_failures"] == 2
    error = json.loads(done.stderr)["error"]
    assert "every check failed to connect (2 of 2)" in error
    assert f"openai at {nowhere}/openai" in error and "PROVIDER_<ID>_BASE_URL" in error


def test_nothing_to_check_is_not_a_failure(tmp_path):
    env = {**os.environ, "INTEGRATIONS_DATA_DIR": str(tmp_path / "data")}
    done = cli(env, "revalidate")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["provider_checks"] == 0


def test_bad_arguments_and_refusals_exit_two(tmp_path):
    env = {**os.environ, "INTEGRATIONS_DATA_DIR": str(tmp_path / "data")}
    assert cli(env, "revoke-key", "no-such-key").returncode == 2
    assert cli(env, "no-such-command").returncode == 2


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """`shared.cli list-keys | head`: the pipe closes before the CLI writes; it stops quietly."""
    env = {**os.environ, "INTEGRATIONS_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "list-keys"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first byte is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert stderr == ""
