"""cloudbuild.yaml checked against the repository.

Each step must run something the repository has (a Makefile target, a
directory, a Terraform variable declared in terraform/variables.tf), the
steps must run in the order install -> lint -> test -> terraform init/plan/apply,
every substitution used must be declared (and every declared one used), and
nothing in the file may look like a secret.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import yaml
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parent.parent
CLOUDBUILD = ROOT / "cloudbuild.yaml"
MAKEFILE = ROOT / "Makefile"

STEP_ORDER = ["install", "lint", "test", "terraform-init", "terraform-plan", "terraform-apply"]
BUILTIN_SUBSTITUTIONS = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "COMMIT_SHA", "SHORT_SHA"}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|PEPPER|CREDENTIAL|PRIVATE", re.IGNORECASE)
SECRET_VALUE = [
    re.compile(r"sk-[A-Za-z0-9_-]{10,}"),  # OpenAI / Anthropic keys
    re.compile(r"AIza[0-9A-Za-z_-]{20,}"),  # Google API keys
    re.compile(r"\bik_[A-Za-z0-9_-]{10,}"),  # this service's org API keys
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\"private_key\""),
    re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}"),  # long opaque blobs
]


@cache
def cloudbuild() -> dict[str, Any]:
    document = yaml.safe_load(CLOUDBUILD.read_text())
    assert isinstance(document, dict) and document.get("steps"), "cloudbuild.yaml has no steps"
    return document


def steps() -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in cloudbuild()["steps"]}


def step_text(step: dict[str, Any]) -> str:
    return " ".join([str(step.get("entrypoint", "")), *map(str, step.get("args", []))])


@cache
def make_targets() -> dict[str, str]:
    """Makefile target -> its recipe, with $(VENV) expanded to its default."""
    text = MAKEFILE.read_text()
    venv = re.search(r"^VENV \?= (\S+)", text, re.MULTILINE)
    assert venv, "Makefile no longer defines VENV"
    text = text.replace("$(VENV)", venv.group(1))
    targets: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        rule = re.match(r"^([^\s#:=][^:=]*?):(?!=)", line)
        if rule and not line.startswith("\t"):
            current = [name for name in rule.group(1).split() if name != ".PHONY"]
            for name in current:
                targets.setdefault(name, "")
        elif line.startswith("\t"):
            for name in current:
                targets[name] += line.strip() + "\n"
        else:
            current = []
    return targets


@cache
def terraform_variables() -> set[str]:
    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    with (ROOT / "terraform" / "variables.tf").open() as handle:
        document = hcl2.load(handle, serialization_options=options)
    return {name for entry in document["variable"] for name in entry}


def test_steps_run_in_order() -> None:
    ids = [step.get("id") for step in cloudbuild()["steps"]]
    assert len(ids) == len(set(ids)), "step ids must be unique"
    assert ids == STEP_ORDER


def test_python_steps_use_make_targets_that_exist() -> None:
    targets = make_targets()
    for step_id in ("install", "lint", "test"):
        step = steps()[step_id]
        assert step["name"] == "python:3.11", f"{step_id}: the functions' runtime is python311"
        assert step["entrypoint"] == "make", step_id
        for target in step["args"]:
            assert target in targets, f"{step_id}: make target {target!r} is not in the Makefile"
    install_recipes = "".join(targets[target] for target in steps()["install"]["args"])
    assert "-r requirements-dev.txt" in install_recipes and (ROOT / "requirements-dev.txt").is_file()
    assert "checkov" in install_recipes, "the install step must set up .venv-checkov for the checkov test"
    assert "ruff check" in targets["lint"]
    # Cloud Build's test step runs the Python side of `make test` (the console is not deployed).
    assert steps()["test"]["args"] == ["test-python"]
    assert "pytest" in targets["test-python"]
    assert re.search(r"^test:.*\btest-python\b", MAKEFILE.read_text(), re.MULTILINE), "make test runs test-python too"


def test_terraform_steps_use_a_pinned_image_and_the_terraform_dir() -> None:
    for step_id in ("terraform-init", "terraform-plan", "terraform-apply"):
        step = steps()[step_id]
        assert re.fullmatch(r"hashicorp/terraform:1\.\d+\.\d+", step["name"]), f"{step_id}: pin the terraform image"
        assert (ROOT / step["dir"]).is_dir() and step["dir"] == "terraform", step_id
    init = step_text(steps()["terraform-init"])
    assert "terraform init" in init
    assert '-backend-config="bucket=${_TF_STATE_BUCKET}"' in init
    plan = steps()["terraform-plan"]["args"]
    assert plan[0] == "plan" and "-out=tfplan" in plan
    apply = steps()["terraform-apply"]["args"]
    assert apply[0] == "apply" and "-auto-approve" in apply and apply[-1] == "tfplan", "apply the reviewed plan"


def test_terraform_variables_passed_are_declared() -> None:
    passed = {}
    for step in cloudbuild()["steps"]:
        for name, value in re.findall(r"-var=(\w+)=(\S+)", step_text(step)):
            passed[name] = value
    assert set(passed) <= terraform_variables(), "cloudbuild.yaml sets variables terraform/ does not declare"
    assert passed.get("project_id") == "$PROJECT_ID"
    assert passed.get("region") == "${_REGION}"


def test_substitutions_are_declared_and_used() -> None:
    text = CLOUDBUILD.read_text()
    declared = set(cloudbuild().get("substitutions", {}))
    used = set(re.findall(r"\$\{?(_[A-Z0-9_]+)", text))
    assert used <= declared, f"substitutions used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"substitutions declared but never used: {sorted(declared - used)}"
    builtins = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text)) - used
    assert builtins <= BUILTIN_SUBSTITUTIONS, (
        f"unknown built-in substitutions: {sorted(builtins - BUILTIN_SUBSTITUTIONS)}"
    )


def test_no_secret_in_the_file() -> None:
    document = cloudbuild()
    for name, value in document.get("substitutions", {}).items():
        assert not SECRET_NAME.search(name), f"substitution {name} is named like a secret; use Secret Manager"
        for pattern in SECRET_VALUE:
            assert not pattern.search(str(value)), f"substitution {name} looks like a secret"
    assert "secretEnv" not in CLOUDBUILD.read_text(), "no step needs a secret"
    assert "inline" not in document.get("availableSecrets", {}), "no inline (KMS-encrypted) secrets"
    for line in CLOUDBUILD.read_text().splitlines():
        for pattern in SECRET_VALUE:
            assert not pattern.search(line), f"looks like a secret: {line.strip()!r}"
