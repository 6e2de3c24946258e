"""Cloud Functions entry points: each is deployed as its own function from
this one source archive, chosen by ``--entry-point`` / Terraform's
``entry_point``. The local server serves all of them from one process.

An entry point's module is imported when the entry point is first looked up
(a module ``__getattr__``, PEP 562): functions_framework looks up the one
target an instance serves, so a cold start imports that function's module
(and what it uses), not the other twenty. ``ENTRY_POINTS`` (the local server,
the tests) imports them all."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import import_module
from typing import Any

from shared.common import logs

logs.configure(os.environ.get("LOG_LEVEL", "INFO"))

# Entry point -> the module of functions/ that defines it.
ENTRY_POINT_MODULES = {
    "integration_setup": "functions.setup",
    "integration_validate": "functions.validate",
    "integration_list": "functions.list_integrations",
    "integration_get": "functions.get",
    "integration_update": "functions.update",
    "integration_delete": "functions.delete",
    "integration_rotate": "functions.rotate",
    "integration_revalidate": "functions.revalidate",
    "webhook_set": "functions.webhook",
    "webhook_get": "functions.webhook",
    "webhook_delete": "functions.webhook",
    "alerts_list": "functions.alerts",
    "aws_setup_instructions": "functions.aws_setup_instructions",
    "oauth_start": "functions.oauth_start",
    "oauth_callback": "functions.oauth_callback",
    "oauth_complete": "functions.oauth_complete",
    "subscription_providers_list": "functions.subscriptions",
    "subscription_provider_update": "functions.subscriptions",
    "integration_import": "functions.import_integrations",
    "admin_keys": "functions.keys",
    "admin_key_rotate": "functions.keys",
    "admin_key_rewrap": "functions.keys",
    "credential_access": "functions.credential_access",
}

__all__ = list(ENTRY_POINT_MODULES)


def __getattr__(name: str) -> Any:
    """An entry point (importing its module), or ``ENTRY_POINTS``: every entry point by name."""
    if name == "ENTRY_POINTS":
        return {entry_point: _handler(entry_point) for entry_point in ENTRY_POINT_MODULES}
    if name in ENTRY_POINT_MODULES:
        return _handler(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *ENTRY_POINT_MODULES, "ENTRY_POINTS"})


def _handler(entry_point: str) -> Callable[..., Any]:
    handler: Callable[..., Any] = getattr(import_module(ENTRY_POINT_MODULES[entry_point]), entry_point)
    return handler
