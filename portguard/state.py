"""The state dir: what was applied, last-known-good, the removal record, and the apply lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from portguard.errors import PortguardError
from portguard.facts.generation import RulesetGeneration, generation_from_json
from portguard.faults import checkpoint
from portguard.render.nft_table import GENERATIONS, NftTable, table_from_json

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STATE_DIR",
    "STATE_DIR_ENV",
    "Action",
    "AppliedState",
    "LockTimeout",
    "PendingChange",
    "Records",
    "StateDir",
    "StateError",
    "default_state_dir",
    "listing_digest",
    "now_text",
    "text_field",
]

STATE_DIR_ENV = "PORTGUARD_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/portguard")
APPLIED_FILE = "applied.json"
LAST_KNOWN_GOOD_FILE = "last-known-good.json"
REMOVED_FILE = "removed.json"
PENDING_FILE = "pending.json"
MAX_RECORD_BYTES = 1 << 30  # a record holds the listing of up to millions of set elements
LOCK_POLL_SECONDS = 0.02
DEFAULT_LOCK_TIMEOUT = 30.0  # seconds a command waits for another one's lock on the state dir


T = TypeVar("T")


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


class Action(StrEnum):
    """What made a change: the `source` of a record and the `action` of a history row."""

    APPLY = "apply"
    BOOT = "boot"
    BOOT_FALLBACK = "boot-fallback"
    REVERT = "revert"
    ROLLBACK = "rollback"
    REMOVE = "remove"
    BAN = "ban"  # history only: a runtime ban (no table); never a record's source
    UNBAN = "unban"


@dataclass(frozen=True)
class AppliedState:
    """One applied policy: its source, its rendering, and how the live table was proven to be it.

    Either the kernel's listing right after (`listing`), or, when the ruleset generation
    showed that the apply's own transactions were the only ones committed, no listing and
    that `generation`: while it is still the live one, the table is exactly this rendering
    under `suffix` (facts/proven.py). The generation is kept with a listing too (read just
    before it), so a later command can skip listing the table again.
    """

    policy_path: str
    policy_text: str
    table: NftTable
    listing: str | None  # None: not listed (proven by `generation`)
    applied_at: str
    source: Action = Action.APPLY
    generation: RulesetGeneration | None = None
    suffix: str = GENERATIONS[0]  # the generation suffix of the live set names

    @property
    def digest(self) -> str:
        """The rendering's digest, as the live table's marker names it."""
        return self.table.digest

    @property
    def rendered(self) -> str:
        """The rendering's text, as `render` prints it."""
        return self.table.text()


@dataclass(frozen=True)
class PendingChange:
    """A change begun but not yet recorded: the table it loads (None: a removal)."""

    policy_path: str
    policy_text: str
    table: NftTable | None
    started_at: str


@dataclass(frozen=True)
class Records:
    """Every record in the state dir, read once; a damaged one is None plus a warning."""

    applied: AppliedState | None
    last_known_good: AppliedState | None
    pending: PendingChange | None
    removed_at: str | None
    warnings: tuple[str, ...]
    # The record files' identities when they were read: equal later, nothing was rewritten.
    stamp: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class StateDir:
    """portguard's state directory (made on first write, mode 0700, refused if others can write)."""

    path: Path

    def read_records(self, earlier: Records | None = None) -> Records:
        """All records; damaged or unreadable ones become warnings, never a stop.

        `earlier` (records read before in this command) is returned as it is when no record
        file was written or removed since: a record can hold a million set elements.
        Last-known-good is parsed only when its bytes differ from applied.json's.
        """
        stamp = self._stamp()
        if earlier is not None and earlier.stamp and earlier.stamp == stamp:
            return earlier
        warnings: list[str] = []

        def tolerant(read: Callable[[], T]) -> T | None:
            try:
                return read()
            except StateError as error:
                warnings.append(f"{error} (ignored)")
                return None

        applied_raw = tolerant(lambda: self._read_raw(APPLIED_FILE))
        applied = tolerant(lambda: self._applied_from(APPLIED_FILE, applied_raw))
        good_raw = tolerant(lambda: self._read_raw(LAST_KNOWN_GOOD_FILE))
        if good_raw is not None and good_raw == applied_raw and applied is not None:
            last_known_good: AppliedState | None = applied  # promoted from it, unchanged
        else:
            last_known_good = tolerant(lambda: self._applied_from(LAST_KNOWN_GOOD_FILE, good_raw))
        return Records(
            applied=applied,
            last_known_good=last_known_good,
            pending=tolerant(self.read_pending),
            removed_at=tolerant(self.read_removed_at),
            warnings=tuple(warnings),
            stamp=stamp,
        )

    def _stamp(self) -> tuple[tuple[int, ...], ...]:
        """(inode, size, mtime, ctime) of each record file, () for an absent one."""
        stamps: list[tuple[int, ...]] = []
        for name in (APPLIED_FILE, LAST_KNOWN_GOOD_FILE, PENDING_FILE, REMOVED_FILE):
            try:
                info = os.lstat(self.path / name)
            except OSError:
                stamps.append(())
                continue
            stamps.append((info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
        return tuple(stamps)

    def read_applied(self) -> AppliedState | None:
        """What portguard applied last (None if nothing, or removed since)."""
        return self._read_applied_file(APPLIED_FILE)

    def read_last_known_good(self) -> AppliedState | None:
        """The last policy that applied successfully (kept across `remove`)."""
        return self._read_applied_file(LAST_KNOWN_GOOD_FILE)

    def read_pending(self) -> PendingChange | None:
        """The change an interrupted or failed command began, if its record is still there."""
        data = self._read_json(PENDING_FILE)
        if data is None:
            return None
        try:
            table = data.get("table")
            return PendingChange(
                policy_path=text_field(data, "policy_path"),
                policy_text=text_field(data, "policy_text"),
                table=None if table is None else table_from_json(table),
                started_at=text_field(data, "started_at"),
            )
        except ValueError as error:
            raise StateError(f"{self.path / PENDING_FILE}: damaged record: {error}") from None

    def read_removed_at(self) -> str | None:
        """When `remove` last deleted the table, if that is the latest thing that happened."""
        data = self._read_json(REMOVED_FILE)
        if data is None:
            return None
        removed_at = data.get("removed_at")
        if not isinstance(removed_at, str):
            raise StateError(f"{self.path / REMOVED_FILE}: damaged record: no removed_at")
        return removed_at

    def record_pending(self, pending: PendingChange) -> None:
        """Write the intent before the kernel is touched (fails on a full or read-only dir)."""
        data: dict[str, object] = {
            "policy_path": pending.policy_path,
            "policy_text": pending.policy_text,
            "table": None if pending.table is None else pending.table.to_json(),
            "started_at": pending.started_at,
        }
        self._write_json(PENDING_FILE, data)

    def clear_pending(self) -> None:
        """Forget the pending change (it was recorded, or it did not happen)."""
        self._unlink(PENDING_FILE)

    def record_applied(self, applied: AppliedState) -> None:
        """Write `applied` as the current record and clear any removal record."""
        self._write_json(APPLIED_FILE, _applied_json(applied))
        self._unlink(REMOVED_FILE)

    def promote_last_known_good(self, applied: AppliedState) -> None:
        """Make `applied` the last-known-good record (call only after a successful apply)."""
        self._write_json(LAST_KNOWN_GOOD_FILE, _applied_json(applied))

    def record_removed(self) -> None:
        """Note that the table was removed: drop the applied record, keep last-known-good."""
        self._write_json(REMOVED_FILE, {"removed_at": now_text()})
        self._unlink(APPLIED_FILE)

    def lock(self, timeout: float | None) -> AbstractContextManager[None]:
        """Hold the state dir's exclusive lock; LockTimeout after `timeout` s (None: wait)."""
        return self._locked(timeout)

    @contextlib.contextmanager
    def _locked(self, timeout: float | None) -> Iterator[None]:
        """Flock the state dir itself (no lock file to plant a symlink as; read-only works)."""
        self._ensure_dir()
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot open for locking: {exc.strerror}") from None
        try:
            _acquire(fd, self.path, timeout)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def _ensure_dir(self) -> None:
        if not self.path.is_dir():
            try:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"{self.path}: cannot create state dir: {exc.strerror}") from None
        self._check_dir()

    def _check_dir(self) -> None:
        """Refuse a state dir that is a symlink, not ours, or writable by group or others."""
        try:
            info = os.lstat(self.path)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read state dir: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise StateError(f"{self.path}: state dir is not a directory (or is a symlink)")
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise StateError(
                f"{self.path}: state dir is writable by others or not owned by this user;"
                f" refusing to trust it (chown it and chmod 700)"
            )

    def _read_applied_file(self, name: str) -> AppliedState | None:
        return self._applied_from(name, self._read_raw(name))

    def _applied_from(self, name: str, raw: bytes | None) -> AppliedState | None:
        """The applied-state record `name` from its bytes (None: absent)."""
        path = self.path / name
        data = None if raw is None else _json_object(path, raw)
        if data is None:
            return None
        try:
            listing = _listing_field(data)
            generation = generation_from_json(data.get("generation"))
            if listing is None and generation is None:
                raise ValueError("neither a listing nor a generation")
            suffix = str(data.get("suffix", GENERATIONS[0]))
            if suffix not in GENERATIONS:
                raise ValueError(f"unknown set suffix {suffix!r}")
            table = table_from_json(data.get("table"))
            if table.digest != data.get("digest"):
                raise ValueError("table does not match its digest")
            return AppliedState(
                policy_path=text_field(data, "policy_path"),
                policy_text=text_field(data, "policy_text"),
                table=table,
                listing=listing,
                applied_at=text_field(data, "applied_at"),
                source=Action(str(data.get("source", Action.APPLY.value))),
                generation=generation,
                suffix=suffix,
            )
        except ValueError as error:
            raise StateError(f"{path}: damaged record: {error}") from None

    def read_json_record(self, name: str) -> dict[str, object] | None:
        """A JSON object record by file name (None if absent); StateError if damaged."""
        return self._read_json(name)

    def write_json_record(self, name: str, data: Mapping[str, object]) -> None:
        """Write a JSON object record atomically (temp file, fsync, rename)."""
        self._write_json(name, data)

    def remove_record(self, name: str) -> None:
        """Remove a record file if it is there."""
        self._unlink(name)

    def _read_json(self, name: str) -> dict[str, object] | None:
        raw = self._read_raw(name)
        return None if raw is None else _json_object(self.path / name, raw)

    def _read_raw(self, name: str) -> bytes | None:
        """A record file's bytes (None: absent); StateError if unreadable or too large."""
        path = self.path / name
        if not path.exists():
            return None
        self._check_dir()
        try:
            with open(path, "rb", opener=_no_follow_opener) as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise StateError(f"{path}: damaged record: not a regular file")
                raw = handle.read(MAX_RECORD_BYTES + 1)
        except OSError as exc:
            raise StateError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if len(raw) > MAX_RECORD_BYTES:
            raise StateError(f"{path}: damaged record: larger than {MAX_RECORD_BYTES} bytes")
        return raw

    def _write_json(self, name: str, data: Mapping[str, object]) -> None:
        self._ensure_dir()
        target = self.path / name
        try:
            # Compact: json's C encoder (indent= falls back to pure Python, ~10x slower on
            # the million-element listings a record can hold).
            _write_atomically(target, json.dumps(data, separators=(",", ":")) + "\n")
        except OSError as exc:
            raise StateError(f"{target}: cannot write: {exc.strerror or exc}") from None

    def _unlink(self, name: str) -> None:
        try:
            (self.path / name).unlink(missing_ok=True)
            _fsync_dir(self.path)
        except OSError as exc:
            raise StateError(f"{self.path / name}: cannot remove: {exc.strerror}") from None


def _applied_json(applied: AppliedState) -> dict[str, object]:
    return {
        "policy_path": applied.policy_path,
        "policy_text": applied.policy_text,
        "digest": applied.digest,
        "table": applied.table.to_json(),
        "listing": applied.listing,
        "listing_sha256": None if applied.listing is None else listing_digest(applied.listing),
        "applied_at": applied.applied_at,
        "source": applied.source.value,
        "generation": None if applied.generation is None else applied.generation.to_json(),
        "suffix": applied.suffix,
    }


def _listing_field(data: Mapping[str, object]) -> str | None:
    """The record's listing (None when the record is proven by generation instead)."""
    listing = data.get("listing")
    if listing is None:
        if data.get("listing_sha256") is not None:
            raise ValueError("listing does not match its sha256")
        return None
    if not isinstance(listing, str):
        raise ValueError("no text field 'listing'")
    if listing_digest(listing) != data.get("listing_sha256"):
        raise ValueError("listing does not match its sha256")
    return listing


def _json_object(path: Path, raw: bytes) -> dict[str, object]:
    """A record's bytes as a JSON object; StateError naming `path` when damaged."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise StateError(f"{path}: damaged record: {exc}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: damaged record: not a JSON object")
    return data


def text_field(data: Mapping[str, object], key: str) -> str:
    """A record's text field; ValueError when it is missing or not text."""
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"no text field {key!r}")
    return value


def _no_follow_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _acquire(fd: int, lock_path: Path, timeout: float | None) -> None:
    import fcntl  # noqa: PLC0415 - POSIX only: a top-level import stops the CLI on Windows

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
        checkpoint(f"writing {target.name}")
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
