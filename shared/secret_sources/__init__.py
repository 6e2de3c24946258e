"""The service's own secrets (e.g. the pepper that hashes org API keys): the port.

Port: ``SecretSource.get(name) -> str``. Adapters:

- ``shared.secret_sources.env.EnvSecretSource`` — local runtime and tests:
  environment variable ``INTEGRATIONS_SECRET_<NAME>`` first, then an optional JSON file;
- ``shared.secret_sources.secret_manager.SecretManagerSource`` — GCP: Secret Manager
  ``projects/{project}/secrets/{name}/versions/latest``, read once per instance.

``name`` is a Secret Manager secret id (letters, digits, ``_`` and ``-``, at
most 255 characters) so the same name works with both adapters. Every failure
is a ``shared.domain.errors.ConfigurationError`` that names the secret and says what
was expected — never its value.
"""

from __future__ import annotations

import re
from typing import Protocol

from shared.domain.errors import ConfigurationError

ENV_PREFIX = "INTEGRATIONS_SECRET_"
SECRET_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


class SecretSource(Protocol):
    def get(self, name: str) -> str: ...


def check_secret_name(name: str) -> str:
    """``name`` if it is a Secret Manager secret id, else ``ConfigurationError``."""
    if not isinstance(name, str) or SECRET_NAME.fullmatch(name) is None:
        raise ConfigurationError(
            f"Secret name {name!r} is malformed: "
            "expected 1-255 letters, digits, '_' or '-' (a Secret Manager secret id)"
        )
    return name


def env_var_name(name: str) -> str:
    """``api-key-pepper`` -> ``INTEGRATIONS_SECRET_API_KEY_PEPPER``."""
    return ENV_PREFIX + check_secret_name(name).upper().replace("-", "_")
