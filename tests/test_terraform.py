"""terraform/ checked without a Terraform binary.

Every ``.tf`` file is parsed with python-hcl2 and cross-checked against the
code it deploys: ``main.ENTRY_POINTS`` (one function per entry point, the
gateway routes), ``shared.domain.schemas`` (one table per schema file), the settings
``shared.common.config`` reads, and ``openapi.yaml``. Then checkov scans the
directory and must report no failed check; a skip is allowed only inline, as
``#checkov:skip=CKV_...:reason`` next to the resource it excuses.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2 import SerializationOptions

import main
from shared.common.config import API_KEY_PEPPER_SECRET, Settings
from shared.domain import schemas
from shared.domain.providers import default_registry
from shared.oauth import CALLBACK_PATH, client_secret_names

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
GATEWAY_TEMPLATE = TERRAFORM / "openapi-gateway.yaml.tftpl"
OPENAPI = ROOT / "openapi.yaml"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

REVALIDATE = "integration_revalidate"
REWRAP = "admin_key_rewrap"
# Entry points on /api/v1/admin/...: internal traffic only, never on the gateway.
ADMIN = {name for name, handler in main.ENTRY_POINTS.items() if handler.route[1].startswith("/api/v1/admin/")}
# The pipelines' read side: never on the gateway either; only the pipelines' service account invokes it.
CREDENTIAL_ACCESS = "credential_access"
INTERNAL = ADMIN | {CREDENTIAL_ACCESS}
FUNCTION = "google_cloudfunctions2_function"
KMS_MAX_ROTATION_SECONDS = 90 * 24 * 3600

# The spec's public paths; used only while openapi.yaml does not exist.
SPEC_ROUTES = {
    ("POST", "/api/v1/integrations/{}/{}/setup"),
    ("POST", "/api/v1/integrations/{}/{}/validate"),
    ("GET", "/api/v1/integrations/{}"),
    ("GET", "/api/v1/integrations/{}/{}"),
    ("PUT", "/api/v1/integrations/{}/{}"),
    ("DELETE", "/api/v1/integrations/{}/{}"),
    ("POST", "/api/v1/integrations/{}/{}/rotate"),
}

# Project-wide roles anyone in this stack may hold; everything else is granted
# on the one resource it is about.
PROJECT_ROLES_ALLOWED = {
    "roles/bigquery.jobUser",  # runtime: run query jobs (data access is dataset-scoped)
    "roles/logging.logWriter",  # build: build logs
    "roles/storage.objectAdmin",  # build: function source buckets, only under a condition
}
PROJECT_ROLES_NEEDING_CONDITION = {"roles/storage.objectAdmin"}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}

# Strings without their HCL quotes; blocks as lists of dicts; no comments.
HCL_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


@dataclass
class Config:
    """The merged content of every .tf file in terraform/."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: body for (kind, name), body in self.resources.items() if kind == resource_type}

    def resource(self, resource_type: str, name: str) -> dict[str, Any]:
        assert (resource_type, name) in self.resources, f"terraform/ has no {resource_type}.{name}"
        return self.resources[(resource_type, name)]


def _add_labeled(target: dict[tuple[str, str], dict[str, Any]], entries: list[dict[str, Any]], path: Path) -> None:
    for entry in entries:
        for kind, named in entry.items():
            for name, body in named.items():
                assert (kind, name) not in target, f"{kind}.{name} is declared twice (again in {path.name})"
                target[(kind, name)] = body


@cache
def config() -> Config:
    merged = Config()
    texts = []
    for path in sorted(TERRAFORM.glob("*.tf")):
        texts.append(path.read_text())
        with path.open() as handle:
            document = hcl2.load(handle, serialization_options=HCL_OPTIONS)
        _add_labeled(merged.resources, document.get("resource", []), path)
        _add_labeled(merged.data, document.get("data", []), path)
        for entry in document.get("variable", []):
            merged.variables.update(entry)
        for entry in document.get("output", []):
            merged.outputs.update(entry)
        for entry in document.get("locals", []):
            for name, value in entry.items():
                assert name not in merged.locals, f"local.{name} is declared twice (again in {path.name})"
                merged.locals[name] = value
        merged.terraform.extend(document.get("terraform", []))
    merged.text = "\n".join(texts)
    return merged


def expression(value: Any) -> str:
    """``"${expr}"`` -> ``expr``; python-hcl2 wraps every non-literal that way."""
    assert isinstance(value, str), f"expected an expression, got {value!r}"
    if value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The one nested block ``name`` of a resource body."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected exactly one {name} block, got {blocks!r}"
    return blocks[0]


def local_list(name: str) -> list[Any]:
    value = config().locals.get(name)
    assert isinstance(value, list), f"local.{name} must be a literal list, got {value!r}"
    return value


def for_each_keys(body: dict[str, Any]) -> list[str]:
    """The instance keys of a resource whose for_each is ``[toset(]local.NAME[)]`` over a literal list."""
    match = re.fullmatch(r"(?:toset\()?local\.(\w+)\)?", expression(body.get("for_each", "")))
    assert match, f"for_each must be local.NAME or toset(local.NAME), got {body.get('for_each')!r}"
    return [str(key) for key in local_list(match.group(1))]


def variable_default(name: str) -> Any:
    assert name in config().variables, f"variable {name!r} is not declared"
    return config().variables[name].get("default")


def resolve_local(value: Any) -> Any:
    """``${local.NAME}`` -> the local's value (one level)."""
    match = re.fullmatch(r"local\.(\w+)", expression(value)) if isinstance(value, str) else None
    return config().locals[match.group(1)] if match else value


def normalized_route(path: str) -> str:
    """``/a/<org_slug>/{provider}`` -> ``/a/{}/{}``: compare routes whatever their parameter names."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def entry_point_routes() -> dict[tuple[str, str], str]:
    """(METHOD, normalized path) -> entry point, from the handlers main.py exports."""
    routes = {}
    for entry_point, handler in main.ENTRY_POINTS.items():
        method, rule = handler.route
        routes[(method.upper(), normalized_route(rule))] = entry_point
    return routes


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in all_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in all_strings(item)]
    return []


def runtime_member() -> str:
    return "serviceAccount:${google_service_account.runtime.email}"


# --- parsing and module hygiene ------------------------------------------------


@pytest.mark.parametrize("path", sorted(TERRAFORM.glob("*.tf")), ids=lambda path: path.name)
def test_every_tf_file_parses(path: Path) -> None:
    with path.open() as handle:
        assert isinstance(hcl2.load(handle), dict)


def test_files_are_split_by_concern() -> None:
    expected = {"versions", "variables", "outputs", "apis", "kms", "bigquery", "functions", "gateway"}
    expected |= {"scheduler", "iam", "secrets"}
    assert expected <= {path.stem for path in TERRAFORM.glob("*.tf")}


def test_every_variable_has_type_and_description_and_is_used() -> None:
    variables = config().variables
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"variable {name!r} has no type"
        assert str(body.get("description", "")).strip(), f"variable {name!r} has no description"
    referenced = set(re.findall(r"\bvar\.(\w+)", config().text))
    assert referenced - set(variables) == set(), "references to undeclared variables"
    assert set(variables) - referenced == set(), "declared variables nothing uses"


def test_providers_are_pinned_and_state_is_remote() -> None:
    (settings,) = config().terraform
    assert settings.get("required_version"), "terraform.required_version is not set"
    providers = {name: spec for entry in settings["required_providers"] for name, spec in entry.items()}
    for name in ("google", "google-beta", "archive"):
        assert name in providers, f"provider {name} is not in required_providers"
        assert providers[name]["source"] == f"hashicorp/{name}"
        assert re.match(r"^(~>|=|>=)\s*\d", providers[name].get("version", "")), f"provider {name} is not pinned"
    assert "gcs" in {name for entry in settings["backend"] for name in entry}, "state backend must be gcs"


def test_outputs_are_only_what_callers_need() -> None:
    outputs = config().outputs
    assert set(outputs) == {
        "base_url",
        "function_names",
        "kms_key_id",
        "runtime_service_account_email",
        "oauth_callback_url",
    }
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name!r} has no description"
    assert expression(outputs["kms_key_id"]["value"]) == "google_kms_crypto_key.credentials.id"
    assert outputs["oauth_callback_url"]["value"].endswith(CALLBACK_PATH)
    method, rule = main.ENTRY_POINTS["oauth_callback"].route
    assert (method, rule) == ("GET", CALLBACK_PATH)


# --- functions ---------------------------------------------------------------------


def deployed_entry_points() -> list[str]:
    """Entry point of every function instance terraform/ deploys (duplicates kept)."""
    entry_points: list[str] = []
    for body in config().of_type(FUNCTION).values():
        entry_point = block(body, "build_config")["entry_point"]
        if entry_point == "${each.key}":
            entry_points.extend(for_each_keys(body))
        else:
            entry_points.append(entry_point)
    return entry_points


def test_one_function_per_entry_point_of_main() -> None:
    deployed = deployed_entry_points()
    duplicates = sorted({name for name in deployed if deployed.count(name) > 1})
    assert not duplicates, f"entry points deployed more than once: {duplicates}"
    exported = set(main.ENTRY_POINTS)
    assert set(deployed) - exported == set(), "terraform deploys entry points main.ENTRY_POINTS does not export"
    assert exported - set(deployed) == set(), "main.ENTRY_POINTS exports entry points terraform does not deploy"


def test_every_function_has_its_settings() -> None:
    settings = variable_default("function_settings")
    assert set(settings) == set(deployed_entry_points()), "function_settings must have one entry per function"
    for entry_point, values in settings.items():
        assert set(values) >= {"memory", "timeout_seconds", "max_instance_request_concurrency"}, entry_point
        if values["max_instance_request_concurrency"] > 1:
            assert float(values["cpu"]) >= 1, f"{entry_point}: concurrency above 1 needs at least one vCPU"
    body = config().resource(FUNCTION, "functions")
    service = block(body, "service_config")
    for attribute in ("available_memory", "timeout_seconds", "max_instance_request_concurrency"):
        assert "var.function_settings[each.key]" in service[attribute], attribute


def test_functions_share_one_content_addressed_archive() -> None:
    for body in config().of_type(FUNCTION).values():
        build = block(body, "build_config")
        assert build["runtime"] == "python311"
        storage = block(block(build, "source"), "storage_source")
        assert expression(storage["object"]) == "google_storage_bucket_object.function_source.name"
    source_object = config().resource("google_storage_bucket_object", "function_source")
    assert re.search(r"data\.archive_file\.function_source\.output_(md5|sha\w*)", source_object["name"]), (
        "the archive object must be named by the archive's content hash"
    )
    assert expression(source_object["source"]) == "data.archive_file.function_source.output_path"


def test_archive_ships_the_code_and_leaves_out_the_rest() -> None:
    archive = config().data[("archive_file", "function_source")]
    assert archive["type"] == "zip"
    assert expression(archive["source_dir"]) == "local.function_source_dir"
    assert 'abspath("${path.module}/..")' in config().locals["function_source_dir"], "default must be the repo root"
    excludes = archive["excludes"]

    def excluded(relative: str) -> bool:
        return any(fnmatch.fnmatchcase(relative, pattern) for pattern in excludes)

    shipped = [
        "main.py",
        "requirements.txt",
        "shared/common/config.py",
        "functions/setup.py",
        "configs/system/providers.yml",
    ]
    shipped += [f"configs/schemas/{table}.json" for table in schemas.TABLES]
    assert [path for path in shipped if excluded(path)] == [], "runtime files would be left out of the archive"
    left_out = ["tests/conftest.py", "terraform/functions.tf", ".venv/bin/python", ".venv-checkov/bin/checkov"]
    left_out += [".data/integrations.sqlite3", "bench/run.py", ".git/HEAD", "shared/__pycache__/config.cpython-311.pyc"]
    # No web page ships: the settings console and the TypeScript client (with node_modules) stay out.
    left_out += ["clients/typescript/dist/site/index.html", "clients/typescript/node_modules/esbuild/package.json"]
    assert [path for path in left_out if not excluded(path)] == [], "these would ship in the archive"

    gcloudignore = (ROOT / ".gcloudignore").read_text().split()
    for directory in ("tests/", "terraform/", ".venv/", ".venv-*/", ".data/", "bench/", ".git/", "clients/"):
        assert directory in gcloudignore, f".gcloudignore must leave out {directory} like the archive does"


def test_function_environment_is_what_the_code_reads() -> None:
    body = config().resource(FUNCTION, "functions")
    service = block(body, "service_config")
    environment = resolve_local(service["environment_variables"])
    assert environment["INTEGRATIONS_BACKEND"] == "gcp"
    assert expression(environment["GCP_PROJECT"]) == "var.project_id"
    assert expression(environment["BIGQUERY_DATASET"]) == "google_bigquery_dataset.organizations.dataset_id"
    assert expression(environment["KMS_KEY_NAME"]) == "google_kms_crypto_key.credentials.id"

    source = "\n".join(path.read_text() for path in [ROOT / "main.py", *ROOT.glob("shared/**/*.py")])
    # environ.get("X"), environ["X"], or a settings helper such as _float(environ, "X", ...)
    read_by_code = set(re.findall(r"environ(?:\.get\(|\[|,)\s*\"([A-Z0-9_]+)\"", source))
    # Read by the functions framework itself: it adds the execution id to each JSON log line.
    import functions_framework

    framework = Path(functions_framework.__file__).read_text()
    read_by_framework = {name for name in ("LOG_EXECUTION_ID",) if f'"{name}"' in framework}
    assert environment["LOG_EXECUTION_ID"] == "true"
    assert set(environment) - read_by_code - read_by_framework == set(), "environment variables no code reads"

    assert expression(service["service_account_email"]) == "google_service_account.runtime.email"
    ingress = expression(service["ingress_settings"])
    assert ingress == 'contains(local.admin_entry_points, each.key) ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"', (
        "the admin routes must accept internal traffic only"
    )
    assert set(local_list("admin_entry_points")) == ADMIN and REVALIDATE in ADMIN and REWRAP in ADMIN
    assert config().locals["revalidate_entry_point"] == REVALIDATE
    assert config().locals["rewrap_entry_point"] == REWRAP


# --- BigQuery and KMS ----------------------------------------------------------------


def test_every_table_is_created_from_its_schema_file() -> None:
    body = config().resource("google_bigquery_table", "tables")
    assert set(for_each_keys(body)) == set(schemas.TABLES)
    assert len(for_each_keys(body)) == len(schemas.TABLES)
    assert body["schema"] == '${file("${path.module}/../configs/schemas/${each.key}.json")}'
    for table in schemas.TABLES:
        assert (TERRAFORM / ".." / "configs" / "schemas" / f"{table}.json").is_file(), table
    assert body["deletion_protection"] is True
    assert expression(body["dataset_id"]) == "google_bigquery_dataset.organizations.dataset_id"
    assert len(config().of_type("google_bigquery_table")) == 1, "tables come from the one for_each"


def test_dataset_matches_the_service_defaults_and_is_encrypted() -> None:
    defaults = Settings()
    assert variable_default("bigquery_dataset_id") == defaults.bigquery_dataset
    assert variable_default("bigquery_location") == defaults.bigquery_location
    dataset = config().resource("google_bigquery_dataset", "organizations")
    assert expression(block(dataset, "default_encryption_configuration")["kms_key_name"]).startswith(
        "google_kms_crypto_key."
    )


def test_crypto_keys_rotate_and_cannot_be_destroyed() -> None:
    keys = config().of_type("google_kms_crypto_key")
    assert keys["credentials"]["name"] == "integration-credentials"
    rotation = variable_default("kms_rotation_period")
    assert re.fullmatch(r"\d+s", rotation) and int(rotation[:-1]) <= KMS_MAX_ROTATION_SECONDS
    for name, key in keys.items():
        assert key["purpose"] == "ENCRYPT_DECRYPT", name
        assert expression(key["rotation_period"]) == "var.kms_rotation_period", name
        assert block(key, "lifecycle").get("prevent_destroy") is True, name
        template = block(key, "version_template")
        assert template["algorithm"] == "GOOGLE_SYMMETRIC_ENCRYPTION", name
        assert expression(template["protection_level"]) == "var.kms_protection_level", name


def test_secrets_are_the_ones_the_code_reads() -> None:
    secrets = config().of_type("google_secret_manager_secret")
    assert set(secrets) == {"api_key_pepper", "oauth_client"}
    assert secrets["api_key_pepper"]["secret_id"] == API_KEY_PEPPER_SECRET
    # One client id and secret per OAuth provider of the registry, named as shared.oauth reads them.
    oauth = secrets["oauth_client"]
    assert expression(oauth["for_each"]) == "toset(local.oauth_client_secret_ids)"
    assert oauth["secret_id"] == "${each.key}"
    assert "configs/system/providers.yml" in config().locals["provider_registry"]
    assert 'provider.credential_type == "oauth"' in config().locals["oauth_providers"]
    names = config().locals["oauth_client_secret_ids"]
    id_name, secret_name = client_secret_names("${id}")
    assert id_name in names and secret_name in names
    oauth_providers = [spec.provider_id for spec in default_registry().providers.values() if spec.oauth]
    assert oauth_providers, "the registry has OAuth providers whose clients need these secrets"
    assert not [v for v in all_strings(secrets) if "secret_data" in v], "client secrets never pass through Terraform"
    assert not config().of_type("google_secret_manager_secret_version").keys() - {"api_key_pepper"}


def test_the_pepper_reaches_functions_as_an_environment_variable() -> None:
    """Cloud Run resolves it before start: no Secret Manager client or call on a cold start."""
    from shared.secret_sources import env_var_name

    service = block(config().resource(FUNCTION, "functions"), "service_config")
    mounted = block(service, "secret_environment_variables")
    assert mounted["key"] == env_var_name(API_KEY_PEPPER_SECRET)
    assert expression(mounted["secret"]) == "google_secret_manager_secret.api_key_pepper.secret_id"
    assert expression(mounted["version"]) == "google_secret_manager_secret_version.api_key_pepper.version"
    assert expression(mounted["project_id"]) == "var.project_id"


# --- identities ------------------------------------------------------------------------


def iam_members() -> list[tuple[str, str, dict[str, Any]]]:
    return [(kind, name, body) for (kind, name), body in config().resources.items() if kind.endswith("_iam_member")]


def test_no_authoritative_public_or_basic_role_grant() -> None:
    kinds = {kind for kind, _ in config().resources}
    authoritative = sorted(kind for kind in kinds if kind.endswith(("_iam_policy", "_iam_binding")))
    assert authoritative == [], "authoritative IAM resources would wipe grants made outside this stack"
    every_string = all_strings([body for body in config().resources.values()])
    assert PUBLIC_MEMBERS & set(every_string) == set(), "nothing may be granted to the public"
    for kind, name, body in iam_members():
        assert body["role"] not in BASIC_ROLES, f"{kind}.{name} grants {body['role']}"


def test_project_wide_roles_are_on_the_allowlist() -> None:
    for name, body in config().of_type("google_project_iam_member").items():
        assert body["role"] in PROJECT_ROLES_ALLOWED, f"{name}: {body['role']} must be granted on a resource"
        if body["role"] in PROJECT_ROLES_NEEDING_CONDITION:
            assert block(body, "condition")["expression"], f"{name}: {body['role']} needs a condition"


def test_runtime_identity_reaches_only_its_key_dataset_and_secret() -> None:
    runtime_grants = [(kind, name, body) for kind, name, body in iam_members() if body["member"] == runtime_member()]
    oauth_grant = next(body for _, name, body in runtime_grants if name == "runtime_oauth_client_accessor")
    assert expression(oauth_grant["for_each"]) == "toset(local.oauth_client_secret_ids)"
    assert expression(oauth_grant["secret_id"]) == "google_secret_manager_secret.oauth_client[each.key].secret_id"
    assert oauth_grant["role"] == "roles/secretmanager.secretAccessor"
    grants = {
        (kind, body["role"]): body for kind, name, body in runtime_grants if name != "runtime_oauth_client_accessor"
    }
    rotator_role = "${google_project_iam_custom_role.key_rotator.id}"
    assert set(grants) == {
        ("google_kms_crypto_key_iam_member", "roles/cloudkms.cryptoKeyEncrypterDecrypter"),
        ("google_kms_crypto_key_iam_member", rotator_role),
        ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor"),
        ("google_project_iam_member", "roles/bigquery.jobUser"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),
    }
    kms = grants[("google_kms_crypto_key_iam_member", "roles/cloudkms.cryptoKeyEncrypterDecrypter")]
    assert expression(kms["crypto_key_id"]) == "google_kms_crypto_key.credentials.id"
    rotator = grants[("google_kms_crypto_key_iam_member", rotator_role)]
    assert expression(rotator["crypto_key_id"]) == "google_kms_crypto_key.credentials.id", "rotation on this key only"
    dataset = grants[("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor")]
    assert expression(dataset["dataset_id"]) == "google_bigquery_dataset.organizations.dataset_id"
    secret = grants[("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor")]
    assert expression(secret["secret_id"]) == "google_secret_manager_secret.api_key_pepper.secret_id"
    functions_run_as = {
        expression(block(body, "service_config")["service_account_email"])
        for body in config().of_type(FUNCTION).values()
    }
    assert functions_run_as == {"google_service_account.runtime.email"}


def test_key_rotator_role_holds_only_what_rotation_and_the_report_call() -> None:
    role = config().resource("google_project_iam_custom_role", "key_rotator")
    assert sorted(role["permissions"]) == [
        "cloudkms.cryptoKeyVersions.create",  # rotate_key: create_crypto_key_version
        "cloudkms.cryptoKeyVersions.list",  # key report: list_crypto_key_versions
        "cloudkms.cryptoKeys.get",  # primary_version: get_crypto_key
        "cloudkms.cryptoKeys.update",  # rotate_key: update_crypto_key_primary_version
    ]
    from tests.fakes.kms_server import FakeKmsServer

    called = {"create_crypto_key_version", "update_primary_version", "get_crypto_key", "list_crypto_key_versions"}
    assert {FakeKmsServer.PERMISSIONS[rpc] for rpc in called} == set(role["permissions"])


def test_only_the_scheduler_invokes_revalidation_and_only_the_gateway_the_rest() -> None:
    invokers = config().of_type("google_cloud_run_v2_service_iam_member")
    assert all(body["role"] == "roles/run.invoker" for body in invokers.values())
    scheduler = "serviceAccount:${google_service_account.scheduler.email}"
    revalidate_target = "google_cloudfunctions2_function.functions[local.revalidate_entry_point].name"
    on_revalidate = [body for body in invokers.values() if expression(body["name"]) == revalidate_target]
    assert [body["member"] for body in on_revalidate] == [scheduler]
    rewrap_target = "google_cloudfunctions2_function.functions[local.rewrap_entry_point].name"
    on_rewrap = [body for body in invokers.values() if expression(body["name"]) == rewrap_target]
    assert [body["member"] for body in on_rewrap] == [scheduler]
    operators = invokers["key_operator_invoker"]
    assert (
        "local.key_operator_entry_points" in operators["for_each"]
        and "var.key_operator_members" in operators["for_each"]
    )
    assert set(local_list("key_operator_entry_points")) == ADMIN - {REVALIDATE}
    assert variable_default("key_operator_members") == []

    gateway = invokers["gateway_invoker"]
    assert gateway["member"] == "serviceAccount:${google_service_account.gateway.email}"
    assert expression(gateway["for_each"]) == "toset(local.gateway_entry_points)"
    assert expression(gateway["name"]) == "google_cloudfunctions2_function.functions[each.key].name"
    gateway_entry_points = expression(config().locals["gateway_entry_points"])
    assert "local.entry_points" in gateway_entry_points
    assert "!contains(local.internal_entry_points, entry_point)" in gateway_entry_points
    assert expression(config().locals["internal_entry_points"]) == (
        "concat(local.admin_entry_points, [local.credential_access_entry_point])"
    )
    assert config().locals["credential_access_entry_point"] == CREDENTIAL_ACCESS

    # The pipelines' service account invokes credential_access and nothing else; no one else invokes it.
    pipelines = invokers["pipelines_invoker"]
    assert pipelines["member"] == "serviceAccount:${var.pipelines_service_account}"
    access_target = "google_cloudfunctions2_function.functions[local.credential_access_entry_point].name"
    assert expression(pipelines["name"]) == access_target
    assert [name for name, body in invokers.items() if expression(body["name"]) == access_target] == [
        "pipelines_invoker"
    ]
    assert variable_default("pipelines_service_account") == ""
    assert set(invokers) == {
        "gateway_invoker",
        "scheduler_invoker",
        "scheduler_rewrap_invoker",
        "key_operator_invoker",
        "pipelines_invoker",
    }


def test_scheduler_posts_to_revalidation_with_its_own_oidc_identity() -> None:
    job = config().resource("google_cloud_scheduler_job", "revalidate")
    target = block(job, "http_target")
    assert target["http_method"] == "POST"
    revalidate_function = expression(config().locals["revalidate_function"])
    assert revalidate_function == "google_cloudfunctions2_function.functions[local.revalidate_entry_point]"
    assert target["uri"] == "${local.revalidate_function.service_config[0].uri}${var.revalidate_path}"
    token = block(target, "oidc_token")
    assert expression(token["service_account_email"]) == "google_service_account.scheduler.email"
    assert expression(token["audience"]) == "local.revalidate_function.service_config[0].uri"
    assert expression(job["schedule"]) == "var.revalidate_schedule"
    assert variable_default("revalidate_schedule") == "0 */6 * * *"

    assert REVALIDATE in main.ENTRY_POINTS, "main.ENTRY_POINTS has no integration_revalidate for the scheduler"
    method, rule = main.ENTRY_POINTS[REVALIDATE].route
    assert (method, variable_default("revalidate_path")) == ("POST", rule)


def test_scheduler_posts_to_rewrap_with_its_own_oidc_identity() -> None:
    job = config().resource("google_cloud_scheduler_job", "rewrap")
    target = block(job, "http_target")
    assert target["http_method"] == "POST"
    assert expression(config().locals["rewrap_function"]) == (
        "google_cloudfunctions2_function.functions[local.rewrap_entry_point]"
    )
    assert target["uri"] == "${local.rewrap_function.service_config[0].uri}${var.rewrap_path}"
    token = block(target, "oidc_token")
    assert expression(token["service_account_email"]) == "google_service_account.scheduler.email"
    assert expression(token["audience"]) == "local.rewrap_function.service_config[0].uri"
    method, rule = main.ENTRY_POINTS[REWRAP].route
    assert (method, variable_default("rewrap_path")) == ("POST", rule)


# --- the public base URL (API Gateway) --------------------------------------------------------


def gateway_routes() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path) -> operation of the rendered gateway template (placeholders for variables)."""
    template = GATEWAY_TEMPLATE.read_text()
    template_vars = config().locals["gateway_template_vars"]
    for name in re.findall(r"\$\{(\w+)", template):
        assert name in template_vars, f"the template uses ${{{name}}} but gateway.tf does not pass it"
    rendered = re.sub(r"\$\{(\w+)(?:\.(\w+))?\}", lambda m: "__".join(filter(None, m.groups())), template)
    document = yaml.safe_load(rendered)
    assert document["swagger"] == "2.0", "API Gateway accepts Swagger 2.0"
    return {
        (method.upper(), path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


def test_gateway_routes_each_spec_path_to_the_function_that_serves_it() -> None:
    routes = gateway_routes()
    code_routes = {route: ep for route, ep in entry_point_routes().items() if ep not in INTERNAL}
    assert {(method, normalized_route(path)) for method, path in routes} == set(code_routes)
    for (method, path), operation in routes.items():
        entry_point = code_routes[(method, normalized_route(path))]
        assert operation["operationId"] == entry_point, (method, path)
        backend = operation["x-google-backend"]
        assert backend["address"] == f"backends__{entry_point}", (method, path)
        assert backend["jwt_audience"] == f"backends__{entry_point}", (method, path)
        assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS", (method, path)
        assert "security" not in operation, "the service checks X-API-Key itself"
    backends = expression(config().locals["gateway_template_vars"]["backends"])
    assert "local.gateway_entry_points" in backends and "service_config[0].uri" in backends


def test_gateway_serves_exactly_the_public_contract() -> None:
    routes = gateway_routes()
    if not OPENAPI.exists():
        assert {(method, normalized_route(path)) for method, path in routes} == SPEC_ROUTES
        return
    spec = yaml.safe_load(OPENAPI.read_text())
    public = {
        (method.upper(), path): operation.get("operationId")
        for path, operations in spec["paths"].items()
        if not operations.get("x-local-server-only")  # /healthz, /openapi.json: the local server's own
        for method, operation in operations.items()
        if method in {"get", "post", "put", "delete", "patch"} and operation.get("operationId") not in INTERNAL
    }
    assert set(routes) == set(public), "the gateway's paths must be openapi.yaml's (the internal routes excepted)"
    internal = {
        operation["operationId"]
        for path, operations in spec["paths"].items()
        if operations.get("x-internal")
        for method, operation in operations.items()
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert internal == {CREDENTIAL_ACCESS}, "openapi.yaml marks the pipelines' route internal"
    for route, operation_id in public.items():
        assert routes[route]["operationId"] == operation_id, route
    assert {(method, normalized_route(path)) for method, path in public} >= SPEC_ROUTES


# --- checkov -----------------------------------------------------------------------------------


def test_checkov_skips_are_inline_with_a_reason() -> None:
    for path in sorted(TERRAFORM.glob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "checkov" in line.lower():
                assert re.fullmatch(r"\s*#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{15,}", line), (
                    f"{path.name}:{number}: a skip is '#checkov:skip=CKV_...:one-line reason'"
                )
    for name in (".checkov.yaml", ".checkov.yml"):
        assert not (ROOT / name).exists() and not (TERRAFORM / name).exists(), "skips belong inline, not in config"


def test_checkov_finds_no_failed_check() -> None:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run `make .venv-checkov/.installed` (make test does)")
    command = [str(CHECKOV), "-d", "terraform", "--framework", "terraform", "--skip-download", "--quiet"]
    command += ["--compact", "-o", "json"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {completed.returncode}): {completed.stderr[-2000:]}")
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for single in reports
        for check in single["results"].get("failed_checks", [])
    ]
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0, summary


def test_cors_origins_reach_every_function_and_the_gateway_passes_preflights() -> None:
    environment = config().locals["function_environment"]
    assert expression(environment["CORS_ALLOWED_ORIGINS"]) == 'join(",", var.cors_allowed_origins)'
    assert variable_default("cors_allowed_origins") == [], "no CORS unless the operator lists origins"
    template = yaml.safe_load(re.sub(r"\$\{(\w+)\}", r"\1", GATEWAY_TEMPLATE.read_text().split("paths:")[0]))
    assert template["x-google-endpoints"] == [{"name": "managed_service", "allowCors": True}]
    assert template["host"] == "managed_service"


# --- the platform's AWS identity (terraform/aws-platform-role, a stack of its own) -------------

AWS_PLATFORM_ROLE = TERRAFORM / "aws-platform-role"


def test_aws_platform_role_trusts_only_the_runtime_service_accounts_google_token() -> None:
    parsed = {}
    for path in sorted(AWS_PLATFORM_ROLE.glob("*.tf")):
        with path.open() as handle:
            parsed[path.stem] = hcl2.load(handle, serialization_options=HCL_OPTIONS)
    assert {"versions", "variables", "iam", "outputs"} <= set(parsed)
    text = "\n".join(path.read_text() for path in AWS_PLATFORM_ROLE.glob("*.tf"))
    assert 'Federated = "accounts.google.com"' in text and '"sts:AssumeRoleWithWebIdentity"' in text
    for key in ("accounts.google.com:aud", "accounts.google.com:sub", "accounts.google.com:oaud"):
        assert f'"{key}"' in text, f"the trust policy must pin {key}"
    # The role may only assume other roles; no AWS key is declared anywhere.
    assert re.findall(r'Action\s*=\s*"([^"]+)"', text) == ["sts:AssumeRoleWithWebIdentity", "sts:AssumeRole"]
    assert not re.search(r"access_key|secret_key|aws_iam_access_key", text)
    variables = {name: body for entry in parsed["variables"]["variable"] for name, body in entry.items()}
    audience = Settings().aws_web_identity_audience
    assert variables["web_identity_audience"]["default"] == audience
    assert variable_default("aws_web_identity_audience") == audience
    assert {name for entry in parsed["outputs"]["output"] for name in entry} == {"role_arn"}
