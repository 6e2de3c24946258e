"""The documentation holds together: the README stays a short guide, every relative link in README.md and
docs/ leads to a file of this repository (and an ``#anchor`` to a heading of it), every setting the code
reads is documented, and no file of the repository names a document outside it or an issue number."""

from __future__ import annotations

import ast
import re
import subprocess
import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

README_MAX_BYTES = 20_000
# Inline links and images: [text](target) / ![alt](target "title"); reference definitions: [label]: target.
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...
# Files the repository must not lean on: the team's reference folder and its documents, and issues of a
# tracker a clone does not have, by number or without one (any case). Spelled in pieces so this file does
# not match itself.
OUTSIDE = re.compile(
    "|".join(
        (
            r"\.\./" + "shared/",
            "/wo" + "rk/",
            r"\b(?:ARCHITECTURE|EMULATORS|PROVIDERS|STYLE)" + r"\.md\b",
            r"(?i:\bissue" + r"[ -]?#?[0-9]+\b)",
            # An issue named without its number is as far out of a clone's reach.
            r"(?i:\b(?:the|this|that) issue" + r"(?:'s|s)?\b)",
        )
    )
)
TEXT_SUFFIXES = {
    *(".md", ".py", ".ts", ".mjs", ".js", ".json", ".yml", ".yaml", ".tf", ".tftpl", ".txt", ".toml"),
    *(".css", ".html", ".sh"),
}


def without_code(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans (a link there is an example, not a link)."""
    text = re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.M | re.S)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)


def headings(text: str) -> list[str]:
    """The ATX headings of a page, fenced code left out (a shell comment there is no heading)."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            found.append(match.group(1))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = unicodedata.normalize("NFC", text.replace("`", "")).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """Every anchor a page offers: each heading's slug, a repeated one suffixed -1, -2, ... as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(page.read_text()):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(page: Path) -> list[str]:
    text = without_code(page.read_text())
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def source_files() -> list[Path]:
    """The text files a clone holds: tracked, or new and not ignored (no venv, cache, build output or local state)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    paths = [REPO / name for name in listed.split("\0") if name]
    # Makefile, .gitignore, .ci/run, ...: files without a suffix are text too.
    return [path for path in paths if path.is_file() and (path.suffix in TEXT_SUFFIXES or not path.suffix)]


def test_the_readme_is_a_short_guide():
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {README_MAX_BYTES})"


def test_every_doc_page_is_linked_from_the_readme_or_another_page():
    linked = set()
    for page in PAGES:
        for target in links(page):
            if not EXTERNAL.match(target) and not target.startswith("#"):
                path = (page.parent / unquote(target.split("#", 1)[0])).resolve()
                linked.add(path / "README.md" if path.is_dir() else path)
    orphans = [str(page.relative_to(REPO)) for page in PAGES[1:] if page.resolve() not in linked]
    assert not orphans, f"pages no other page links to: {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(page):
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
        if not destination.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with that anchor in {destination.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_no_file_names_a_document_outside_the_repository_or_an_issue_number():
    found = []
    for path in source_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if match := OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {match.group(0)!r}")
    assert not found, "\n".join(found)


def environment_variables_read_by_the_code() -> set[str]:
    """Every environment variable name the service reads by name: ``environ.get(NAME, ...)``,
    ``os.environ[NAME]`` and the settings helpers' ``helper(environ, NAME, ...)``, where NAME is a string
    literal or a module constant holding one."""
    names = set()
    for path in [REPO / "main.py", *(REPO / "shared").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            named = None
            if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
                named = node.slice
            elif isinstance(node, ast.Call) and node.args:
                function = node.func
                if isinstance(function, ast.Attribute) and function.attr == "get":
                    if ast.unparse(function.value).endswith("environ"):
                        named = node.args[0]
                elif isinstance(node.args[0], ast.Name) and node.args[0].id == "environ" and len(node.args) > 1:
                    named = node.args[1]
            if isinstance(named, ast.Name):
                named = ast.Constant(constants.get(named.id))
            if isinstance(named, ast.Constant) and isinstance(named.value, str):
                names.add(named.value)
    return names


def test_every_setting_the_code_reads_is_documented():
    names = environment_variables_read_by_the_code()
    assert {"INTEGRATIONS_BACKEND", "PORT", "LOG_LEVEL", "GCE_METADATA_HOST", "AZURE_CA_BUNDLE"} <= names, names
    documented = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in documented)
    assert not missing, f"docs/configuration.md does not describe {missing}"


def test_every_source_file_of_the_typescript_client_that_its_comments_and_docs_name_exists():
    """Its comments and pages name its files relative to clients/typescript (``test/spec-types.ts``); a file
    renamed or gone leaves a pointer a reader cannot follow."""
    package = REPO / "clients" / "typescript"
    named = re.compile(r"(?<![\w/.])((?:src|test|console|scripts)/[\w./-]+\.(?:ts|mjs|css|html))\b")
    readers = [*package.glob("*.json"), *(REPO / "docs").rglob("*.md")]
    readers += [path for folder in ("src", "console", "test", "scripts") for path in (package / folder).rglob("*.*")]
    missing = sorted(
        f"{path.relative_to(REPO)}: {name}"
        for path in readers
        if "generated" not in path.parts
        for name in named.findall(path.read_text())
        if not (package / name).exists()
    )
    assert not missing, missing
