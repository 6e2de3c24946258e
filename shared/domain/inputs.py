"""What callers send, checked the same way everywhere: the organization slug and timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from shared.domain.errors import BadRequest

ORG_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")


def check_org_slug(org_slug: str) -> None:
    if not ORG_SLUG.fullmatch(org_slug):
        raise BadRequest(
            "Organization slug must be 2-63 characters of lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )


# Expiry dates outside this range are typos or probes; far ones also overflow UTC conversion.
TIMESTAMP_YEARS = (2000, 2200)
TIMESTAMP_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$", re.ASCII)


def parse_timestamp(value: Any, field_name: str) -> datetime | None:
    """ISO-8601 with a zone (``Z`` or an offset), or None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Field '{field_name}' must be an ISO-8601 timestamp string")
    if not TIMESTAMP_SHAPE.fullmatch(value.upper()):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", value, re.ASCII):
            raise BadRequest(f"Field '{field_name}' needs a time zone (e.g. a trailing Z)")
        raise BadRequest(f"Field '{field_name}' is not an ISO-8601 timestamp: expected e.g. 2027-01-31T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"Field '{field_name}' is not an ISO-8601 timestamp: expected e.g. 2027-01-31T00:00:00Z"
        ) from None
    low, high = TIMESTAMP_YEARS
    if not low <= parsed.year <= high:
        raise BadRequest(f"Field '{field_name}' must be a date in the years {low} to {high}")
    return parsed.astimezone(UTC)
