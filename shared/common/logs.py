"""Structured JSON logs with the request id, in Cloud Logging's field names.

Every logger of the service is named under ``integrations`` (``LOGGER_TREE``):
``integrations.service``, ``integrations.crypto.cloud_kms``, ... so one level
setting and one format cover them all. ``configure`` puts a single JSON
handler on the root logger, so what libraries log (a botocore warning, a
Python ``warnings`` message, werkzeug) comes out as the same one-line JSON
records with a ``severity``; the service's own tree logs at ``LOG_LEVEL``,
libraries at WARNING and above.

``request_context`` puts the request id on every record logged while a
request is handled and, from ``X-Cloud-Trace-Context`` or ``traceparent``,
the trace the request belongs to: in Google Cloud (``GCP_PROJECT`` known)
each line then carries ``logging.googleapis.com/trace`` (and ``spanId``,
``trace_sampled``), which Cloud Logging uses to group a request's lines
under its trace.

Lines are written to ``sys.stdout`` as it is at each write: with
``LOG_EXECUTION_ID=true`` the functions framework swaps stdout during a
request for a stream that adds the execution id to each JSON line.

Nothing here ever formats a secret: callers log ids, statuses and class
names.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

LOGGER_TREE = "integrations"
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
HEX_DIGITS = frozenset("0123456789abcdef")


class Trace(NamedTuple):
    trace_id: str  # 32 hex characters
    span_id: str | None  # 16 hex characters
    sampled: bool


_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_trace: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("trace", default=None)

_STANDARD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= HEX_DIGITS and set(text) != {"0"}  # all zeros: "no trace"


def trace_from_headers(headers: Mapping[str, str] | Any) -> Trace | None:
    """The request's trace, from ``traceparent`` (W3C: ``00-TRACE-SPAN-FLAGS``) or else
    ``X-Cloud-Trace-Context`` (``TRACE/SPAN;o=1``, the span in decimal); None when neither is
    there or well formed. Parsed without regular expressions: none is compiled on a cold start."""
    parts = (headers.get("traceparent") or "").strip().lower().split("-")
    if len(parts) == 4 and _hex(parts[1], 32) and _hex(parts[2], 16) and len(parts[3]) == 2:
        flags = int(parts[3], 16) if set(parts[3]) <= HEX_DIGITS else 0
        return Trace(parts[1], parts[2], bool(flags & 1))
    cloud = (headers.get("X-Cloud-Trace-Context") or "").strip().lower()
    trace_id, _, rest = cloud.partition("/")
    if not _hex(trace_id, 32):
        return None
    span, _, options = rest.partition(";o=")
    span_id = int(span) if span.isdigit() and len(span) <= 20 else 0
    return Trace(trace_id, f"{span_id:016x}" if 0 < span_id < 2**64 else None, options == "1")


def project_id() -> str | None:
    """The Google Cloud project lines are traced in (Cloud Logging's trace field names it)."""
    return os.environ.get("GCP_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        trace, project = _trace.get(), project_id()
        if trace is not None and project:
            entry[TRACE_FIELD] = f"projects/{project}/traces/{trace.trace_id}"
            if trace.span_id:
                entry[SPAN_FIELD] = trace.span_id
            entry[SAMPLED_FIELD] = trace.sampled
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES})
        return json.dumps(entry, default=str)


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """One JSON line per record on ``sys.stdout`` as it is when the record is written."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(JsonFormatter())

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass  # always the current stdout


@contextmanager
def request_context(request_id: str, headers: Mapping[str, str] | Any = None) -> Iterator[None]:
    """Records logged inside carry ``request_id`` (and the trace ``headers`` name, if any)."""
    token = _request_id.set(request_id)
    trace_token = _trace.set(trace_from_headers(headers) if headers is not None else None)
    try:
        yield
    finally:
        _trace.reset(trace_token)
        _request_id.reset(token)


def configure(level: str = "INFO", *others: str) -> None:
    """Send every log record to stdout as one JSON line (idempotent).

    The service's tree logs at ``level``; ``others`` names third-party loggers
    (werkzeug, Flask's app logger) that log at ``level`` too instead of
    WARNING; every other library logs WARNING and above.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, JsonHandler)), None)
    if handler is None:
        # A plain StreamHandler on the root is the functions framework's (LOG_EXECUTION_ID): it would
        # write each record again as unstructured text.
        root.handlers = [h for h in root.handlers if type(h) is not logging.StreamHandler]
        root.addHandler(JsonHandler())
        root.setLevel(logging.WARNING)
        logging.captureWarnings(True)  # Python warnings as records too, not as text on stderr
    service = logging.getLogger(LOGGER_TREE)
    service.setLevel(level)
    service.propagate = True
    # The functions framework's logging.config.dictConfig (LOG_EXECUTION_ID) disables every logger that
    # existed before it ran: none of the service's may stay silent.
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(existing, logging.Logger) and (name == LOGGER_TREE or name.startswith(LOGGER_TREE + ".")):
            existing.disabled = False
    for stray in [h for h in service.handlers if isinstance(h.formatter, JsonFormatter)]:
        service.removeHandler(stray)  # an earlier configure's: the root's handler writes them now
    for name in others:
        other = logging.getLogger(name)
        other.handlers = []
        other.setLevel(level)
        other.propagate = True
