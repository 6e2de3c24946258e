"""Every library the shipped code imports directly is pinned to one version in requirements.txt."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for path in [REPO / "main.py", *(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"__future__", "shared", "functions", "main"}


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        matched = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if matched:
            pins[matched[1].lower().replace("_", "-")] = matched[2]
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


def test_the_google_namespace_imports_are_pinned_too():
    """``google.auth``/``google.oauth2`` come from google-auth; the generated clients are test-only."""
    source = "\n".join(path.read_text() for path in (REPO / "shared").rglob("*.py"))
    namespaces = set(re.findall(r"(?:from|import) (google\.[a-z_0-9]+)", source))
    assert namespaces <= {"google.auth", "google.oauth2"}, namespaces
    assert "google-auth" in _pinned()
