"""A registry with many one-check SaaS providers, for fleet-sized tests and benches.

An organization has one integration per provider, so importing or validating
dozens of credentials for one org needs dozens of providers; each of these has a
single who-am-I check (``GET /me``) that a tiny local server answers.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from shared.domain.providers import REGISTRY_PATH


def saas_provider(name: str) -> dict[str, Any]:
    return {
        "display_name": name.upper(),
        "category": "saas",
        "saas_category": "development",
        "connection": "api_token",
        "credential_type": "api_key",
        "required_fields": [],
        "pipelines": ["saas/seats"],
        "credential": {"field": "api_key", "pattern": "^tok_[A-Za-z0-9]{8,64}$", "example": "tok_00000000"},
        "base_url": "https://example.invalid",
        "validation": {
            "kind": "http",
            "headers": {"Authorization": "Bearer {secret}"},
            "checks": {"whoami": {"method": "GET", "path": "/me"}},
            "responses": {"invalid_key": [{"status": 401}], "forbidden": [{"status": 403}]},
            "requirements": {"saas/seats": {"description": "Seats", "requires": ["whoami"], "fix": "New token"}},
        },
    }


def write_fleet_registry(directory: Path, providers: list[str]) -> Path:
    """The real registry plus ``providers``, written under ``directory``; returns its path."""
    document = yaml.safe_load(REGISTRY_PATH.read_text())
    document["providers"].update({name: saas_provider(name) for name in providers})
    path = directory / f"providers-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(yaml.safe_dump(document))
    return path
