"""Org API keys: issued, checked and confirmed (the ``IntegrationService``'s authentication).

A key is ik_v2_<org>_<key id>_<role>_<signature>: the signature (HMAC-SHA256 under a key
derived from the pepper) proves org and role without the store, so a key of another org or
role is refused before anything is read. Whether the key is still on file and not revoked
is confirmed by the store inside the request's first job (``authenticated``), or by one
lookup when the request has no job; a confirmed key is then trusted for AUTH_CACHE_SECONDS.
Keys issued before signatures (ik_<key id>_<secret>) are looked up first, as they always
were. docs/design/api-key-auth.md has the reasons.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

from shared.domain.caller import Caller
from shared.domain.errors import Forbidden, Unauthenticated
from shared.domain.inputs import check_org_slug
from shared.domain.models import ApiKeyRecord

if TYPE_CHECKING:
    from shared.store import KeyCheck
    from shared.usecases.ports import ServicePorts

# Org API keys: signed (ik_v2_<org>_<key id>_<o|a>_<signature>) and, issued before those, unsigned.
SIGNED_API_KEY_SHAPE = re.compile(r"ik_v2_([a-z0-9][a-z0-9_-]{1,62})_([0-9a-f]{16})_([oa])_([A-Za-z0-9_-]{43})")
UNSIGNED_API_KEY_SHAPE = re.compile(r"^ik_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")
ORG_ROLE, ADMIN_ROLE = "o", "a"
# Derives the key-signing key from the pepper (the pepper also hashes keys and derives webhook secrets).
KEY_SIGNING_LABEL = b"integrations:api-key-signature:v2"


class CachedKey(NamedTuple):
    """An API key record and when it was read (the auth cache's entry)."""

    record: ApiKeyRecord
    fetched_at: float


class KeyCache:
    """The keys this instance read or confirmed, by key id, and when (thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[str, CachedKey] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str, *, max_age_seconds: float) -> ApiKeyRecord | None:
        with self._lock:
            cached = self._entries.get(key_id)
        if cached is not None and time.monotonic() - cached.fetched_at < max_age_seconds:
            return cached.record
        return None

    def put(self, record: ApiKeyRecord) -> None:
        with self._lock:
            self._entries[record.key_id] = CachedKey(record, time.monotonic())


class ApiKeyAuthentication:
    """The service's API-key operations (a mixin of ``IntegrationService``, which provides the ports
    and the cache)."""

    adapters: ServicePorts
    _key_cache: KeyCache

    def _hash_api_key(self, api_key: str) -> str:
        return hmac.new(self.adapters.api_key_pepper, api_key.encode(), hashlib.sha256).hexdigest()

    def _key_signature(self, org_slug: str, key_id: str, role: str) -> str:
        signing_key = hmac.new(self.adapters.api_key_pepper, KEY_SIGNING_LABEL, hashlib.sha256).digest()
        message = f"{org_slug}\x00{key_id}\x00{role}".encode()
        return base64.urlsafe_b64encode(hmac.new(signing_key, message, hashlib.sha256).digest()).rstrip(b"=").decode()

    def create_api_key(
        self, org_slug: str, *, is_admin: bool = False, label: str | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for ``org_slug``; the plaintext is returned once and never stored."""
        check_org_slug(org_slug)
        key_id = secrets.token_hex(8)
        role = ADMIN_ROLE if is_admin else ORG_ROLE
        api_key = f"ik_v2_{org_slug}_{key_id}_{role}_{self._key_signature(org_slug, key_id, role)}"
        record = ApiKeyRecord(
            key_id=key_id, org_slug=org_slug, key_hash=self._hash_api_key(api_key), is_admin=is_admin, label=label
        )
        self.adapters.store.add_api_key(record)
        return record, api_key

    def authenticate(self, api_key: str | None, org_slug: str, request_id: str, *, admin: bool = False) -> Caller:
        """The caller behind ``X-API-Key``, allowed on ``org_slug`` only (or on admin operations), confirmed now.

        A key of another org gets 403 before anything about ``org_slug`` is
        read, so the answer says nothing about what that org has. An
        unconfirmed signed key costs one store lookup here; ``authenticated``
        lets the request's first job carry it instead.
        """
        caller, check = self._identify(api_key, org_slug, request_id, admin=admin)
        if check is not None:
            self._confirm(check)
        return caller

    @contextmanager
    def authenticated(
        self, api_key: str | None, org_slug: str, request_id: str, *, admin: bool = False
    ) -> Iterator[Caller]:
        """``authenticate``, with the store's confirmation riding on the block's first store job.

        Nothing the block does reaches the caller unless the key is confirmed:
        the store reads and writes nothing for a refused key (it raises
        ``Unauthenticated``), and a block that ran no job (or failed before
        one) is followed by the lookup, whose refusal replaces its answer.
        Side effects outside the store that a use case makes before its first
        job (setup's KMS encrypt) happen only for a validly signed key.
        """
        from shared.store import pending_key_check  # the port; loading main.py does not need it

        caller, check = self._identify(api_key, org_slug, request_id, admin=admin)
        if check is None:
            yield caller
            return
        token = pending_key_check.set(check)
        try:
            yield caller
        finally:
            pending_key_check.reset(token)
            if check.confirmed is None:
                self._confirm(check)
            if not check.confirmed:
                raise Unauthenticated("Invalid API key")  # even if the block swallowed the store's refusal
            self._remember(ApiKeyRecord(check.key_id, check.org_slug, check.key_hash, check.is_admin))

    def _identify(
        self, api_key: str | None, org_slug: str, request_id: str, *, admin: bool
    ) -> tuple[Caller, KeyCheck | None]:
        """The caller the key names, and the store check still owed (None: confirmed or cached)."""
        if not api_key:
            raise Unauthenticated("Missing X-API-Key header")
        signed = SIGNED_API_KEY_SHAPE.fullmatch(api_key)
        if signed is None:
            record = self._unsigned_key_record(api_key)
            self._check_scope(record.org_slug, record.is_admin, org_slug, admin=admin)
            return Caller(record.key_id, record.org_slug, record.is_admin, request_id), None
        key_org, key_id, role, signature = signed.groups()
        # compare_digest: the time taken does not depend on how much of a forged signature matches.
        if not hmac.compare_digest(signature, self._key_signature(key_org, key_id, role)):
            raise Unauthenticated("Invalid API key")
        is_admin = role == ADMIN_ROLE
        self._check_scope(key_org, is_admin, org_slug, admin=admin)
        caller = Caller(key_id=key_id, org_slug=key_org, is_admin=is_admin, request_id=request_id)
        key_hash = self._hash_api_key(api_key)
        cached = self._cached_key(key_id)
        if cached is not None and hmac.compare_digest(cached.key_hash, key_hash):
            return caller, None
        from shared.store import KeyCheck

        return caller, KeyCheck(key_id=key_id, key_hash=key_hash, org_slug=key_org, is_admin=is_admin)

    @staticmethod
    def _check_scope(key_org: str, key_is_admin: bool, org_slug: str, *, admin: bool) -> None:
        if admin:
            if not key_is_admin:
                raise Forbidden("This operation needs an admin API key")
        elif key_org != org_slug:
            raise Forbidden("API key is not valid for this organization")

    def _confirm(self, check: KeyCheck) -> None:
        """One store lookup: is the signed key on file as it claims, and not revoked?"""
        record = self.adapters.store.find_api_key(check.key_id)
        check.confirmed = (
            record is not None
            and hmac.compare_digest(record.key_hash, check.key_hash)
            and record.revoked_at is None
            and record.org_slug == check.org_slug
            and record.is_admin == check.is_admin
        )
        if not check.confirmed:
            raise Unauthenticated("Invalid API key")
        assert record is not None
        self._remember(record)

    def _unsigned_key_record(self, api_key: str) -> ApiKeyRecord:
        """The record of a key issued before signatures (looked up unless cached), or Unauthenticated."""
        match = UNSIGNED_API_KEY_SHAPE.match(api_key)
        record = None
        if match:
            record = self._cached_key(match.group(1))
            if record is None:
                record = self.adapters.store.find_api_key(match.group(1))
                if record is not None:
                    self._remember(record)
        expected = record.key_hash if record else "0" * 64
        # compare_digest even on a miss, so timing does not tell ids apart.
        matches = hmac.compare_digest(self._hash_api_key(api_key), expected)
        if record is None or not matches or record.revoked_at is not None:
            raise Unauthenticated("Invalid API key")
        return record

    def _cached_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key's record if this instance read or confirmed it less than AUTH_CACHE_SECONDS ago."""
        return self._key_cache.get(key_id, max_age_seconds=self.adapters.settings.auth_cache_seconds)

    def _remember(self, record: ApiKeyRecord) -> None:
        if self.adapters.settings.auth_cache_seconds > 0:
            self._key_cache.put(record)
