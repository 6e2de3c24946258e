"""Key rotation you can watch: rotate the credential key, move every
credential onto the new primary version, and report where they all are.

- ``rotate_key``: the crypto port makes a new key version primary (Cloud KMS:
  create + updatePrimaryVersion, read back; local keyring: the new key written
  durably, then made primary). New ciphertext uses it at once; old ciphertext
  still decrypts. A rotation that cannot be confirmed raises
  ``KeyRotationFailed`` (503, naming the keyring) and the old primary stays.
- ``rewrap_all``: re-encrypts every credential not on the primary version:
  decrypt, encrypt with the same associated data (``credential_aad`` of its
  row), conditional write. In batches of ``rewrap_batch_size``: each batch is
  one store read and one store write whatever its size, and the KMS calls of
  a batch run on a pool. The write skips any credential rotated, deleted or
  re-encrypted by someone else since the read, so the job is safe next to
  user traffic and next to another run of itself, and exactly one audit row
  (``rewrap``) records each credential moved. A run stops at its time box;
  the next run picks up what is left (only rows off the primary are read).
- ``key_report``: the primary version, every version with its state and how
  many credentials name it, and the share on the primary. A version is
  reported ``unused`` only when no stored credential names it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared.crypto import credential_aad
from shared.domain.errors import EncryptionFailed, KeyRotationFailed
from shared.domain.models import StoredCredential, utc_now

if TYPE_CHECKING:
    from shared.domain.caller import Caller
    from shared.usecases.integrations import IntegrationService

logger = logging.getLogger("integrations.key_rotation")

FLEET_ORG = "*"  # audit rows about the key itself belong to no organization


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)


def key_report(service: IntegrationService) -> dict[str, Any]:
    cipher = service.adapters.cipher
    primary = cipher.primary_version()
    states = cipher.key_versions()
    counts = service.adapters.store.count_credentials_by_key_version()
    total = sum(counts.values())
    versions = []
    # Every version the key has, and every version a credential names even if
    # the key no longer lists it: a count is never hidden.
    for version in sorted(set(states) | set(counts), key=_version_order):
        credentials = counts.get(version, 0)
        versions.append(
            {
                "version": version,
                "state": states.get(version, "unknown"),
                "primary": version == primary,
                "credentials": credentials,
                "share": round(credentials / total, 4) if total else 0.0,
                "unused": credentials == 0,
            }
        )
    on_primary = counts.get(primary, 0)
    return {
        "primary_version": primary,
        "total_credentials": total,
        "on_primary": on_primary,
        "share_on_primary": round(on_primary / total, 4) if total else 1.0,
        "versions": versions,
    }


def rotate_key(service: IntegrationService, caller: Caller) -> dict[str, Any]:
    """A new primary key version, audited; a rotation that fails is audited too and changes nothing."""
    cipher = service.adapters.cipher
    previous = cipher.primary_version()
    try:
        new_version = cipher.rotate_key()
    except KeyRotationFailed as error:
        service.adapters.store.record_audit(
            caller.audit(FLEET_ORG, "kms", "rotate_key", "failure", detail=f"primary key version {previous} kept")
        )
        logger.error("key rotation failed", extra={"primary": previous, "error": error.code})
        raise
    service.adapters.store.record_audit(
        caller.audit(FLEET_ORG, "kms", "rotate_key", detail=f"primary key version {previous} -> {new_version}")
    )
    logger.info("key rotated", extra={"previous": previous, "primary": new_version})
    return {"previous_version": previous, "primary_version": new_version}


@dataclass
class RewrapSummary:
    primary_version: str = ""
    scanned: int = 0
    rewrapped: int = 0
    skipped: int = 0  # changed by someone else between read and write
    failed: int = 0  # could not be decrypted (e.g. its version is disabled)
    batches: int = 0
    more: bool = False
    duration_seconds: float = 0.0
    store_jobs: int = 0
    kms_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rewrap_all(
    service: IntegrationService,
    caller: Caller,
    *,
    batch_size: int | None = None,
    max_seconds: float | None = None,
    max_batches: int | None = None,
) -> dict[str, Any]:
    settings = service.adapters.settings
    store, cipher = service.adapters.store, service.adapters.cipher
    batch_size = batch_size or settings.rewrap_batch_size
    budget = settings.rewrap_max_seconds if max_seconds is None else min(max_seconds, settings.rewrap_max_seconds)
    started = time.monotonic()
    jobs_before = store.counters["jobs"]
    kms_before = cipher.counters["encrypt"] + cipher.counters["decrypt"]
    summary = RewrapSummary(primary_version=cipher.primary_version())

    def rewrap(old: StoredCredential) -> StoredCredential | None:
        aad = credential_aad(old.org_slug, old.provider, old.credential_id)
        try:
            sealed = cipher.encrypt(cipher.decrypt(old.encrypted_value, aad), aad)
        except EncryptionFailed:
            return None
        return replace(old, encrypted_value=sealed.ciphertext, key_version=sealed.key_version, updated_at=utc_now())

    after: str | None = None
    exhausted = False
    workers = max(1, min(settings.rewrap_concurrency, batch_size))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rewrap") as pool:
        while True:
            if time.monotonic() - started >= budget or (max_batches is not None and summary.batches >= max_batches):
                break
            batch = store.list_credentials_for_rewrap(
                primary_version=summary.primary_version, after_credential_id=after, limit=batch_size
            )
            if not batch:
                exhausted = True
                break
            after = batch[-1].credential_id
            summary.batches += 1
            summary.scanned += len(batch)
            writes = []
            for old, new in zip(batch, pool.map(rewrap, batch), strict=True):
                if new is None:
                    summary.failed += 1
                    continue
                detail = f"key version {old.key_version} -> {new.key_version}"
                audit = caller.audit(old.org_slug, old.provider, "rewrap", fingerprint=old.fingerprint, detail=detail)
                writes.append((old, new, audit))
            written = store.save_rewrapped_credentials(writes)
            summary.rewrapped += len(written)
            summary.skipped += len(writes) - len(written)
            if len(batch) < batch_size:
                exhausted = True
                break
    summary.more = not exhausted
    summary.duration_seconds = round(time.monotonic() - started, 3)
    summary.store_jobs = store.counters["jobs"] - jobs_before
    summary.kms_calls = cipher.counters["encrypt"] + cipher.counters["decrypt"] - kms_before
    logger.info("rewrap run", extra=summary.as_dict())
    return summary.as_dict()
