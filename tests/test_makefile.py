"""The Makefile a newcomer meets first: help by default, the Python version guard, make reset.

The guard is tried with a fake old interpreter: this very Python, told by a
``sitecustomize`` on its path that it is 3.10.14 (``sys.version_info`` and
``sys.version``), which is all the guard can see of any interpreter. Installs are
skipped (``PIP_INSTALL=true``): what is under test is which venv gets built.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SITECUSTOMIZE = """
import sys
sys.version_info = (3, 10, 14, "final", 0)
sys.version = "3.10.14 (pretending) [test]"
"""


@pytest.fixture
def old_python(tmp_path: Path) -> Path:
    """An executable that runs like Python 3.10.14 as far as version checks go."""
    site = tmp_path / "pretend-310"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    script = tmp_path / "python3.10"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def make(*arguments: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_bare_make_lists_the_targets_and_builds_nothing(tmp_path):
    done = make(f"VENV={tmp_path / 'venv'}")
    assert done.returncode == 0, done.stderr
    for target in ("run", "test", "demo", "reset", "bench", "clean"):
        assert f"make {target}" in done.stdout
    assert not (tmp_path / "venv").exists()


def test_the_readme_names_exactly_two_set_up_commands():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Set-up") : text.index("\n## ", text.index("## Set-up") + 1)]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make run", "make test"]


def test_an_old_python_is_refused_with_a_clear_message(tmp_path, old_python):
    venv = tmp_path / "venv"

    done = make("run", f"VENV={venv}", f"PYTHON={old_python}", "PIP_INSTALL=true")

    assert done.returncode != 0
    assert f"{old_python} is Python 3.10.14; this project needs Python 3.11 or newer" in done.stderr
    assert "make run PYTHON=python3.11" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not venv.exists(), "nothing is built with an interpreter that is too old"


def test_a_venv_an_old_python_built_is_rebuilt(tmp_path, old_python):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(old_python)
    (venv / ".runtime").touch()  # newer than requirements.txt: only the version makes it stale

    done = make(str(venv / ".runtime"), f"VENV={venv}", f"PYTHON={sys.executable}", "PIP_INSTALL=true")

    assert done.returncode == 0, done.stderr
    assert f"{venv} was built by Python 3.10.14: rebuilding it" in done.stdout
    rebuilt = subprocess.run(
        [venv / "bin" / "python", "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rebuilt.stdout.strip() == "True"
    again = make(str(venv / ".runtime"), f"VENV={venv}", f"PYTHON={sys.executable}", "PIP_INSTALL=true")
    assert again.returncode == 0 and "rebuilding" not in again.stdout and "creating" not in again.stdout


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    (data / "integrations.sqlite3").write_bytes(b"")
    return data


def test_reset_asks_first_and_keeps_the_data_unless_told_yes(data_dir):
    env = {"INTEGRATIONS_DATA_DIR": str(data_dir)}

    kept = make("reset", stdin="n\n", env=env)
    assert kept.returncode != 0 and "for good? [y/N]" in kept.stdout and "kept" in kept.stdout
    assert data_dir.exists()
    no_answer = make("reset", stdin="", env=env)  # no terminal, no FORCE: nothing is deleted
    assert no_answer.returncode != 0 and data_dir.exists()

    deleted = make("reset", stdin="y\n", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert not data_dir.exists()
    assert make("reset", env=env).returncode == 0  # nothing left to reset is fine


def test_reset_with_force_does_not_ask(data_dir):
    done = make("reset", "FORCE=1", env={"INTEGRATIONS_DATA_DIR": str(data_dir)})
    assert done.returncode == 0 and "[y/N]" not in done.stdout
    assert not data_dir.exists()


def test_reset_refuses_a_directory_that_is_not_the_services(tmp_path):
    elsewhere = tmp_path / "documents"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("keep me")

    done = make("reset", "FORCE=1", env={"INTEGRATIONS_DATA_DIR": str(elsewhere)})

    assert done.returncode != 0 and "does not look like the service's data directory" in done.stderr
    assert (elsewhere / "thesis.tex").exists()


def test_npm_test_on_a_fresh_clone_builds_what_it_runs():
    """``npm ci && npm test`` in clients/typescript, as a frontend engineer runs it, must not meet a missing
    ``dist/``: the tests run compiled, so npm's ``pretest`` builds them first. ``make test`` has just built
    (its ``console`` target), so it skips that second build with ``--ignore-scripts``, which npm applies to
    pre/post scripts only, never to the named one."""
    package = json.loads((REPO / "clients" / "typescript" / "package.json").read_text())
    scripts = package["scripts"]
    assert "dist/" in scripts["test"]
    assert scripts.get("pretest") in ("npm run build", "npm run --silent build", scripts["build"]), scripts
    recipe = re.search(r"^test:[^\n]*\n((?:\t[^\n]*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe and "console" in recipe.group(0).splitlines()[0]
    assert "npm test --ignore-scripts" in recipe.group(1)
