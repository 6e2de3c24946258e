"""Secrets from the environment, else from a local JSON file: the local runtime's and the tests' source."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from shared.domain.errors import ConfigurationError
from shared.secret_sources import env_var_name


class EnvSecretSource:
    """Secrets from the environment, else from a local JSON file.

    Lookup order for ``get(name)``:

    1. environment variable ``INTEGRATIONS_SECRET_<NAME>`` (``name`` upper-cased,
       ``-`` -> ``_``), read at each call;
    2. ``path``, if given: a JSON object ``{"<name>": "<value>", ...}`` keyed by
       the secret name as passed to ``get``; read once, on first need. Keep it
       out of version control and readable by the service user only (0600).

    An empty value counts as unset. ``environ`` replaces ``os.environ`` (tests).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._environ = environ
        self._file_values: dict[str, str] | None = None
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        variable = env_var_name(name)
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(variable)
        if value:
            return value
        if self._path is not None:
            value = self._load_file().get(name)
            if value:
                return value
        where = f"env var {variable}" + (f" or key {name!r} in {self._path}" if self._path is not None else "")
        raise ConfigurationError(f"Secret {name!r} is not set: expected a non-empty {where}")

    def _load_file(self) -> dict[str, str]:
        with self._lock:
            if self._file_values is None:
                self._file_values = _read_secret_file(self._path)  # type: ignore[arg-type]
            return self._file_values


def _read_secret_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"Secrets file {path} cannot be read: {type(exc).__name__}") from exc
    except UnicodeDecodeError:
        raise ConfigurationError(f"Secrets file {path} is not UTF-8 text") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        # Not chained: the decode error keeps the whole document (the secrets) in ``exc.doc``.
        raise ConfigurationError(
            f"Secrets file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
            'expected an object {"<name>": "<value>"}'
        ) from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ConfigurationError(f'Secrets file {path} must hold a JSON object of strings {{"<name>": "<value>"}}')
    return values
