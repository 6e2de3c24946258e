"""JSON from outside, parsed with limits: bounded nesting, no NaN/Infinity.

``json.loads`` recurses once per nesting level, so a 64 KiB body of ``[``
raises ``RecursionError`` (a 500); and it accepts ``NaN``/``Infinity``, which
are not JSON and which no store column or client expects. ``loads_bounded``
measures the depth first, without recursion, and refuses both with
``BadRequest``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.domain.errors import BadRequest

MAX_DEPTH = 32
# A JSON string literal (escapes included): brackets inside strings do not nest.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (0 for a scalar)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub('""', text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_bounded(raw: bytes | str, *, what: str = "Request body", max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that answers ``BadRequest`` for bad UTF-8, bad JSON, deep nesting or NaN."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{what} is not valid UTF-8") from None
    else:
        text = raw
    if nesting_depth(text) > max_depth:
        raise BadRequest(f"{what} nests deeper than {max_depth} levels")

    def refuse(name: str) -> Any:
        raise BadRequest(f"{what} contains {name}, which is not a JSON number")

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        raise BadRequest(f"{what} is not valid JSON") from None
