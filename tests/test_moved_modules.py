"""Old module paths keep working (``MOVED`` in shared/__init__.py): an old path imports as the very
module that took it over, with a DeprecationWarning at the importing line; every public name a module
of shared/ defined before the packages were formed is still importable from its old path; the old
command names still run, without a warning; and the repository's own code uses the new paths only."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import shared
from shared import MOVED, MOVED_NAMES

REPO = Path(__file__).resolve().parent.parent
# Every public name each module of shared/ defined (def, class, assignment) before the move.
NAMES_BEFORE = json.loads((REPO / "tests" / "fixtures" / "module_names_before_the_move.json").read_text())
# Names that are gone on purpose, and why.
RETIRED = {
    # Each format module used to import its live check; aws_live imports aws, so that made a circle.
    # The dispatch (shared.validators.code_validators) names the live checks now.
    "shared.validators.aws": {"validate_role"},
    "shared.validators.azure": {"validate_service_principal"},
    "shared.validators.gcp": {"validate_service_account"},
}


def import_old(old: str) -> object:
    """``old`` imported afresh (as a first import would), its warnings recorded."""
    sys.modules.pop(old, None)
    return importlib.import_module(old)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_itself_and_warns(old):
    new = importlib.import_module(MOVED[old])
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        assert import_old(old) is new
    assert new.__spec__ is not None and new.__spec__.name == MOVED[old]  # the module keeps its own spec


@pytest.mark.parametrize("old", sorted(MOVED_NAMES))
def test_a_name_that_moved_elsewhere_is_the_same_object_through_the_old_path(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = import_old(old)
    for name, home in MOVED_NAMES[old].items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name), f"{old}.{name}"


@pytest.mark.parametrize("old", sorted(NAMES_BEFORE))
def test_every_name_a_module_defined_before_the_move_still_imports_from_its_old_path(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    missing = [name for name in NAMES_BEFORE[old] if not hasattr(module, name) and name not in RETIRED.get(old, ())]
    assert not missing, f"{old} no longer has {missing}"


def test_the_warning_points_at_the_line_that_imported_the_old_path():
    sys.modules.pop("shared.service", None)
    with pytest.warns(DeprecationWarning) as record:
        exec(compile("\n\nimport shared.service\n", "old_importer.py", "exec"), {})
    assert (record[0].filename, record[0].lineno) == ("old_importer.py", 3)


def test_patching_through_an_old_path_patches_the_new_module():
    from unittest.mock import patch

    from shared.egress import http_client

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with patch("shared.http_client.MAX_BODY_BYTES", 7):
            assert http_client.MAX_BODY_BYTES == 7
    assert http_client.MAX_BODY_BYTES != 7


@pytest.mark.parametrize(
    "command",
    [["shared.cli", "--help"], ["shared.local_server", "--help"]],
    ids=lambda command: command[0],
)
def test_the_old_command_names_run_without_a_warning(command, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"), "PORT": "0"}
    if command[0] == "shared.local_server":  # it takes no arguments: a bad PORT is its quickest clean exit
        command, expected = ["shared.local_server"], 2
    else:
        expected = 0
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-m", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == expected, result.stderr
    assert "Deprecation" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_repository_imports_no_old_path():
    """The aliases are for code outside the repository; inside it, every import names the new module."""
    roots = ["shared", "functions", "tests", "bench", "examples"]
    files = [REPO / "main.py", *(path for root in roots for path in (REPO / root).rglob("*.py"))]
    old_uses = [
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        if path != Path(__file__).resolve()
        for name in sorted(_imported_modules(path) & set(MOVED))
    ]
    assert not old_uses, old_uses


def test_the_finder_is_installed_once():
    importlib.reload(shared)
    assert sum(type(finder).__name__ == "MovedModules" for finder in sys.meta_path) == 1
