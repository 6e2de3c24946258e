"""The API-key check that rides on a request's first store job.

The service sets ``pending_key_check`` for a signed key it has not confirmed
against the store yet; the adapter's first job in that context answers it
(docs/design/api-key-auth.md).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class KeyCheck:
    """An API key whose signature the service verified, to be confirmed against the store.

    ``confirmed`` is None until a job (or the service's own lookup) answered
    it, then True (on file with ``key_hash``, ``org_slug`` and ``is_admin``,
    not revoked) or False.
    """

    key_id: str
    key_hash: str
    org_slug: str
    is_admin: bool
    confirmed: bool | None = None


# The check the current request's first store job must carry (a ContextVar: each request
# thread has its own; worker threads a use case starts see none, and run after that job).
pending_key_check: ContextVar[KeyCheck | None] = ContextVar("pending_key_check", default=None)


def key_check_to_carry() -> KeyCheck | None:
    """The pending key check no job has answered yet, if any."""
    check = pending_key_check.get()
    return check if check is not None and check.confirmed is None else None
