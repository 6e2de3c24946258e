"""The provider registry is schema-valid, and broken registries fail loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.errors import ConfigurationError
from shared.providers import REGISTRY_PATH, check_registry, checked_copy_path, default_registry, load_registry
from shared.providers import main as providers_main

REPO = Path(__file__).resolve().parent.parent


def test_registry_loads_the_four_first_providers():
    registry = default_registry()
    assert set(registry.providers) == {"gcp", "openai", "anthropic", "gemini"}
    assert registry.get("gcp").display_name == "Google Cloud Platform"
    assert registry.get("openai").key_pattern.fullmatch("sk-proj-" + "a" * 24)


def test_every_example_key_matches_its_own_pattern():
    for spec in default_registry().providers.values():
        if spec.key_pattern is not None:
            document = yaml.safe_load(REGISTRY_PATH.read_text())
            example = document["providers"][spec.provider_id]["credential"]["example"]
            assert spec.key_pattern.fullmatch(example), spec.provider_id


def _broken(tmp_path: Path, mutate) -> Path:
    document = yaml.safe_load(REGISTRY_PATH.read_text())
    mutate(document)
    path = tmp_path / "providers.yml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["providers"]["openai"].pop("display_name"), "display_name"),
        (lambda d: d["providers"]["openai"].update(base_url="http://plain"), "base_url"),
        (lambda d: d["providers"]["openai"]["credential"].pop("pattern"), "pattern"),
        (lambda d: d["providers"]["openai"]["validation"]["key_hints"][0].update(order=["nope"]), "unknown check"),
        (lambda d: d["providers"]["gcp"]["validation"].update(module="nope"), "unknown validator"),
        (
            lambda d: d["providers"]["openai"]["validation"]["requirements"]["cost/usage_cost"].update(requires=["x"]),
            "unknown capability",
        ),
        (lambda d: d["providers"]["openai"].update(pipelines=["cost/other"]), "has no requirement"),
        (lambda d: d["providers"]["gcp"].update(required_fields=["nope"]), "not a config field"),
        (lambda d: d["providers"]["gcp"].update(credential_type="service_account_json"), "credential_type"),
        (lambda d: d["providers"]["openai"].update(key_prefix="xx-"), "key_prefix"),
        (lambda d: d["providers"]["gcp"]["validation"].update(headers={}), "validation"),
    ],
)
def test_broken_registry_is_rejected(tmp_path, mutate, fragment):
    path = _broken(tmp_path, mutate)
    with pytest.raises(ConfigurationError, match=fragment):
        load_registry(path, check_schema=True)
    assert any(fragment in problem for problem in check_registry(path))


def test_the_shipped_registry_passes_the_build_time_check(capsys):
    assert check_registry() == []
    assert providers_main(["--check"]) == 0
    assert "OK (4 providers" in capsys.readouterr().out


def test_the_build_time_check_fails_on_a_broken_registry(tmp_path, capsys):
    path = _broken(tmp_path, lambda d: d["providers"]["openai"].update(base_url="http://plain"))
    assert providers_main(["--check", str(path)]) == 1
    assert "base_url" in capsys.readouterr().err


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["providers"]["openai"].pop("display_name"),
        lambda d: d["providers"]["openai"]["credential"].update(pattern="(unclosed"),
        lambda d: d["providers"]["openai"].update(validation="http"),
        lambda d: d.update(providers=[]),
    ],
)
def test_run_time_load_without_the_schema_still_refuses_a_malformed_registry(tmp_path, mutate):
    """Run time skips the JSON Schema (the build checked the shipped file); a broken shape still fails cleanly."""
    with pytest.raises(ConfigurationError, match=r"provider registry .* (is malformed|is invalid)"):
        load_registry(_broken(tmp_path, mutate))


def _copy_registry(tmp_path: Path) -> Path:
    path = tmp_path / "providers.yml"
    path.write_bytes(REGISTRY_PATH.read_bytes())
    return path


def test_a_checked_registry_loads_without_yaml_or_jsonschema(tmp_path):
    """The build-time check leaves the parsed registry beside the file; a cold start reads that."""
    path = _copy_registry(tmp_path)
    assert providers_main(["--check", str(path)]) == 0
    assert checked_copy_path(path).exists()
    probe = (
        "import sys; from pathlib import Path; from shared.providers import load_registry; "
        f"registry = load_registry(Path({str(path)!r})); "
        "print(sorted(registry.providers), 'yaml' in sys.modules, 'jsonschema' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split("]")[1].split() == ["False", "False"]
    assert load_registry(path) == load_registry(path, check_schema=True)  # the copy is the YAML, nothing else


def test_a_stale_checked_copy_is_ignored(tmp_path):
    path = _copy_registry(tmp_path)
    assert providers_main(["--check", str(path)]) == 0
    path.write_text(path.read_text().replace("display_name: OpenAI", "display_name: OpenAI Platform"))
    assert load_registry(path).get("openai").display_name == "OpenAI Platform"


def test_a_failing_check_writes_no_copy(tmp_path):
    path = _broken(tmp_path, lambda d: d["providers"]["openai"].update(base_url="http://plain"))
    assert providers_main(["--check", str(path)]) == 1
    assert not checked_copy_path(path).exists()
