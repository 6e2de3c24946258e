"""The admin CLI's fleet commands, run as an operator would (``shared.commands.cli.main``
with the environment the service reads): import from JSON and CSV, key status,
rotate, rewrap; the progress bar appears on a terminal only."""

from __future__ import annotations

import io
import json

import pytest

from shared.commands import cli
from shared.commands.cli import ProgressBar
from tests.conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY


@pytest.fixture
def run_cli(settings, monkeypatch, capsys):
    monkeypatch.setenv("INTEGRATIONS_DATA_DIR", str(settings.data_dir))
    for provider, url in settings.provider_base_urls.items():
        monkeypatch.setenv(f"PROVIDER_{provider.upper()}_BASE_URL", url)

    def run(*argv: str) -> tuple[int, dict, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, json.loads(captured.out or captured.err), captured.err

    return run


def test_import_from_json_then_csv_in_calls_of_a_hundred(run_cli, tmp_path):
    items = {
        "items": [
            {"provider": "openai", "credentials": {"api_key": OPENAI_KEY}},
            {"provider": "nosuch", "credentials": {"api_key": "x"}},
        ]
    }
    (tmp_path / "items.json").write_text(json.dumps(items))
    code, report, err = run_cli("import", "--org", "acme", "--file", str(tmp_path / "items.json"), "--validate")
    assert code == 0 and err == ""  # not a terminal: no progress bar
    assert [(r["result"], r.get("status")) for r in report["results"]] == [("created", "active"), ("invalid", None)]

    rows = ["provider,credential,expires_at,config.project_id"]
    rows += ["openai," + OPENAI_KEY + ",,", "anthropic," + ANTHROPIC_KEY + ",2031-01-01T00:00:00Z,"]
    rows += ["gemini," + GEMINI_KEY + ",,acme-prod"]
    rows += [f"nosuch{n},tok,," for n in range(147)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    code, report, _ = run_cli("import", "--org", "acme", "--file", str(tmp_path / "items.csv"))
    assert code == 0 and len(report["results"]) == 150
    assert [r["index"] for r in report["results"]] == list(range(150))
    assert [r["result"] for r in report["results"][:3]] == ["exists", "created", "created"]
    assert report["summary"] == {"created": 2, "exists": 1, "invalid": 147, "failed": 0, "would_create": 0}

    code, report, _ = run_cli("import", "--org", "acme", "--file", str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in report["error"]


SECRET_IN_FILE = "sk-CANARY-5e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b"


def bad_import_files(directory) -> dict[str, tuple[str, str]]:
    """name -> (file, what the one-line error must say)."""
    files = {
        "missing": ("nope.json", "cannot read"),
        "a directory": ("adir.json", "cannot read"),
        "oversized CSV field": ("big.csv", "field larger than field limit"),
        "invalid UTF-8 CSV": ("latin1.csv", "not valid UTF-8"),
        "invalid UTF-8 JSON": ("latin1.json", "not valid UTF-8"),
        "deep JSON": ("deep.json", "nests deeper than"),
        "broken JSON": ("broken.json", "is not valid JSON"),
        "not a list": ("object.json", "must hold a list of items"),
        "too large": ("large.json", "larger than"),
    }
    (directory / "adir.json").mkdir()
    (directory / "big.csv").write_text("provider,credential\nopenai," + "x" * 200_000 + "\n")
    (directory / "latin1.csv").write_bytes(("provider,credential\nopenai,caf\xe9" + SECRET_IN_FILE).encode("latin-1"))
    (directory / "latin1.json").write_bytes(b'[{"provider": "caf\xe9", "x": "' + SECRET_IN_FILE.encode() + b'"}]')
    (directory / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (directory / "broken.json").write_text('[{"provider": "openai", "credentials": {"api_key": "' + SECRET_IN_FILE)
    (directory / "object.json").write_text(json.dumps({"provider": "openai", "secret": SECRET_IN_FILE}))
    (directory / "large.json").write_text(json.dumps([{"provider": "openai", "pad": "x" * 2000}]))
    return files


def test_bad_import_files_and_orgs_are_one_line_errors(run_cli, tmp_path, monkeypatch, settings):
    for case, (name, says) in bad_import_files(tmp_path).items():
        if case == "too large":
            monkeypatch.setattr(cli, "MAX_IMPORT_FILE_BYTES", 1024)  # without writing 64 MiB
        code, report, err = run_cli("import", "--org", "acme", "--file", str(tmp_path / name))
        assert code == 2 and says in report["error"], (case, report)
        assert len(err.strip().splitlines()) == 1 and SECRET_IN_FILE not in err, case
    (tmp_path / "good.json").write_text(json.dumps([{"provider": "openai", "credentials": {"api_key": OPENAI_KEY}}]))
    for org in ("Acme Corp", "a", "-acme", "acme/../globex", "x" * 64):
        code, report, _ = run_cli("import", f"--org={org}", "--file", str(tmp_path / "good.json"))
        assert code == 2 and report["error"].startswith("Organization slug must be"), org
    from tests.conftest import make_service

    assert make_service(settings).adapters.store.list_integrations("acme") == []


def test_a_bad_import_file_exits_2_without_a_traceback_in_a_real_process(settings, tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    env = {**os.environ, "INTEGRATIONS_DATA_DIR": str(settings.data_dir)}
    for arguments in (["--org", "acme", "--file", str(tmp_path / "deep.json")], ["--org", "Bad!", "--file", "x.csv"]):
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "import", *arguments],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and json.loads(done.stderr)["error"]


def test_key_status_rotate_and_rewrap(run_cli, tmp_path):
    (tmp_path / "items.json").write_text(json.dumps([{"provider": "openai", "credentials": {"api_key": OPENAI_KEY}}]))
    run_cli("import", "--org", "acme", "--file", str(tmp_path / "items.json"))
    code, status, _ = run_cli("key-status")
    assert code == 0 and status["primary_version"] == "1" and status["on_primary"] == 1
    code, rotated, _ = run_cli("rotate-key")
    assert rotated == {"previous_version": "1", "primary_version": "2"}
    code, status, _ = run_cli("key-status")
    assert [(v["version"], v["credentials"], v["unused"]) for v in status["versions"]] == [
        ("1", 1, False),
        ("2", 0, True),
    ]
    code, rewrapped, _ = run_cli("rewrap", "--batch-size", "10")
    assert rewrapped["summary"]["rewrapped"] == 1 and rewrapped["keys"]["share_on_primary"] == 1.0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only():
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(stream, total=150, width=10)
        bar.offset, bar.chunk = 100, 50
        bar.update("encrypted", 25, 50)
        bar.close()
    assert terminal.getvalue() == "\rencrypted  [########..] 125/150\n"
    assert pipe.getvalue() == ""
