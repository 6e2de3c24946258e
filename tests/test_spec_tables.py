"""The two tables the cost pipelines read are the spec's, column by column and
type by type (extra columns of ours are allowed beside them, never instead)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.domain.schemas import column_types

ROOT = Path(__file__).resolve().parent.parent

# The spec's "Schema Definitions" tables, column by column, as the spec writes them.
SPEC_COLUMNS = {
    "org_integrations": [
        ("integration_id", "STRING"),
        ("org_slug", "STRING"),
        ("provider", "STRING"),
        ("status", "STRING"),
        ("config", "JSON"),
        ("validated_at", "TIMESTAMP"),
        ("error_message", "STRING"),
        ("created_at", "TIMESTAMP"),
        ("updated_at", "TIMESTAMP"),
        ("created_by", "STRING"),
    ],
    "org_credentials": [
        ("credential_id", "STRING"),
        ("org_slug", "STRING"),
        ("provider", "STRING"),
        ("credential_type", "STRING"),
        ("encrypted_value", "BYTES"),
        ("key_version", "STRING"),
        ("fingerprint", "STRING"),
        ("expires_at", "TIMESTAMP"),
        ("created_at", "TIMESTAMP"),
        ("updated_at", "TIMESTAMP"),
        ("created_by", "STRING"),
    ],
}


@pytest.mark.parametrize("table", sorted(SPEC_COLUMNS))
def test_schema_files_carry_the_spec_columns_and_types(table):
    ours = column_types(table)
    for name, kind in SPEC_COLUMNS[table]:
        assert ours.get(name) == kind, f"{table}.{name}: spec says {kind}, configs/schemas says {ours.get(name)}"


def test_settings_module_is_a_leaf():
    """shared.common.config imports nothing from the service, the stores, the adapters or the wiring."""
    tree = ast.parse((ROOT / "shared" / "common" / "config.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name == "shared" or name.startswith("shared.")}
    assert ours <= {"shared.domain.errors"}, ours
