"""One log format for the whole process: every line is a JSON record with a severity.

A fresh interpreter serves requests through the functions framework as Cloud
Functions runs it (``LOG_EXECUTION_ID=true``, as ``terraform/functions.tf``
sets it), makes the Cloud KMS and Secret Manager adapters fail against a
closed port, and has libraries log (botocore, Python ``warnings``). Every
line it writes, on stdout and stderr, must parse as JSON with a
``severity``; the adapters' lines are in the service's logger tree; lines
of a request carry its request id, its Cloud trace (from
``X-Cloud-Trace-Context`` or ``traceparent``, in ``GCP_PROJECT``) and the
framework's execution id.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from shared.common.logs import Trace, trace_from_headers

REPO = Path(__file__).resolve().parent.parent
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLOUD_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

PROGRAM = """
import json, logging, os, sys, warnings
from functions_framework import create_app
from shared.common import logs
from shared.crypto.cloud_kms import CloudKmsCipher
from shared.domain.errors import ConfigurationError, EncryptionFailed
from shared.inbound.http import get_service
from shared.secret_sources.secret_manager import SecretManagerSource
from google.auth.credentials import AnonymousCredentials

closed = "http://127.0.0.1:" + sys.argv[1]
_, key = get_service().create_api_key("acme")
app = create_app("integration_list", "main.py").test_client()
cloud = {"X-Cloud-Trace-Context": "%(cloud)s/1234567;o=1", "X-Request-Id": "req-cloud"}
parent = {"traceparent": "00-%(parent)s-b7ad6b7169203331-01", "X-Request-Id": "req-parent"}
assert app.get("/api/v1/integrations/acme", headers={**cloud, "X-API-Key": key}).status_code == 200
assert app.get("/api/v1/integrations/acme", headers={**parent, "X-API-Key": "wrong"}).status_code == 401
with logs.request_context("req-adapters", {"X-Cloud-Trace-Context": "%(cloud)s/1;o=0"}):
    cipher = CloudKmsCipher("projects/p/locations/l/keyRings/r/cryptoKeys/k", api_endpoint=closed,
                            credentials=AnonymousCredentials(), retry_deadline=0.0, timeout=0.5)
    try:
        cipher.encrypt(b"x", b"aad")
    except EncryptionFailed:
        pass
    source = SecretManagerSource("p", api_endpoint=closed, credentials=AnonymousCredentials(),
                                 retry_deadline=0.0, timeout=0.5)
    try:
        source.get("api-key-pepper")
    except ConfigurationError:
        pass
logging.getLogger("botocore.credentials").warning("a library's own warning")
warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)
"""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_line_of_a_run_is_json_with_severity_and_request_lines_carry_id_trace_and_execution(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "INTEGRATIONS_DATA_DIR": str(tmp_path),
        "GCP_PROJECT": "proj-logs",
        "LOG_EXECUTION_ID": "true",
        "LOG_LEVEL": "INFO",
        "PYTHONWARNINGS": "always",
    }
    program = PROGRAM % {"cloud": CLOUD_TRACE_ID, "parent": TRACE_ID}
    result = subprocess.run(
        [sys.executable, "-c", program, str(_closed_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # not JSON: a line outside the format
        assert isinstance(record, dict) and record.get("severity"), line
        records.append(record)

    by_logger = {record.get("logger"): record for record in records}
    kms, secrets = by_logger["integrations.crypto.cloud_kms"], by_logger["integrations.service_secrets"]
    for adapter in (kms, secrets):
        assert adapter["severity"] == "WARNING" and adapter["request_id"] == "req-adapters"
        assert adapter["logging.googleapis.com/trace"] == f"projects/proj-logs/traces/{CLOUD_TRACE_ID}"
    assert by_logger["botocore.credentials"]["severity"] == "WARNING"
    assert "a deprecated call" in by_logger["py.warnings"]["message"]

    served = [record for record in records if record.get("request_id") in ("req-cloud", "req-parent")]
    assert {record["request_id"] for record in served} == {"req-cloud", "req-parent"}
    for record in served:
        trace = CLOUD_TRACE_ID if record["request_id"] == "req-cloud" else TRACE_ID
        assert record["logging.googleapis.com/trace"] == f"projects/proj-logs/traces/{trace}"
        assert record["logging.googleapis.com/trace_sampled"] is True
        assert record["logging.googleapis.com/labels"]["execution_id"]  # added by the functions framework
    rejected = next(record for record in served if record["request_id"] == "req-parent")
    assert rejected["logging.googleapis.com/spanId"] == "b7ad6b7169203331"
    # One line per record: the framework's own root handler does not write them a second time.
    assert len([r for r in records if r.get("message") == "request rejected"]) == 1


def test_trace_headers_are_read_as_google_and_w3c_write_them():
    assert trace_from_headers({"X-Cloud-Trace-Context": f"{CLOUD_TRACE_ID}/1234567;o=1"}) == Trace(
        CLOUD_TRACE_ID, f"{1234567:016x}", True
    )
    assert trace_from_headers({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"}) == Trace(
        TRACE_ID, "b7ad6b7169203331", False
    )
    for junk in ("", "nope", "0" * 32, f"{TRACE_ID[:-1]}/1", f"{TRACE_ID}x/1;o=1"):
        assert trace_from_headers({"X-Cloud-Trace-Context": junk}) is None, junk
    assert trace_from_headers({"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"}) is None


def test_every_logger_of_the_service_is_in_its_tree():
    source = "\n".join(path.read_text() for path in (REPO / "shared").rglob("*.py"))
    names = re.findall(r"logging\.getLogger\(([^)]*)\)", source)
    assert names, "no logger found: the pattern is stale"
    outside = [
        name
        for name in names
        if not name.startswith('"integrations') and name not in ("_library", "", "name", "LOGGER_TREE")
    ]
    assert outside == []
