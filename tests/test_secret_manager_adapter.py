"""Service-secret adapters: Secret Manager through the real REST client, and env/file."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from shared.domain.errors import ConfigurationError
from shared.secret_sources import SecretSource, env_var_name
from shared.secret_sources.env import EnvSecretSource
from shared.secret_sources.secret_manager import SecretManagerSource
from tests.fakes.secret_manager_server import FakeSecretManagerServer

PEPPER = "pepper-VALUE-that-must-never-leak-42"


@pytest.fixture(scope="module")
def sm_server() -> Iterator[FakeSecretManagerServer]:
    server = FakeSecretManagerServer().start()
    yield server
    server.stop()


@pytest.fixture
def project(sm_server: FakeSecretManagerServer) -> str:
    sm_server.reset_faults()
    sm_server.reset_calls()
    return f"proj-{uuid.uuid4().hex[:10]}"


def make_source(server: FakeSecretManagerServer, project: str) -> SecretManagerSource:
    return SecretManagerSource(
        project, api_endpoint=server.endpoint, credentials=AnonymousCredentials(), timeout=2.0, retry_deadline=0.3
    )


@pytest.fixture
def source(sm_server: FakeSecretManagerServer, project: str) -> SecretManagerSource:
    return make_source(sm_server, project)


# --- Secret Manager -------------------------------------------------------------------


def test_reads_latest_version_once(
    source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str
) -> None:
    sm_server.put_secret(project, "api-key-pepper", "old")
    sm_server.put_secret(project, "api-key-pepper", PEPPER)

    assert source.get("api-key-pepper") == PEPPER
    assert source.get("api-key-pepper") == PEPPER
    assert sm_server.calls == Counter(access_secret_version=1)
    assert sm_server.requests[0].path == f"/v1/projects/{project}/secrets/api-key-pepper/versions/latest:access"


def test_each_name_is_read_once(source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str) -> None:
    sm_server.put_secret(project, "a", "value-a")
    sm_server.put_secret(project, "b", "value-b")

    assert [source.get(name) for name in ("a", "b", "a", "b")] == ["value-a", "value-b", "value-a", "value-b"]
    assert sm_server.calls == Counter(access_secret_version=2)


def test_new_version_is_seen_by_a_new_instance_only(
    source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str
) -> None:
    admin = secretmanager.SecretManagerServiceClient(
        transport="rest", client_options={"api_endpoint": sm_server.endpoint}, credentials=AnonymousCredentials()
    )
    secret = admin.create_secret(
        request={"parent": f"projects/{project}", "secret_id": "pepper", "secret": {"replication": {"automatic": {}}}}
    )
    admin.add_secret_version(request={"parent": secret.name, "payload": {"data": b"first"}})
    assert source.get("pepper") == "first"

    admin.add_secret_version(request={"parent": secret.name, "payload": {"data": PEPPER.encode()}})

    assert source.get("pepper") == "first"
    assert make_source(sm_server, project).get("pepper") == PEPPER


def test_missing_secret_names_it(source: SecretManagerSource, project: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        source.get("absent-secret")

    assert "'absent-secret'" in str(caught.value)
    assert f"projects/{project}/secrets/absent-secret/versions/latest" in str(caught.value)
    assert "HTTP 404" in str(caught.value)


def test_failures_are_not_cached(source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str) -> None:
    sm_server.put_secret(project, "pepper", PEPPER)
    sm_server.permission_denied = True

    with pytest.raises(ConfigurationError, match="HTTP 403"):
        source.get("pepper")
    sm_server.permission_denied = False

    assert source.get("pepper") == PEPPER
    assert sm_server.calls == Counter(access_secret_version=2)


@pytest.mark.parametrize("status", [403, 503])
def test_errors_never_carry_the_value(
    source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str, status: int
) -> None:
    sm_server.put_secret(project, "pepper", PEPPER)
    sm_server.fail_next(1000, status=status)

    with pytest.raises(ConfigurationError) as caught:
        source.get("pepper")

    assert "'pepper'" in str(caught.value)
    assert PEPPER not in str(caught.value) and PEPPER not in str(caught.value.__cause__)


def test_corrupted_crc_is_detected(
    source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str
) -> None:
    sm_server.put_secret(project, "pepper", PEPPER)
    sm_server.corrupt_next_response_crc()

    with pytest.raises(ConfigurationError, match="CRC32C") as caught:
        source.get("pepper")

    assert PEPPER not in str(caught.value)
    assert source.get("pepper") == PEPPER  # the bad answer was not cached


def test_disabled_latest_version_fails(
    source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str
) -> None:
    sm_server.put_secret(project, "pepper", PEPPER)
    sm_server.set_version_state(project, "pepper", 1, "DISABLED")

    with pytest.raises(ConfigurationError, match="HTTP 400"):
        source.get("pepper")


def test_non_utf8_value_is_refused(
    source: SecretManagerSource, sm_server: FakeSecretManagerServer, project: str
) -> None:
    sm_server.put_secret(project, "binary", b"\xff\xfe-secret")

    with pytest.raises(ConfigurationError, match="not UTF-8") as caught:
        source.get("binary")

    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 256, "spaces not allowed", "../etc"])
def test_malformed_secret_name(source: SecretManagerSource, sm_server: FakeSecretManagerServer, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="malformed"):
        source.get(bad)

    assert sm_server.calls == Counter()


@pytest.mark.parametrize("bad", ["", "projects/p", "My Project"])
def test_malformed_project(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="malformed"):
        SecretManagerSource(bad)


# --- environment / file -------------------------------------------------------------------


def test_sources_satisfy_the_port(tmp_path: Path) -> None:
    sources: list[SecretSource] = [EnvSecretSource(environ={}), SecretManagerSource("p")]
    assert all(callable(item.get) for item in sources)


def test_env_var_name() -> None:
    assert env_var_name("api-key-pepper") == "INTEGRATIONS_SECRET_API_KEY_PEPPER"


def test_env_var_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"api-key-pepper": "from-file", "other": "file-only"}))
    monkeypatch.setenv("INTEGRATIONS_SECRET_API_KEY_PEPPER", "from-env")
    source = EnvSecretSource(path)

    assert source.get("api-key-pepper") == "from-env"
    assert source.get("other") == "file-only"


def test_empty_env_var_falls_back_to_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"pepper": "from-file"}))

    assert EnvSecretSource(path, environ={"INTEGRATIONS_SECRET_PEPPER": ""}).get("pepper") == "from-file"


def test_missing_everywhere_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("{}")

    with pytest.raises(ConfigurationError) as caught:
        EnvSecretSource(path, environ={}).get("pepper")

    assert "INTEGRATIONS_SECRET_PEPPER" in str(caught.value)
    assert str(path) in str(caught.value)


def test_without_file_only_env_is_read() -> None:
    with pytest.raises(ConfigurationError, match="INTEGRATIONS_SECRET_PEPPER"):
        EnvSecretSource(environ={}).get("pepper")


def test_file_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"pepper": "first"}))
    source = EnvSecretSource(path, environ={})
    assert source.get("pepper") == "first"

    path.write_text(json.dumps({"pepper": "second"}))

    assert source.get("pepper") == "first"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"pepper": ' + json.dumps(PEPPER), "not valid JSON"),
        (json.dumps([PEPPER]), "JSON object of strings"),
        (json.dumps({"pepper": 42}), "JSON object of strings"),
    ],
)
def test_bad_file_is_a_configuration_error_without_values(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(content)

    with pytest.raises(ConfigurationError, match=expected) as caught:
        EnvSecretSource(path, environ={}).get("pepper")

    assert PEPPER not in str(caught.value)
    assert caught.value.__cause__ is None


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        EnvSecretSource(tmp_path / "missing.json", environ={}).get("pepper")


def test_reads_what_the_google_client_library_reads(sm_server: FakeSecretManagerServer, project: str) -> None:
    """google-cloud-secret-manager (a test-only dependency) is the reference for the wire format."""
    from google.cloud import secretmanager

    sm_server.put_secret(project, "pepper", "zürich-" + PEPPER)
    library = secretmanager.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": sm_server.endpoint},
    )
    name = f"projects/{project}/secrets/pepper/versions/latest"
    expected = library.access_secret_version(request={"name": name}).payload.data.decode()
    assert make_source(sm_server, project).get("pepper") == expected == "zürich-" + PEPPER


def test_reading_loads_neither_the_client_library_nor_grpc(sm_server: FakeSecretManagerServer, project: str) -> None:
    sm_server.put_secret(project, "pepper", PEPPER)
    probe = (
        "import sys\n"
        "from shared.secret_sources.secret_manager import SecretManagerSource\n"
        f"assert SecretManagerSource({project!r}, api_endpoint={sm_server.endpoint!r}).get('pepper')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.', 'grpc', 'google.api_core'))))\n"
    )
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["gcp"])
def test_gcp_mode_takes_the_mounted_pepper_over_secret_manager(settings, gcp_stack, monkeypatch) -> None:
    """Terraform mounts the secret as INTEGRATIONS_SECRET_API_KEY_PEPPER; then Secret Manager is not called."""
    from shared.app.wiring import Adapters
    from shared.common.config import API_KEY_PEPPER_SECRET

    calls_before = Counter(gcp_stack.secret_manager.calls)
    monkeypatch.setenv(env_var_name(API_KEY_PEPPER_SECRET), "mounted-pepper")
    assert Adapters(settings).api_key_pepper == b"mounted-pepper"
    assert Counter(gcp_stack.secret_manager.calls) == calls_before

    monkeypatch.delenv(env_var_name(API_KEY_PEPPER_SECRET))
    assert Adapters(settings).api_key_pepper.startswith(b"test-pepper-")  # what the stand-in holds
    assert gcp_stack.secret_manager.calls["access_secret_version"] == calls_before["access_secret_version"] + 1
