"""Who is calling: the API key (or platform identity) behind a request, and the audit rows it writes."""

from __future__ import annotations

from typing import NamedTuple

from shared.domain.models import AuditEvent


class Caller(NamedTuple):
    """Who is calling: the API key's id and organization, and the request being served.

    Immutable records on every request path are NamedTuples rather than frozen
    dataclasses: Python 3.11 compiles six methods for a frozen dataclass at
    import (~0.3 ms each class, paid by every cold start), one for a NamedTuple.
    """

    key_id: str
    org_slug: str
    is_admin: bool
    request_id: str
    # The person behind the frontend's call (optional X-User-Id header); the key
    # proves the organization, this only says who to credit in created_by/audit.
    user_id: str | None = None

    @property
    def actor(self) -> str:
        return self.user_id or self.key_id

    def audit(
        self,
        org_slug: str,
        provider: str,
        action: str,
        outcome: str = "success",
        *,
        fingerprint: str | None = None,
        detail: str | None = None,
        pipeline: str | None = None,
    ) -> AuditEvent:
        """An audit row of this caller's doing (its key, request and acting user)."""
        return AuditEvent(
            org_slug=org_slug,
            provider=provider,
            action=action,
            outcome=outcome,
            actor_key_id=self.key_id,
            request_id=self.request_id,
            credential_fingerprint=fingerprint,
            detail=detail,
            actor=self.actor,
            pipeline=pipeline,
        )
