"""The integrations service, in layers that import only downward (docs/architecture.md):

    commands/    the local server and the admin CLI (what an operator runs)
    inbound/     HTTP plumbing every Cloud Function shares; the pipelines' in-process entry
    app/         the composition root
    jobs/        revalidation, key rotation, bulk import
    usecases/    the integration lifecycle, API keys, alerts and webhooks, subscriptions, ...
    store/ crypto/ secret_sources/ validators/ oauth/     adapters behind ports
    egress/      outbound networking
    common/      settings, logs, bounded JSON, retries
    domain/      base types

(``functions/`` and ``main.py``, the Cloud Functions, sit between ``inbound`` and ``commands``.)

Modules that moved keep their old dotted paths, through this one mechanism: ``MOVED`` maps each
old path to the module that took it over, and ``MOVED_NAMES`` the names that went to another
module than the rest of theirs. Importing an old path gives the new module itself (the same
object, so patching a name through either path patches both), with its moved names attached,
and warns with a ``DeprecationWarning``. Running an old path (``python -m shared.cli``,
``python -m shared.local_server``, ``python -m shared.providers --check``) runs the new module,
without a warning: those commands keep their documented names. docs/design/module-moves.md says
why; tests/test_moved_modules.py holds each entry to it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

MOVED: dict[str, str] = {
    "shared.alerts": "shared.usecases.alerts",
    "shared.bulk_import": "shared.jobs.bulk_import",
    "shared.cli": "shared.commands.cli",
    "shared.config": "shared.common.config",
    "shared.cors": "shared.inbound.cors",
    "shared.credential_access": "shared.usecases.credential_access",
    "shared.errors": "shared.domain.errors",
    "shared.google_rest": "shared.egress.google_rest",
    "shared.http": "shared.inbound.http",
    "shared.http_client": "shared.egress.http_client",
    "shared.jsonbody": "shared.common.jsonbody",
    "shared.key_rotation": "shared.jobs.key_rotation",
    "shared.lifecycle": "shared.domain.lifecycle",
    "shared.local_server": "shared.commands.local_server",
    "shared.logs": "shared.common.logs",
    "shared.models": "shared.domain.models",
    "shared.oauth.flow": "shared.usecases.oauth_flow",
    "shared.oauth.refresh": "shared.usecases.oauth_refresh",
    "shared.outbound": "shared.egress.guard",
    "shared.ports": "shared.usecases.ports",
    "shared.providers": "shared.domain.providers",
    "shared.retries": "shared.common.retries",
    "shared.revalidation": "shared.jobs.revalidation",
    "shared.schemas": "shared.domain.schemas",
    "shared.service": "shared.usecases.integrations",
    "shared.service_secrets": "shared.secret_sources",
    "shared.store.bigquery_jobs": "shared.store.bigquery.jobs",
    "shared.store.bigquery_store": "shared.store.bigquery.base",
    "shared.store.sqlite_store": "shared.store.sqlite.base",
    "shared.subscriptions": "shared.usecases.subscriptions",
    "shared.webhooks": "shared.egress.webhooks",
    "shared.wiring": "shared.app.wiring",
}

# Old path -> {name: the module that holds it now}, for names that did not move with the rest.
MOVED_NAMES: dict[str, dict[str, str]] = {
    "shared.credential_access": {"access_credential": "shared.inbound.pipelines"},
    "shared.service": {
        "Caller": "shared.domain.caller",
        "credential_fingerprint": "shared.domain.models",
        "apply_validation": "shared.domain.lifecycle",
        "expired_result": "shared.domain.lifecycle",
        "ORG_SLUG": "shared.domain.inputs",
        "check_org_slug": "shared.domain.inputs",
        "parse_timestamp": "shared.domain.inputs",
        "TIMESTAMP_SHAPE": "shared.domain.inputs",
        "TIMESTAMP_YEARS": "shared.domain.inputs",
        "SIGNED_API_KEY_SHAPE": "shared.usecases.api_keys",
        "UNSIGNED_API_KEY_SHAPE": "shared.usecases.api_keys",
        "ORG_ROLE": "shared.usecases.api_keys",
        "ADMIN_ROLE": "shared.usecases.api_keys",
        "KEY_SIGNING_LABEL": "shared.usecases.api_keys",
        "MAX_SECRET_CHARS": "shared.usecases.credential_checks",
    },
    "shared.store.bigquery_store": {
        "BigQueryStore": "shared.store.bigquery",
        "MIGRATED_RENAMES": "shared.store.bigquery.schema",
        "NEVER_CHECKED": "shared.store.bigquery.fleet",
        "NEVER_CHECKED_AT": "shared.store.bigquery.fleet",
    },
    "shared.store.sqlite_store": {"SqliteStore": "shared.store.sqlite"},
    "shared.service_secrets": {
        "EnvSecretSource": "shared.secret_sources.env",
        "SecretManagerSource": "shared.secret_sources.secret_manager",
        "SECRET_MANAGER_BASE_URL": "shared.secret_sources.secret_manager",
        "DEFAULT_TIMEOUT": "shared.secret_sources.secret_manager",
        "DEFAULT_RETRY_DEADLINE": "shared.secret_sources.secret_manager",
        "logger": "shared.secret_sources.secret_manager",
    },
}


class MovedModules:
    """Finder and loader of the old paths (``sys.meta_path``, after the real finders: it only
    answers what they could not find)."""

    def __init__(self) -> None:
        self.real_specs: dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        from importlib.machinery import ModuleSpec
        from importlib.util import find_spec

        # The new module's file as origin: ``python -m <old path>`` runs it with that __file__.
        new = find_spec(MOVED[fullname])
        return ModuleSpec(fullname, cast("Loader", self), origin=new.origin if new is not None else None)

    def create_module(self, spec: Any) -> Any:
        import importlib
        import warnings

        new = MOVED[spec.name]
        # stacklevel 2: the line that imported the old path (warnings skips the import system's frames).
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        for name, home in MOVED_NAMES.get(spec.name, {}).items():
            if not hasattr(module, name):
                setattr(module, name, getattr(importlib.import_module(home), name))
        self.real_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        """Nothing to run (the new module ran when it was imported); only its own spec is put back,
        which the import system replaced with the old path's."""
        module.__spec__ = self.real_specs.pop(module.__spec__.name)

    def get_code(self, fullname: str) -> Any:
        """``python -m <old path>`` (runpy): the new module's code, run as ``__main__``."""
        from importlib.util import find_spec

        spec = find_spec(MOVED[fullname])
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(spec.name)  # type: ignore[attr-defined]


# Once, even if this module is reloaded (a reloaded class is another class: compare by name).
if not any(type(finder).__qualname__ == MovedModules.__qualname__ for finder in sys.meta_path):
    sys.meta_path.append(MovedModules())
