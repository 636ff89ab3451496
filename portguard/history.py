"""History of rule changes in SQLite (`history.sqlite3` in the state dir), newest first.

One row per change that was executed: apply, boot, boot-fallback, revert, rollback, remove,
with the policy text, the rendered table and the outcome. The database is a side record:
`note_change` turns every failure to write it (damaged file, full disk, read-only dir) into
a warning, so history never stops or alters a rule change. Growth is bounded: only the
newest `keep` rows stay (PORTGUARD_HISTORY_KEEP, default 1000).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from portguard.errors import PortguardError
from portguard.render.nft_table import NftTable, table_from_json
from portguard.state import Action, StateDir, now_text

__all__ = [
    "DEFAULT_KEEP",
    "HISTORY_FILE",
    "HISTORY_KEEP_ENV",
    "Change",
    "History",
    "HistoryEntry",
    "HistoryError",
    "history_keep",
    "note_change",
    "trusted_state_dir",
]

HISTORY_FILE = "history.sqlite3"
HISTORY_KEEP_ENV = "PORTGUARD_HISTORY_KEEP"
DEFAULT_KEEP = 1000
BUSY_TIMEOUT = 5.0  # seconds to wait for another writer (writers also hold the state lock)
MAX_OUTCOME = 500
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    policy_path TEXT NOT NULL,
    policy_text TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    "table" TEXT,
    digest TEXT,
    outcome TEXT NOT NULL
)
"""
COLUMNS = 'id, at, action, policy_path, policy_text, policy_sha256, "table", digest, outcome'


class HistoryError(PortguardError):
    """The history database cannot be opened, read or written."""


class Change(Protocol):
    """What `note_change` records of a change (apply.Target has these)."""

    @property
    def table(self) -> NftTable | None:
        """The table the change makes live (None: a removal)."""

    @property
    def policy_path(self) -> str:
        """The policy file the table came from."""

    @property
    def policy_text(self) -> str:
        """The policy text the table came from."""

    @property
    def action(self) -> Action:
        """What made the change."""


@dataclass(frozen=True)
class HistoryEntry:
    """One row: when, what made the change, the policy and its table, and how it ended."""

    id: int
    at: str
    action: Action
    policy_path: str
    policy_text: str
    policy_sha256: str
    digest: str | None
    outcome: str
    table_json: str | None = field(default=None, repr=False)

    @cached_property
    def table(self) -> NftTable | None:
        """The recorded table (None for a removal); HistoryError if the row is damaged."""
        if self.table_json is None:
            return None
        try:
            return table_from_json(json.loads(self.table_json))
        except ValueError as error:
            raise HistoryError(f"history row {self.id}: damaged table: {error}") from None


@dataclass(frozen=True)
class History:
    """The history database of one state dir; `keep` bounds the number of rows."""

    path: Path
    keep: int | None = None  # None: $PORTGUARD_HISTORY_KEEP, else DEFAULT_KEEP

    @classmethod
    def of(cls, state: StateDir, keep: int | None = None) -> History:
        """The history in `state`'s directory."""
        return cls(state.path / HISTORY_FILE, keep)

    def record(
        self,
        action: Action,
        policy_path: str,
        policy_text: str,
        table: NftTable | None,
        outcome: str,
        *,
        at: str | None = None,
    ) -> int:
        """Add one row (and drop rows beyond `keep`); its id. HistoryError on any failure."""
        keep = history_keep() if self.keep is None else self.keep
        table_text = None if table is None else json.dumps(table.to_json(), separators=(",", ":"))
        row = (
            at or now_text(),
            Action(action).value,
            policy_path,
            policy_text,
            hashlib.sha256(policy_text.encode("utf-8", "surrogateescape")).hexdigest(),
            table_text,
            None if table is None else table.digest,
            outcome,
        )
        with self._connection(create=True) as db:
            if db is None:  # pragma: no cover - create=True always opens
                raise HistoryError(f"{self.path}: cannot open")
            db.execute("BEGIN IMMEDIATE")
            cursor = db.execute(
                'INSERT INTO history (at, action, policy_path, policy_text, policy_sha256, "table",'
                " digest, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            db.execute(
                "DELETE FROM history WHERE id < (SELECT id FROM history ORDER BY id DESC"
                " LIMIT 1 OFFSET ?)",
                (max(keep, 1) - 1,),
            )
            db.execute("COMMIT")
            new_id = cursor.lastrowid
        if new_id is None:  # pragma: no cover - an INSERT always sets it
            raise HistoryError(f"{self.path}: no row id after insert")
        return new_id

    def entries(self, limit: int | None = None) -> list[HistoryEntry]:
        """The newest `limit` rows (all when None), newest first; [] when there is no history."""
        sql = f"SELECT {COLUMNS} FROM history ORDER BY id DESC"
        with self._connection(create=False) as db:
            if db is None:
                return []
            rows = db.execute(sql + " LIMIT ?", (-1 if limit is None else limit,)).fetchall()
        return [self._entry(row) for row in rows]

    def get(self, entry_id: int) -> HistoryEntry | None:
        """Row `entry_id`, or None when there is no such row (or no history)."""
        with self._connection(create=False) as db:
            if db is None:
                return None
            row = db.execute(f"SELECT {COLUMNS} FROM history WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else self._entry(row)

    def _entry(self, row: tuple[object, ...]) -> HistoryEntry:
        try:
            entry_id, at, action, path, text, sha, table, digest, outcome = row
            if not isinstance(entry_id, int) or not isinstance(table, str | None):
                raise ValueError("bad id or table")
            return HistoryEntry(
                id=entry_id,
                at=_text(at),
                action=Action(_text(action)),
                policy_path=_text(path),
                policy_text=_text(text),
                policy_sha256=_text(sha),
                digest=None if digest is None else _text(digest),
                outcome=_text(outcome),
                table_json=table,
            )
        except ValueError as error:
            raise HistoryError(f"{self.path}: damaged row {row[0]!r}: {error}") from None

    @contextlib.contextmanager
    def _connection(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        """An open database (None: absent and not `create`); sqlite and OS errors → HistoryError."""
        db: sqlite3.Connection | None = None
        try:
            if not trusted_state_dir(self.path.parent, create=create):
                yield None
                return
            if not _prepare_file(self.path, create=create):
                yield None
                return
            uri = f"file:{quote(str(self.path))}?mode=rw"
            db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
            if create:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'history'"
            ).fetchone():
                yield None
                return
            yield db
        except sqlite3.Error as error:
            raise HistoryError(f"{self.path}: {error}") from None
        except OSError as error:
            raise HistoryError(f"{self.path}: {error.strerror or error}") from None
        finally:
            if db is not None:
                db.close()


def history_keep() -> int:
    """How many rows to keep: $PORTGUARD_HISTORY_KEEP (a positive integer), else 1000."""
    raw = os.environ.get(HISTORY_KEEP_ENV, "").strip()
    if not raw:
        return DEFAULT_KEEP
    if not raw.isdigit() or int(raw) < 1:
        raise HistoryError(f"{HISTORY_KEEP_ENV}={raw[:40]!r} is not a positive integer")
    return int(raw)


def note_change(state: StateDir, change: Change, outcome: str) -> tuple[str, ...]:
    """Record `change` with `outcome` in the history; failures come back as warnings."""
    warnings: list[str] = []
    try:
        keep = history_keep()
    except HistoryError as error:
        warnings.append(f"{error}; keeping {DEFAULT_KEEP} history rows")
        keep = DEFAULT_KEEP
    line = " ".join(outcome.split())
    try:
        History.of(state, keep).record(
            change.action,
            change.policy_path,
            change.policy_text,
            change.table,
            line[:MAX_OUTCOME],
        )
    except HistoryError as error:
        warnings.append(f"history not recorded: {error}")
    return tuple(warnings)


def trusted_state_dir(path: Path, *, create: bool = False) -> bool:
    """Whether the state dir exists, under its trust rules (see state.StateDir): ours, a real
    directory, not writable by group or others (else HistoryError). Made 0700 if `create`."""
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise HistoryError(f"{path}: cannot read state dir: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise HistoryError(f"{path}: state dir is not a directory (or is a symlink)")
    if info.st_uid != os.geteuid():
        raise HistoryError(
            f"{path}: state dir belongs to uid {info.st_uid}, not to this user (uid"
            f" {os.geteuid()}); run as its owner (root for /var/lib/portguard) or pass --state-dir"
        )
    if info.st_mode & 0o022:
        raise HistoryError(
            f"{path}: state dir is writable by group or others; refusing to trust it (chmod 700 it)"
        )
    return True


def _prepare_file(path: Path, *, create: bool) -> bool:
    """Whether the database file exists (made 0600 when `create`); refuse a non-regular file."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    flags |= os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HistoryError(f"{path}: not a regular file")
        if create and info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return True


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value
