"""The admin CLI's fleet commands, run as an operator would (``shared.cli.main``
with the environment the service reads): import from JSON and CSV, key status,
rotate, rewrap; the progress bar appears on a terminal only."""

from __future__ import annotations

import io
import json

import pytest

from shared import cli
from shared.cli import ProgressBar
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
