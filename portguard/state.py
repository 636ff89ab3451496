"""The state dir: what was applied, last-known-good, the removal record, and the apply lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from portguard.errors import PortguardError

__all__ = [
    "DEFAULT_STATE_DIR",
    "STATE_DIR_ENV",
    "AppliedState",
    "LockTimeout",
    "StateDir",
    "StateError",
    "default_state_dir",
    "listing_digest",
    "now_text",
]

STATE_DIR_ENV = "PORTGUARD_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/portguard")
APPLIED_FILE = "applied.json"
LAST_KNOWN_GOOD_FILE = "last-known-good.json"
REMOVED_FILE = "removed.json"
LOCK_FILE = "lock"
LOCK_POLL_SECONDS = 0.02


class StateError(PortguardError):
    """The state dir cannot be read or written, or holds a damaged record."""


class LockTimeout(PortguardError):
    """Another portguard process held the state dir's lock for longer than the timeout."""


def default_state_dir() -> Path:
    """$PORTGUARD_STATE_DIR if set and not empty, else /var/lib/portguard."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def listing_digest(listing: str) -> str:
    """The sha256 (hex) of a table listing, as recorded in the state dir."""
    return hashlib.sha256(listing.encode()).hexdigest()


def now_text() -> str:
    """The current UTC time as ISO 8601 with seconds, for records."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class AppliedState:
    """One applied policy: its source, its rendering, and the kernel's listing right after."""

    policy_path: str
    policy_text: str
    rendered: str
    listing: str
    listing_sha256: str
    applied_at: str


RECORD_FIELDS = tuple(field.name for field in fields(AppliedState))


@dataclass(frozen=True)
class StateDir:
    """portguard's state directory (made on first write, mode 0700)."""

    path: Path

    def read_applied(self) -> AppliedState | None:
        """What portguard applied last (None if nothing, or removed since)."""
        return self._read_record(APPLIED_FILE)

    def read_last_known_good(self) -> AppliedState | None:
        """The last policy that applied successfully (kept across `remove`)."""
        return self._read_record(LAST_KNOWN_GOOD_FILE)

    def read_removed_at(self) -> str | None:
        """When `remove` last deleted the table, if that is the latest thing that happened."""
        path = self.path / REMOVED_FILE
        if not path.exists():
            return None
        data = self._read_json(path)
        removed_at = data.get("removed_at")
        if not isinstance(removed_at, str):
            raise StateError(f"{path}: damaged record: no removed_at")
        return removed_at

    def record_applied(self, applied: AppliedState) -> None:
        """Write `applied` as the current record and clear any removal record."""
        self._write_json(APPLIED_FILE, asdict(applied))
        self._unlink(REMOVED_FILE)

    def promote_last_known_good(self, applied: AppliedState) -> None:
        """Make `applied` the last-known-good record (call only after a successful apply)."""
        self._write_json(LAST_KNOWN_GOOD_FILE, asdict(applied))

    def record_removed(self) -> None:
        """Note that the table was removed: drop the applied record, keep last-known-good."""
        self._write_json(REMOVED_FILE, {"removed_at": now_text()})
        self._unlink(APPLIED_FILE)

    def lock(self, timeout: float | None) -> AbstractContextManager[None]:
        """Hold the state dir's exclusive lock; LockTimeout after `timeout` s (None: wait)."""
        return self._locked(timeout)

    @contextlib.contextmanager
    def _locked(self, timeout: float | None) -> Iterator[None]:
        self._ensure_dir()
        lock_path = self.path / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"{lock_path}: cannot open lock: {exc.strerror or exc}") from None
        try:
            _acquire(fd, lock_path, timeout)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def _ensure_dir(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot create state dir: {exc.strerror}") from None

    def _read_record(self, name: str) -> AppliedState | None:
        path = self.path / name
        if not path.exists():
            return None
        data = self._read_json(path)
        texts = {key: value for key, value in data.items() if isinstance(value, str)}
        if texts.keys() != set(RECORD_FIELDS) or len(texts) != len(data):
            raise StateError(f"{path}: damaged record: expected the text fields {RECORD_FIELDS}")
        record = AppliedState(**texts)
        if listing_digest(record.listing) != record.listing_sha256:
            raise StateError(f"{path}: damaged record: listing does not match its sha256")
        return record

    def _read_json(self, path: Path) -> dict[str, object]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise StateError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise StateError(f"{path}: damaged record: {exc}") from None
        if not isinstance(data, dict):
            raise StateError(f"{path}: damaged record: not a JSON object")
        return data

    def _write_json(self, name: str, data: dict[str, str]) -> None:
        self._ensure_dir()
        target = self.path / name
        try:
            _write_atomically(target, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise StateError(f"{target}: cannot write: {exc.strerror or exc}") from None

    def _unlink(self, name: str) -> None:
        try:
            (self.path / name).unlink(missing_ok=True)
            _fsync_dir(self.path)
        except OSError as exc:
            raise StateError(f"{self.path / name}: cannot remove: {exc.strerror}") from None


def _acquire(fd: int, lock_path: Path, timeout: float | None) -> None:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{lock_path}: another portguard still holds the lock after {timeout:g} s"
                ) from None
            time.sleep(LOCK_POLL_SECONDS)


def _write_atomically(target: Path, text: str) -> None:
    """Temp file in the same dir, fsync, os.replace, fsync the dir: old or new, never half."""
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
