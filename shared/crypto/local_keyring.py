"""Local keyring adapter: AES-256-GCM with versioned keys in a 0600 file.

The embedded default's stand-in for Cloud KMS. The keyring file is JSON::

    {"format": 1, "primary": 2,
     "versions": {"1": {"key": "<base64 32 bytes>", "state": "enabled", "created_at": "..."},
                  "2": {...}}}

Ciphertext wire format (bytes)::

    0      1 byte   format marker 0x01
    1..2   2 bytes  key version, big-endian unsigned
    3..14  12 bytes random GCM nonce
    15..   AES-256-GCM ciphertext followed by its 16-byte tag

The key version travels inside the blob so any enabled version decrypts, as
with Cloud KMS; ``key_version`` is also returned so the store can record it.

Several processes share the file (the server, ``python -m shared.cli``): each
rereads it when it changed on disk (one ``stat`` per call), so a rotation made
by one is used by the others at their next call, and rotations hold an
exclusive lock so two of them cannot both write "version 3".

Every change replaces the file durably (temp file, fsync, rename, fsync of the
directory), and a rotation writes the new key to disk before it makes it
primary: no ciphertext can name a key version the file may lose. A rotation
that cannot write answers ``KeyRotationFailed`` (503) and the old primary stays
primary, in memory and on disk (docs/design/atomic-key-rotation.md).
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import secrets
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto import EncryptedSecret
from shared.domain.errors import ConfigurationError, EncryptionFailed, KeyRotationFailed

logger = logging.getLogger("integrations.keyring")

FORMAT_MARKER = 0x01
NONCE_BYTES = 12
HEADER_BYTES = 1 + 2 + NONCE_BYTES


class LocalKeyring:
    """AES-256-GCM keyring persisted in one JSON file (mode 0600)."""

    def __init__(self, path: Path, primary: int, keys: dict[int, bytes], states: dict[int, str]) -> None:
        self.path = path
        self.primary = primary
        self._keys = keys
        self._states = states
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._signature = _file_signature(path)

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> LocalKeyring:
        """Load the keyring, creating it with one fresh key on first run."""
        path = Path(path)
        if not path.exists():
            cls._create(path)
        primary, keys, states = cls._read(path)
        return cls(path, primary, keys, states)

    @staticmethod
    def _read(path: Path) -> tuple[int, dict[int, bytes], dict[int, str]]:
        try:
            document = json.loads(path.read_text())
            versions = document["versions"]
            keys = {int(v): base64.b64decode(entry["key"]) for v, entry in versions.items()}
            states = {int(v): entry.get("state", "enabled") for v, entry in versions.items()}
            primary = int(document["primary"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"keyring file {path} is unreadable or malformed: {exc.__class__.__name__}"
            ) from exc
        if primary not in keys or any(len(k) != 32 for k in keys.values()):
            raise ConfigurationError(f"keyring file {path} has no valid primary 32-byte key")
        return primary, keys, states

    def _refresh(self) -> None:
        """Reread the file if another process (or instance) changed it since we read it."""
        signature = _file_signature(self.path)
        if signature == self._signature:
            return
        with self._lock:
            if signature != self._signature:
                primary, keys, states = self._read(self.path)
                self.primary, self._keys, self._states, self._signature = primary, keys, states, signature

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the keyring's lock file: one writer at a time, across processes."""
        fd = os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._signature = None  # force a reread under the lock
            self._refresh()
            yield
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _create(path: Path) -> None:
        """Write the first key durably before anything can encrypt with it.

        The file appears whole or not at all (a temp file, fsynced, hard-linked
        into place): two processes starting at once cannot both write a key,
        the loser reads the winner's.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"format": 1, "primary": 1, "versions": {"1": _new_version_entry()}}
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".keyring-", suffix=".new")  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            with suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
        _fsync_directory(path.parent)

    def rotate(self) -> int:
        """Add a new key version and make it primary; old versions still decrypt.

        Two durable writes, so no ciphertext can ever name a key that is not on
        disk: first the new version is added beside the others (the primary
        unchanged), then the primary moves to it. Memory changes only after the
        second write: until then ``encrypt`` keeps using the old primary. Any
        failure raises ``KeyRotationFailed`` and leaves the old primary primary,
        in this process and in the file; at worst the file keeps an unused new
        version, which is harmless.
        """
        previous = self.primary
        try:
            with self._exclusive():
                previous = self.primary
                new_version = max(self._keys) + 1
                keys = {**self._keys, new_version: AESGCM.generate_key(bit_length=256)}
                states = {**self._states, new_version: "enabled"}
                self._write(previous, keys, states)
                # The key is on disk for good now: if only this rename cannot be made durable,
                # a crash can at worst bring back the old primary, and both versions decrypt.
                self._write(new_version, keys, states, directory_sync_required=False)
                self._keys, self._states = keys, states
                self.primary = new_version  # last: encrypt reads primary, then its key
        except (OSError, ConfigurationError) as exc:
            logger.error(
                "keyring rotation failed; the primary key version is unchanged",
                extra={"keyring": str(self.path), "primary": previous, "cause": type(exc).__name__},
            )
            raise KeyRotationFailed(
                f"Key rotation failed: the local keyring {self.path} could not be written"
                f" ({_reason(exc)}); key version {previous} stays primary and no credential changed"
            ) from None
        self.counters["rotate"] += 1
        return new_version

    def set_state(self, version: int, state: str) -> None:
        """Enable or disable a version (a disabled version no longer decrypts)."""
        with self._exclusive():
            if version not in self._keys or state not in ("enabled", "disabled"):
                raise ConfigurationError(f"unknown key version {version} or state {state!r}")
            if version == self.primary and state != "enabled":
                raise ConfigurationError("the primary key version cannot be disabled; rotate first")
            states = {**self._states, version: state}
            self._write(self.primary, self._keys, states)
            self._states = states

    def _write(
        self, primary: int, keys: dict[int, bytes], states: dict[int, str], *, directory_sync_required: bool = True
    ) -> None:
        """Replace the file durably: a temp file written and fsynced, renamed over the file, the directory fsynced.

        Called under ``_exclusive``, so one fixed temp name is enough. A crash
        at any point leaves either the old file or the new one, whole.
        """
        document = {
            "format": 1,
            "primary": primary,
            "versions": {
                str(version): {"key": base64.b64encode(key).decode(), "state": states[version]}
                for version, key in sorted(keys.items())
            },
        }
        temporary = self.path.with_suffix(".tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError:
            with suppress(OSError):
                if temporary.is_file():
                    temporary.unlink()
            raise
        self._signature = _file_signature(self.path)
        try:
            _fsync_directory(self.path.parent)
        except OSError as exc:
            if directory_sync_required:
                raise
            logger.warning("keyring directory could not be synced", extra={"cause": type(exc).__name__})

    # --- the port --------------------------------------------------------------

    def primary_version(self) -> str:
        self._refresh()
        return str(self.primary)

    def key_versions(self) -> dict[str, str]:
        self._refresh()
        return {str(version): self._states[version] for version in sorted(self._keys)}

    def rotate_key(self) -> str:
        return str(self.rotate())

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> EncryptedSecret:
        self.counters["encrypt"] += 1
        self._refresh()
        nonce = secrets.token_bytes(NONCE_BYTES)
        try:
            sealed = AESGCM(self._keys[self.primary]).encrypt(nonce, plaintext, associated_data)
        except Exception as exc:  # any library failure is an encryption failure
            raise EncryptionFailed() from exc
        header = bytes([FORMAT_MARKER]) + self.primary.to_bytes(2, "big") + nonce
        return EncryptedSecret(ciphertext=header + sealed, key_version=str(self.primary))

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        self.counters["decrypt"] += 1
        self._refresh()
        if len(ciphertext) <= HEADER_BYTES or ciphertext[0] != FORMAT_MARKER:
            raise EncryptionFailed()
        version = int.from_bytes(ciphertext[1:3], "big")
        key = self._keys.get(version)
        if key is None or self._states.get(version) != "enabled":
            raise EncryptionFailed()
        nonce = ciphertext[3:HEADER_BYTES]
        try:
            return AESGCM(key).decrypt(nonce, ciphertext[HEADER_BYTES:], associated_data)
        except InvalidTag as exc:
            raise EncryptionFailed() from exc


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    """What went wrong in words an operator can act on, without quoting paths twice."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "unreadable or malformed" if isinstance(exc, ConfigurationError) else type(exc).__name__


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _new_version_entry() -> dict[str, str]:
    return {
        "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
        "state": "enabled",
    }
