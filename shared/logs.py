"""Structured JSON logs with the request id, in Cloud Logging's field names.

Nothing here ever formats a secret: callers log ids, statuses and class
names. ``request_context`` puts the request id on every record logged while
a request is handled.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES})
        return json.dumps(entry, default=str)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def configure(level: str = "INFO", *others: str) -> None:
    """Send the service's loggers to stdout as JSON lines (once per process).

    ``others`` names third-party loggers (werkzeug, Flask's app logger) that
    should write the same format instead of their own coloured stderr lines.
    """
    root = logging.getLogger("integrations")
    handler = next((h for h in root.handlers if isinstance(h.formatter, JsonFormatter)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = True
    for name in others:
        other = logging.getLogger(name)
        if handler not in other.handlers:
            other.handlers = [handler]
            other.setLevel(level)
            other.propagate = False
