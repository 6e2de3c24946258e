"""Every library the shipped code imports directly is pinned to one version in requirements.txt."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


SHIPPED = ("shared", "functions")
TOOLING = ("tests", "bench", "examples")


def _imported_top_level_modules(folders: tuple[str, ...] = SHIPPED) -> set[str]:
    modules: set[str] = set()
    files = [REPO / "main.py"] if folders == SHIPPED else []
    for path in [*files, *(path for folder in folders for path in (REPO / folder).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"__future__", "shared", "functions", "main", *TOOLING}


def _pinned(*files: str) -> dict[str, str]:
    pins = {}
    for name in files or ("requirements.txt",):
        for line in (REPO / name).read_text().splitlines():
            matched = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line.strip())
            if matched:
                pins[matched[1].lower().replace("_", "-")] = matched[3]
    return pins


def test_every_directly_imported_library_is_pinned():
    distributions = packages_distributions()
    pins = _pinned()
    imported = _imported_top_level_modules()
    assert {"urllib3", "botocore", "werkzeug", "msal"} <= imported  # the scan sees what it should
    unpinned = {}
    for module in sorted(imported):
        names = {name.lower().replace("_", "-") for name in distributions.get(module, [])}
        if module == "google":  # a namespace: which google-* distribution depends on the submodule
            continue
        assert names, f"{module} is imported but no installed distribution provides it"
        if not names & set(pins):
            unpinned[module] = sorted(names)
    assert unpinned == {}, "imported but not pinned with == in requirements.txt"


REQUIREMENT_FILES = ("requirements.txt", "requirements-demo.txt", "requirements-dev.txt")


def test_every_requirement_line_is_pinned():
    """A requirement without ``==`` installs whatever is newest the day it runs."""
    for name in REQUIREMENT_FILES:
        for line in (REPO / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r ")):
                assert re.match(r"^[A-Za-z0-9_.-]+(\[[^\]]*\])?==\S+$", line), f"{name}: {line!r} is not pinned"


def test_every_library_the_tests_benches_and_examples_import_is_pinned():
    distributions = packages_distributions()
    pins = _pinned(*REQUIREMENT_FILES)
    unpinned = {}
    for module in sorted(_imported_top_level_modules(TOOLING)):
        names = {name.lower().replace("_", "-") for name in distributions.get(module, [])}
        if module == "google":
            continue
        assert names, f"{module} is imported but no installed distribution provides it"
        if not names & set(pins):
            unpinned[module] = sorted(names)
    assert unpinned == {}, "imported but not pinned with == in a requirements file"


def test_the_google_namespace_imports_are_pinned_too():
    """``google.auth``/``google.oauth2`` come from google-auth; the generated clients are test-only."""
    source = "\n".join(path.read_text() for path in (REPO / "shared").rglob("*.py"))
    namespaces = set(re.findall(r"(?:from|import) (google\.[a-z_0-9]+)", source))
    assert namespaces <= {"google.auth", "google.oauth2"}, namespaces
    assert "google-auth" in _pinned()
