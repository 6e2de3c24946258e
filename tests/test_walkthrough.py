"""The walkthroughs, run as written: the README's, then those of docs/walkthroughs/.

The commands are read from the Markdown files (so the two cannot drift) and run in a
fresh "checkout": a directory whose entries link to this repository's, except
``.data``, so the pages' relative paths (``.venv/bin/python``, ``.data/demo.env``)
work verbatim against a data directory of its own. Terminal 1's command
(``make demo``) runs in the background on free ports; terminal 2's commands run
in order in one bash, as a reader would paste them, and every answer is checked.
Last, the alert must have reached the demo's webhook receiver, which prints it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# Settings of the reader's shell that would leak into the walkthrough (demo.env sets what it needs).
ISOLATED_PREFIXES = ("INTEGRATIONS_", "PROVIDER_", "WEBHOOK_", "AZURE_", "GCP_", "AWS_", "OAUTH_")
STEP_MARK = re.compile(r"\n@@step (\d+) rc=(\d+)@@\n")


WALKTHROUGHS = REPO / "docs" / "walkthroughs"


def markdown_section(text: str, heading: str) -> str:
    """The lines from ``heading`` to the next heading of the same or a higher level (``#`` inside code blocks is
    a comment, not a heading)."""
    lines = text.splitlines(keepends=True)
    (start,) = [number for number, line in enumerate(lines) if line.startswith(heading)]
    level = len(heading) - len(heading.lstrip("#"))
    fenced = False
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "".join(lines[start:number])
    return "".join(lines[start:])


def walkthrough_blocks(heading: str = "## Walkthrough: from an org key", page: Path = README) -> list[list[str]]:
    """The ```sh blocks of the section of ``page`` under ``heading``, each as a list of commands."""
    section = markdown_section(page.read_text(), heading)
    return [commands(block) for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


AZURE = (WALKTHROUGHS / "azure.md", "## Walkthrough: an `active` Azure integration")
SAAS = (WALKTHROUGHS / "saas.md", "## Walkthrough: the catalog, toggles and API tokens")
AWS = (WALKTHROUGHS / "aws.md", "## Walkthrough: connecting AWS")
OAUTH = (WALKTHROUGHS / "oauth.md", "## Walkthrough: Canva (PKCE) and GitHub App")


def commands(block: str) -> list[str]:
    """One entry per command: continuation lines joined, a ``for ... done`` loop kept whole,
    comment-only and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", block)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    found: list[str] = []
    loop: list[str] = []
    for line in lines:
        if loop or line.startswith(("for ", "while ")):
            loop.append(line)
            if line == "done":
                found.append("\n".join(loop))
                loop = []
        else:
            found.append(line)
    assert not loop, f"a loop without done: {loop}"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def silent(answer: str) -> None:
    assert answer == "", answer


def _json(check: Callable[[dict[str, Any]], Any]) -> Callable[[str], None]:
    def verify(answer: str) -> None:
        body = json.loads(answer)
        assert check(body), json.dumps(body, indent=1)[:2000]

    return verify


def _pipelines_ready(body: dict[str, Any]) -> bool:
    pipelines = body["details"]["pipelines"]
    return bool(pipelines) and all(pipeline["ready"] for pipeline in pipelines.values())


# What each command of terminal 2 must answer, in the README's order: (a piece of the command, check).
EXPECTED: list[tuple[str, Callable[[str], None]]] = [
    (". .data/demo.env", silent),
    ("API=$BASE", silent),
    ("create-key --org acme", silent),
    ("/acme/openai/setup", _json(lambda a: a["success"] and a["integration"]["status"] == "pending")),
    ("/acme/openai/validate", _json(lambda a: a["status"] == "active" and _pipelines_ready(a))),
    ("/acme/anthropic/setup", _json(lambda a: a["integration"]["status"] == "pending")),
    (
        "/acme/anthropic/validate",
        _json(lambda a: a["success"] is False and a["status"] == "error" and "admin" in a["error"].lower()),
    ),
    ("$API/acme -H", _json(lambda a: a["count"] == 2)),
    ("$API/acme/openai -H", _json(lambda a: a["integration"]["status"] == "active")),
    ('"default_model"', _json(lambda a: a["integration"]["status"] == "pending")),
    ('"enabled": false', _json(lambda a: a["integration"]["status"] == "disabled")),
    ('"enabled": true', _json(lambda a: a["integration"]["status"] == "pending")),
    (
        "/acme/openai/rotate",
        _json(
            lambda a: (
                a["integration"]["status"] == "active"
                and a["integration"]["expires_at"].startswith("2035-01-31T00:00:00")
                and "expires_at kept" in a["message"]
            )
        ),
    ),
    ("/organizations/acme/webhook", _json(lambda a: a["signing_secret"].startswith("whsec_"))),
    ("/_sim/revoke", _json(lambda a: "revoked" in a)),
    ("create-key --org ops --admin", silent),
    ("/admin/revalidate", _json(lambda a: a["summary"]["checked"] == 0)),
    (
        "shared.cli revalidate",
        _json(
            lambda a: (
                (a["checked"], a["active"], a["error"], a["alerts"], a["alerts_delivered"]) == (2, 0, 2, 1, 1)
                and a["unreachable"] == 0
                and set(a["sent_to"]) == {"openai", "anthropic"}
            )
        ),
    ),
    (
        "/organizations/acme/alerts",
        _json(
            lambda a: (
                [(x["kind"], x["provider"], x["delivery_status"]) for x in a["alerts"]]
                == [("error", "openai", "delivered"), ("error", "anthropic", "no_webhook")]
            )
        ),
    ),
    ("-X DELETE $API/acme/openai", _json(lambda a: a["success"] is True)),
]


# docs/walkthroughs/azure.md, run next in the same terminal 2 (KEY, BASE and the webhook still set).
AZURE_EXPECTED: list[tuple[str, Callable[[str], None]]] = [
    ("API=$BASE/api/v1/integrations", silent),
    ('echo "$AZURE_DEMO_SETUP"', _json(lambda a: set(a["credentials"]) >= {"tenant_id", "client_id", "client_secret"})),
    ("/acme/azure/setup", _json(lambda a: a["integration"]["status"] == "pending")),
    (
        "/acme/azure/validate",
        _json(lambda a: a["status"] == "active" and a["integration"]["expires_at"] and "secret_expiry" in a["details"]),
    ),
    ("shared.cli revalidate", _json(lambda a: "azure" in a["sent_to"] and a["alerts_delivered"] >= 1)),
    (
        "/organizations/acme/alerts",
        _json(
            lambda a: (
                ("expiring", "azure", "delivered")
                in [(x["kind"], x["provider"], x["delivery_status"]) for x in a["alerts"]]
            )
        ),
    ),
    ('"tenant_id": "contoso"', _json(lambda a: a["success"] is False and a["details"]["problems"])),
]


def _catalog(check: Callable[[dict[str, dict[str, Any]]], Any]) -> Callable[[str], None]:
    return _json(lambda a: check({item["provider"]: item for item in a["providers"]}))


def _each_line_active(answer: str) -> None:
    answers = [json.loads(line) for line in answer.splitlines() if line.strip()]
    assert [a["status"] for a in answers] == ["active"] * 7, answer[:3000]


# docs/walkthroughs/saas.md, next in the same terminal 2.
SAAS_EXPECTED: list[tuple[str, Callable[[str], None]]] = [
    ("SUBS=$BASE", silent),
    ("API=$BASE", silent),
    ("curl -s $SUBS -H", _catalog(lambda c: c and not any(item["enabled"] for item in c.values()))),
    ("$SUBS/chatgpt_plus", _json(lambda a: a["provider"]["enabled"] is True)),
    ("$SUBS/slack", _json(lambda a: a["provider"]["enabled"] is True)),
    ("$SUBS/canva", _json(lambda a: a["provider"]["enabled"] is False)),
    *[
        (f"$API/{tool}/setup", _json(lambda a: a["integration"]["status"] == "pending"))
        for tool in ("github", "slack", "cursor", "vercel", "figma", "notion", "asana")
    ],
    ("for tool in", _each_line_active),
    ("-X DELETE $API/slack", _json(lambda a: a["success"] is True)),
    ("forbidden-DemoToken", _json(lambda a: a["integration"]["status"] == "pending")),
    ("$API/slack/validate", _json(lambda a: a["status"] == "error" and "scope" in json.dumps(a["details"]).lower())),
    ("$SUBS/slack -H", _json(lambda a: a["provider"]["enabled"] is False)),
    (
        "curl -s $SUBS -H",
        _catalog(
            lambda c: c["slack"].get("integration_status") == "error" and c["github"]["integration_status"] == "active"
        ),
    ),
]


def _aws_instructions(answer: dict[str, Any]) -> bool:
    instructions = answer["instructions"]
    (statement,) = instructions["trust_policy"]["Statement"]
    return bool(
        instructions["external_id"].startswith("pi-")
        and statement["Condition"]["StringEquals"]["sts:ExternalId"] == instructions["external_id"]
        and statement["Principal"]["AWS"] == instructions["platform_principal"]["role_arn"]
    )


def _aws_active(answer: dict[str, Any]) -> bool:
    capabilities = answer["details"]["capabilities"]
    return answer["status"] == "active" and all(check["passed"] for check in capabilities.values())


CUSTOMER_ROLE = "arn:aws:iam::222222222222:role/cost-export-reader"

# docs/walkthroughs/aws.md, next in the same terminal 2 (KEY and BASE still set).
AWS_EXPECTED: list[tuple[str, Callable[[str], None]]] = [
    ("API=$BASE/api/v1/integrations", silent),
    ("STANDIN=$AWS_STAND_IN", silent),
    ("setup-instructions?export_bucket", _json(_aws_instructions)),
    ("EXT=$(", silent),
    ('"external_id\\": \\"$EXT', _json(lambda a: a["role_arn"] == CUSTOMER_ROLE)),
    ("/acme/aws/setup", _json(lambda a: a["integration"]["status"] == "pending")),
    ("/acme/aws/validate", _json(_aws_active)),
    ('"allow_list": false', _json(lambda a: a["role_arn"] == CUSTOMER_ROLE)),
    (
        "/acme/aws/validate",
        _json(
            lambda a: (
                a["success"] is False
                and a["status"] == "error"
                and a["error"].startswith("Service account lacks required permissions: list_export refused")
                and "s3:ListBucket" in a["details"]["fix"]
            )
        ),
    ),
]


def _no_token(check: Callable[[dict[str, Any]], Any]) -> Callable[[str], None]:
    """An answer that satisfies ``check`` and carries no token of the simulator's (they start sim_at_/sim_rt_)."""

    def verify(answer: str) -> None:
        assert "sim_at_" not in answer and "sim_rt_" not in answer, answer
        _json(check)(answer)

    return verify


def _connected(provider: str) -> Callable[[str], None]:
    return _no_token(lambda a: (a["oauth"], a["provider"], a["status"]) == ("connected", provider, "active"))


def _refreshed_once(answer: dict[str, Any]) -> bool:
    calls = answer["token_calls"]
    return all(calls[p] == {"authorization_code": 1, "refresh_token": 1} for p in ("canva", "github_app"))


# docs/walkthroughs/oauth.md, last in the same terminal 2 (the webhook set in the README's walkthrough gets the alert).
OAUTH_EXPECTED: list[tuple[str, Callable[[str], None]]] = [
    ("API=$BASE/api/v1/integrations/acme", silent),
    ("AUTH=$(", silent),
    ("CALLBACK=$(", silent),
    ("CODE=$(", silent),
    (
        'curl -s "$CALLBACK"',
        _json(lambda a: a["oauth"] == "failed" and "already used" in a["error"] and a["provider"] == "canva"),
    ),
    ("$API/canva/oauth/complete", _connected("canva")),
    ("$API/canva/oauth/complete", _json(lambda a: a["success"] is False and "already used" in a["error"])),
    ("$API/canva -H", _no_token(lambda a: a["integration"]["status"] == "active")),
    ("AUTH=$(", silent),
    ("CODE=$(", silent),
    ("$API/github_app/oauth/complete", _connected("github_app")),
    ("sleep ", silent),
    (
        "shared.cli revalidate",
        _json(
            lambda a: (
                {"canva", "github_app"} <= set(a["sent_to"])
                and a["unreachable"] == 0
                and a["transient_failures"] == 0
                and a["alerts"] == 0
            )
        ),
    ),
    ("/_sim/stats", _json(_refreshed_once)),
    ("/_sim/revoke", _json(lambda a: a["ok"] is True)),
    ("sleep ", silent),
    (
        "/github_app/validate",
        _json(lambda a: a["status"] == "error" and "re-authorize" in a["details"]["message"] and not a["success"]),
    ),
    (
        "/organizations/acme/alerts",
        _json(
            lambda a: (
                (a["alerts"][0]["kind"], a["alerts"][0]["provider"], a["alerts"][0]["delivery_status"])
                == ("error", "github_app", "delivered")
            )
        ),
    ),
]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """This repository seen through links, minus its state: a fresh clone without the install time."""
    root = tmp_path / "checkout"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name != ".data":
            (root / entry.name).symlink_to(entry)
    return root


@pytest.fixture
def demo(checkout: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    (terminal_1,) = walkthrough_blocks()[0]
    assert terminal_1 == "make demo", "terminal 1 of the walkthrough is `make demo`"
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_PREFIXES)},
        "PORT": str(port),
        "SIMULATOR_PORT": str(_free_port()),
        "RECEIVER_PORT": str(_free_port()),
        "AZURE_SIMULATOR_PORT": str(_free_port()),
        "SAAS_SIMULATOR_PORT": str(_free_port()),
    }
    log_path = tmp_path / "terminal-1.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", terminal_1],
            cwd=checkout,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"make demo exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"make demo did not answer in 60 s:\n{log_path.read_text()[-3000:]}"
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert (checkout / ".data" / "demo.env").exists()
        yield process, log_path, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def test_the_walkthroughs_work_verbatim(checkout, demo):
    if shutil.which("curl") is None:
        pytest.fail("the walkthrough uses curl; install it")
    _, terminal_1_log, _ = demo
    (azure,) = walkthrough_blocks(AZURE[1], AZURE[0])
    (saas,) = walkthrough_blocks(SAAS[1], SAAS[0])
    (aws,) = walkthrough_blocks(AWS[1], AWS[0])
    (oauth,) = walkthrough_blocks(OAUTH[1], OAUTH[0])
    terminal_2 = walkthrough_blocks()[1] + azure + saas + aws + oauth
    expected = EXPECTED + AZURE_EXPECTED + SAAS_EXPECTED + AWS_EXPECTED + OAUTH_EXPECTED
    assert len(terminal_2) == len(expected), "a walkthrough changed: update EXPECTED to match"
    for command, (piece, _) in zip(terminal_2, expected, strict=True):
        assert piece in command, f"expected a command with {piece!r}, the walkthrough has: {command}"

    script = "".join(
        f"{command}\n__rc=$?; printf '\\n@@step {number} rc=%s@@\\n' \"$__rc\"\n"
        for number, command in enumerate(terminal_2)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_PREFIXES)}
    done = subprocess.run(["bash"], input=script, cwd=checkout, env=env, capture_output=True, text=True, timeout=120)

    parts = STEP_MARK.split("\n" + done.stdout)
    answers = parts[0::3][: len(terminal_2)]
    codes = parts[2::3]
    assert len(codes) == len(terminal_2), f"not every command ran:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for number, (command, answer, code) in enumerate(zip(terminal_2, answers, codes, strict=True)):
        assert code == "0", f"step {number} `{command}` exited {code}:\n{done.stderr[-3000:]}"
        expected[number][1](answer.strip())

    # The alerts arrived where the reader can see them: the receiver's lines in terminal 1.
    terminal_1 = terminal_1_log.read_text()
    assert "==> webhook received at /acme: integration.error for acme/openai" in terminal_1, terminal_1[-3000:]
    assert "==> webhook received at /acme: integration.expiring for acme/azure" in terminal_1, terminal_1[-3000:]
    assert "==> webhook received at /acme: integration.error for acme/github_app" in terminal_1, terminal_1[-3000:]
