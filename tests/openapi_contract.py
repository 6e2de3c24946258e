"""Checks real responses against openapi.yaml (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@cache
def document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI_PATH.read_text())


def _operation(method: str, path: str) -> dict[str, Any]:
    for template, item in document()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return item[method.lower()]
    raise AssertionError(f"openapi.yaml has no operation {method} {path}")


def check_response(method: str, path: str, status: int, body: Any) -> None:
    """Fail if ``body`` does not match the documented response for ``status``."""
    responses = _operation(method, path)["responses"]
    assert str(status) in responses, f"{method} {path} answered undocumented status {status}"
    response = responses[str(status)]
    if "$ref" in response:
        response = document()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": document()["components"]})
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
    assert not errors, f"{method} {path} {status}: " + "; ".join(e.message for e in errors[:5])
