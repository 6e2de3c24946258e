"""Offline launcher and test helper for the ``bqemulator`` BigQuery emulator.

Two entry points:

* ``python -m tests.emulators.bigquery_emulator --port N --project P`` runs the
  emulator's REST API on ``127.0.0.1:N`` after

  1. installing DuckDB's ``spatial`` (and, when its package is present,
     ``avro``) extension from the pinned ``duckdb-extension-*`` wheels into
     DuckDB's local extension directory, so the emulator's own
     ``INSTALL spatial`` / ``INSTALL avro`` find them and never reach the
     network (idempotent, runs on every start);
  2. patching the emulator so *parameterized multi-statement scripts* get
     their query parameters bound (bqemulator 1.4.0 runs scripts through its
     ``ScriptInterpreter`` without the job's parameters; real BigQuery binds
     them). Each named parameter is declared as a script variable in the
     interpreter's root frame, valued by the emulator's own parameter decoder,
     and every ``@name`` outside string literals, quoted identifiers and
     comments is rewritten to that variable. The interpreter then binds the
     variables as prepared-statement parameters: values never enter SQL text.
     An uncaught ``RAISE`` in a script fails the job with HTTP 400 (the
     emulator alone answers 500, which the client retries for minutes);
  3. patching ``jobs.query`` so a failed query answers with its HTTP error
     status, as BigQuery does (the emulator alone answers 200 with no rows, so
     ``Client.query_and_wait`` returned an empty result instead of raising);
  4. answering ``jobs.query`` in short-query mode (``jobCreationMode:
     JOB_CREATION_OPTIONAL``) as BigQuery does: a finished SELECT without a
     job (no ``jobReference``, a ``queryId``), anything else with its job and
     a ``jobCreationReason`` (the emulator alone ignores the field).

* :func:`start_bigquery_emulator` starts that launcher as a subprocess on a free
  port, waits until it is ready and returns an :class:`EmulatorProcess`.

See ``docs/emulators.md`` (BigQuery section).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

    from shared.store.bigquery.jobs import BigQueryJobs

#: Repository root (``tests/emulators/`` is two levels below it).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Prefix of the script variables that carry query parameters. It cannot
#: collide with a user variable in practice and is a valid BigQuery identifier.
PARAM_VARIABLE_PREFIX = "__bqemu_qp_"

DEFAULT_STARTUP_TIMEOUT_S = 60.0

# ---------------------------------------------------------------------------
# 1. DuckDB extensions, offline
# ---------------------------------------------------------------------------

#: (import name of the wheel that ships the extension, extension name, required)
_EXTENSION_PACKAGES: tuple[tuple[str, str, bool], ...] = (
    ("duckdb_extension_spatial", "spatial", True),
    ("duckdb_extension_avro", "avro", False),
)


def _extension_file(package: str, extension: str, duckdb_version: str) -> Path | None:
    """Return the extension binary a ``duckdb-extension-*`` wheel ships, if installed."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    base = Path(spec.origin).parent / "extensions"
    wanted = base / f"v{duckdb_version}" / f"{extension}.duckdb_extension"
    if wanted.is_file():
        return wanted
    shipped = sorted(p.parent.name for p in base.glob(f"v*/{extension}.duckdb_extension"))
    raise RuntimeError(
        f"{package} ships {extension} for {shipped or 'no version'}, but duckdb is "
        f"{duckdb_version}: pin duckdb and {package.replace('_', '-')} to the same version."
    )


def install_duckdb_extensions_offline() -> dict[str, bool]:
    """Install the extensions the emulator loads from the local wheels.

    ``INSTALL '<file>'`` copies the binary into DuckDB's extension directory
    (``~/.duckdb/extensions/v<version>/<platform>/``); a later plain
    ``INSTALL spatial`` in any connection is then a no-op. Idempotent.

    Returns ``{extension: installed_from_local_file}``. When the optional avro
    wheel is absent the emulator's avro loading is disabled instead, so it does
    not try to download it.
    """
    import duckdb

    result: dict[str, bool] = {}
    con = duckdb.connect(":memory:")
    try:
        for package, extension, required in _EXTENSION_PACKAGES:
            path = _extension_file(package, extension, duckdb.__version__)
            if path is None:
                if required:
                    raise RuntimeError(
                        f"{package.replace('_', '-')}=={duckdb.__version__} is not installed; "
                        f"bqemulator needs DuckDB's {extension} extension and cannot download it "
                        "offline."
                    )
                result[extension] = False
                continue
            literal = str(path).replace("'", "''")
            con.execute(f"INSTALL '{literal}'")
            result[extension] = True
        con.execute("LOAD spatial")  # fail here, clearly, rather than inside the emulator
    finally:
        con.close()
    if not result.get("avro"):
        _disable_avro_download()
    return result


def _disable_avro_download() -> None:
    """Skip the emulator's best-effort ``INSTALL avro`` (it would try the network)."""
    from bqemulator.storage.engine import DuckDBEngine

    def _load_format_extensions(self: Any) -> None:
        return None

    DuckDBEngine._load_format_extensions = _load_format_extensions  # type: ignore[method-assign]


# ---------------------------------------------------------------------------
# 2. Query parameters in multi-statement scripts
# ---------------------------------------------------------------------------

_PARAM_RE = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_SYSTEM_VAR_RE = re.compile(r"@@[A-Za-z_][A-Za-z0-9_.]*")


def _string_literal_end(sql: str, start: int) -> int:
    """Return the index just past the BigQuery string/bytes literal opening at ``start``.

    Handles ``'…'``, ``"…"`` and their triple-quoted forms. A backslash always
    protects the next character: in a raw literal (``r'…'``) it is kept rather
    than unescaped, but ``r'\\''`` still does not end at the escaped quote
    (GoogleSQL lexes raw and plain literals alike). An unterminated literal
    runs to the end of the text (the emulator's parser reports it).
    """
    quote_char = sql[start]
    quote = quote_char * 3 if sql.startswith(quote_char * 3, start) else quote_char
    i = start + len(quote)
    n = len(sql)
    while i < n:
        if sql[i] == "\\":
            i += 2
            continue
        if sql.startswith(quote, i):
            return i + len(quote)
        i += 1
    return n


def rewrite_named_parameters(sql: str, variables: Mapping[str, str]) -> str:
    """Replace each ``@name`` query parameter in ``sql`` with its script variable.

    ``variables`` maps lower-cased parameter names to variable names (BigQuery
    parameter names are case-insensitive). String and bytes literals, quoted
    identifiers, comments and ``@@system_variables`` are left untouched. A
    ``@name`` without a parameter raises the emulator's ``InvalidQueryError``
    (BigQuery: "Query parameter 'name' not found").
    """
    out: list[str] = []
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in {"'", '"'}:
            end = _string_literal_end(sql, i)
        elif ch == "`":
            close = sql.find("`", i + 1)
            end = n if close < 0 else close + 1
        elif ch == "#" or sql.startswith("--", i):
            close = sql.find("\n", i)
            end = n if close < 0 else close
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
        elif ch == "@":
            system = _SYSTEM_VAR_RE.match(sql, i)
            match = None if system else _PARAM_RE.match(sql, i)
            if system is not None:
                end = system.end()
            elif match is not None:
                name = match.group(1).lower()
                if name not in variables:
                    from bqemulator.domain.errors import InvalidQueryError

                    raise InvalidQueryError(f"Query parameter '{match.group(1)}' not found")
                out.append(variables[name])
                i = match.end()
                continue
            else:
                end = i + 1
        else:
            end = i + 1
        out.append(sql[i:end])
        i = end
    return "".join(out)


def _bq_type_name(parameter_type: Mapping[str, Any]) -> str:
    """Render a REST ``QueryParameterType`` as a BigQuery type string."""
    kind = str(parameter_type.get("type", "STRING")).upper()
    if kind == "ARRAY":
        return f"ARRAY<{_bq_type_name(parameter_type.get('arrayType') or {})}>"
    if kind == "STRUCT":
        fields = ", ".join(
            f"{f.get('name', '')} {_bq_type_name(f.get('type') or {})}".strip()
            for f in parameter_type.get("structTypes") or []
        )
        return f"STRUCT<{fields}>"
    return kind


def install_script_parameter_binding() -> None:
    """Wrap ``bqemulator.jobs.executor._run_query_body`` to bind script parameters.

    Only scripted jobs (several statements or any control flow) with *named*
    parameters take the new path; everything else runs unchanged, except that
    an uncaught ``RAISE`` in any script becomes a 400 ``invalidQuery`` job error
    (as on BigQuery) instead of a 500. Idempotent.
    """
    from bqemulator.domain.errors import InvalidQueryError
    from bqemulator.jobs import executor
    from bqemulator.scripting.exceptions import ScriptRaise
    from bqemulator.scripting.interpreter import ScriptInterpreter
    from bqemulator.sql.parameters import _extract_value

    original = executor._run_query_body
    if getattr(original, "_binds_script_parameters", False):
        return

    async def _run_query_body(
        *,
        project_id: str,
        bq_sql: str,
        query_params: list[dict[str, Any]] | None,
        ctx: Any,
        is_scripted: bool,
        effective_caller: Any,
    ) -> Any:
        if not is_scripted:
            return await original(
                project_id=project_id,
                bq_sql=bq_sql,
                query_params=query_params,
                ctx=ctx,
                is_scripted=is_scripted,
                effective_caller=effective_caller,
            )
        try:
            if not (query_params and query_params[0].get("name")):
                return await original(
                    project_id=project_id,
                    bq_sql=bq_sql,
                    query_params=query_params,
                    ctx=ctx,
                    is_scripted=is_scripted,
                    effective_caller=effective_caller,
                )
            interpreter = ScriptInterpreter(ctx, project_id, caller=effective_caller)
            variables: dict[str, str] = {}
            for param in query_params:
                name = str(param["name"]).lower()
                variable = PARAM_VARIABLE_PREFIX + name
                # The interpreter's root frame is the current one until run() starts.
                interpreter._frames.declare(
                    variable,
                    _bq_type_name(param.get("parameterType") or {}),
                    _extract_value(param),
                )
                variables[name] = variable
            source = rewrite_named_parameters(bq_sql, variables)
            return await executor._run_script(interpreter, source, ctx)
        except ScriptRaise as raised:
            # An uncaught ``RAISE`` escapes bqemulator 1.4.0 as a bare exception
            # (HTTP 500 "An internal error occurred", which google-cloud-bigquery
            # retries for minutes). BigQuery fails the job with the message.
            raise InvalidQueryError(raised.message) from raised

    _run_query_body._binds_script_parameters = True  # type: ignore[attr-defined]
    executor._run_query_body = _run_query_body


# ---------------------------------------------------------------------------
# 3. jobs.query reports a failed query with an HTTP error
# ---------------------------------------------------------------------------


def install_jobs_query_error_status() -> None:
    """Make a failed ``jobs.query`` answer with a non-2xx status, as BigQuery does.

    bqemulator 1.4.0 answers a failed synchronous query (``POST …/queries``)
    with HTTP 200, ``jobComplete: true``, no rows and an ``errors`` list.
    google-cloud-bigquery's ``Client.query_and_wait`` (and ``Client.query`` with
    ``api_method="QUERY"``) then return an *empty result instead of raising*,
    because BigQuery itself answers a failed jobs.query with the error status
    (see the comment in ``google/cloud/bigquery/_job_helpers.py``: "If there
    was an error that failed the job, jobs.query behaves like
    jobs.getQueryResults and returns a non-success HTTP status code").

    The SQL execution error is re-raised, only when the jobs.query route is the
    caller, as an error of the same HTTP status and reason that the route does
    not swallow. ``jobs.insert`` keeps recording the failure on the job.
    Idempotent.
    """
    from bqemulator.api.routes import jobs as jobs_routes
    from bqemulator.domain.errors import DomainError

    original = jobs_routes.execute_query_job
    if getattr(original, "_raises_for_jobs_query", False):
        return
    swallowed = jobs_routes._SQL_EXECUTION_DOMAIN_ERRORS
    route_code = jobs_routes.query.__code__
    classes: dict[type[DomainError], type[DomainError]] = {}

    def _unswallowed(exc: DomainError) -> DomainError:
        kind = type(exc)
        if kind not in classes:
            classes[kind] = type(
                f"JobsQuery{kind.__name__}",
                (DomainError,),
                {
                    "http_status": kind.http_status,
                    "bq_reason": kind.bq_reason,
                    "grpc_status_name": kind.grpc_status_name,
                },
            )
        return classes[kind](exc.message, details=exc.details, location=exc.location)

    async def execute_query_job(*args: Any, **kwargs: Any) -> Any:
        # The frame that started this coroutine is the awaiting route handler.
        from_jobs_query = sys._getframe(1).f_code is route_code
        try:
            return await original(*args, **kwargs)
        except swallowed as exc:
            if not from_jobs_query:
                raise
            raise _unswallowed(exc) from exc

    execute_query_job._raises_for_jobs_query = True  # type: ignore[attr-defined]
    jobs_routes.execute_query_job = execute_query_job


# ---------------------------------------------------------------------------
# 4. jobs.query's short-query mode (jobCreationMode: JOB_CREATION_OPTIONAL)
# ---------------------------------------------------------------------------

#: jobs.query's path (the REST API mounts the routes under /bigquery/v2).
_QUERIES_PATH = re.compile(r"^(?:/bigquery/v2)?/projects/[^/]+/queries$")


class ShortQueryMode:
    """ASGI middleware: answer ``jobs.query`` in short-query mode as BigQuery documents it.

    bqemulator 1.4.0 ignores ``jobCreationMode`` and always answers with a
    ``jobReference``. BigQuery, asked for ``JOB_CREATION_OPTIONAL``, returns a
    SELECT's rows inline without creating a job (no ``jobReference``, a
    ``queryId``) unless it decides a job is needed, and then says why in
    ``jobCreationReason`` (jobs.query's QueryResponse reference). Which
    statements it runs without a job is BigQuery's call and "subject to
    change"; this stand-in answers without a job for a finished SELECT whose
    rows fit in the answer (the case the docs describe) and keeps the job, with
    reason ``LARGE_RESULTS`` or ``OTHER``, for everything else. A request
    without the field is answered exactly as before, so the store's two paths
    (no job, job) both run against it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not _QUERIES_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            optional = json.loads(body or b"{}").get("jobCreationMode") == "JOB_CREATION_OPTIONAL"
        except (ValueError, AttributeError):
            optional = False
        if not optional:
            await self.app(scope, replay, send)
            return
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            payload = b"".join(parts)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if start.get("status") == 200:
                payload = _short_query_answer(payload)
            await send({**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload, "more_body": False})

        await self.app(scope, replay, capture)


def _short_query_answer(payload: bytes) -> bytes:
    """A jobs.query answer as BigQuery gives it in short-query mode (see ``ShortQueryMode``)."""
    try:
        answer = json.loads(payload)
    except ValueError:
        return payload
    reference = answer.get("jobReference") or {}
    jobless = (
        answer.get("jobComplete")
        and not answer.get("pageToken")
        and not answer.get("errors")
        and answer.get("statementType") == "SELECT"
    )
    if jobless:
        del answer["jobReference"]
        answer["queryId"] = f"shortq-{reference.get('jobId', '')}"
    else:
        answer["jobCreationReason"] = {"code": "LARGE_RESULTS" if answer.get("pageToken") else "OTHER"}
    return json.dumps(answer).encode()


def install_short_query_mode() -> None:
    """Put ``ShortQueryMode`` in front of the emulator's REST app (wraps its app factory). Idempotent."""
    from bqemulator import server

    original = server.create_app
    if getattr(original, "_short_query_mode", False):
        return

    def create_app(context: Any) -> Any:
        app = original(context)
        app.add_middleware(ShortQueryMode)
        return app

    create_app._short_query_mode = True  # type: ignore[attr-defined]
    server.create_app = create_app


# ---------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulators.bigquery_emulator",
        description="Run bqemulator offline with script-parameter binding.",
    )
    parser.add_argument("--port", type=int, required=True, help="REST port on --host")
    parser.add_argument("--project", default="test-project", help="default project id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=0, help="Storage gRPC port (0: any free port)")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["trace", "debug", "info", "warning", "error", "critical"],
    )
    args = parser.parse_args(argv)

    install_duckdb_extensions_offline()
    install_script_parameter_binding()
    install_jobs_query_error_status()
    install_short_query_mode()

    from bqemulator.cli import main as bqemulator_main

    bqemulator_main(
        args=[
            "start",
            "--ephemeral",
            "--rest-host",
            args.host,
            "--rest-port",
            str(args.port),
            "--grpc-host",
            args.host,
            "--grpc-port",
            str(args.grpc_port),
            "--project",
            args.project,
            "--log-level",
            args.log_level,
        ],
        prog_name="bqemulator",
    )


# ---------------------------------------------------------------------------
# Test helper
# ---------------------------------------------------------------------------


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, max_chars: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text[-max_chars:]


@dataclass
class EmulatorProcess:
    """A running emulator subprocess."""

    process: subprocess.Popen[bytes]
    endpoint: str
    project: str
    log_path: Path
    startup_seconds: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    def client(self) -> bigquery.Client:
        """A ``google.cloud.bigquery.Client`` talking to this emulator."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def jobs(self) -> BigQueryJobs:
        """The store's REST runner (``shared.store.bigquery.jobs``) talking to this emulator."""
        from shared.store.bigquery.jobs import BigQueryJobs

        return BigQueryJobs(self.project, api_endpoint=self.endpoint)

    def log_tail(self, max_chars: int = 4000) -> str:
        return _log_tail(self.log_path, max_chars)

    def stop(self, timeout: float = 10.0, *, keep_log: bool | None = None) -> None:
        """Terminate the emulator and wait for it (kills it after ``timeout``).

        The log file is removed unless ``keep_log`` (default: the environment
        variable ``BQEMU_KEEP_LOG`` is set).
        """
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if keep_log is None:
            keep_log = bool(os.environ.get("BQEMU_KEEP_LOG"))
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while True:
        code = process.poll()
        if code is not None:
            raise RuntimeError(
                f"BigQuery emulator exited with code {code} before answering {url}.\n"
                f"Log {log_path} (tail):\n{_log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"BigQuery emulator did not answer {url} within {timeout:.0f}s "
                f"(last error: {last_error}).\nLog {log_path} (tail):\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)


def start_bigquery_emulator(
    project: str = "test-project",
    *,
    timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
    log_level: str = "warning",
) -> EmulatorProcess:
    """Start the emulator on a free loopback port and wait until it is ready.

    The emulator's output goes to a temporary log file (``.log_path``), not to
    the caller's stdout. Call ``.stop()`` when done (also done at exit).
    """
    port = _free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="bqemulator-", suffix=".log")
    log_path = Path(log_name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    started = time.monotonic()
    with os.fdopen(log_fd, "wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.emulators.bigquery_emulator",
                "--port",
                str(port),
                "--project",
                project,
                "--log-level",
                log_level,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    emulator = EmulatorProcess(
        process=process,
        endpoint=f"http://127.0.0.1:{port}",
        project=project,
        log_path=log_path,
    )
    atexit.register(emulator.stop)
    try:
        _wait_until_ready(process, f"{emulator.endpoint}/readyz", log_path, timeout)
    except BaseException:
        emulator.stop(keep_log=True)  # the error message points at the log
        raise
    emulator.startup_seconds = time.monotonic() - started
    return emulator


if __name__ == "__main__":
    main()
