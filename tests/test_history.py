"""history.py and show.py without root: rows, bounded growth, damaged databases, the view."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from portguard.history import (
    HISTORY_FILE,
    HISTORY_KEEP_ENV,
    History,
    HistoryError,
    note_change,
)
from portguard.policy import parse_policy
from portguard.render.nft_table import NftTable
from portguard.render.nftables import render_table
from portguard.show import policy_view
from portguard.state import Action, StateDir

POLICY = """\
version: 1
sets:
  office: [192.0.2.0/24, "2001:db8::/48"]
allow:
  - service: ssh
    from: ["@office", 198.51.100.7]
    limit: 6/minute
    comment: admins only
  - port: [80, 443]
    proto: [tcp, udp]
    interface: eth1
"""


def _table(text: str = POLICY, path: str = "/etc/portguard/policy.yaml") -> NftTable:
    return render_table(parse_policy(text, path).policy)


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    """An empty state dir (mode 0700) for this test."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return StateDir(path)


@pytest.fixture(autouse=True)
def _default_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PORTGUARD_HISTORY_KEEP from the environment unless a test sets it."""
    monkeypatch.delenv(HISTORY_KEEP_ENV, raising=False)


def test_record_and_read_back_newest_first(state: StateDir) -> None:
    """Rows come back newest first with the policy, its sha256 and the very same table."""
    history = History.of(state)
    table = _table()
    first = history.record(Action.APPLY, "/p.yaml", POLICY, table, "applied")
    second = history.record(Action.REMOVE, "", "", None, "applied")
    assert second > first
    newest, oldest = history.entries()
    assert (newest.id, newest.action, newest.table, newest.digest) == (
        second,
        Action.REMOVE,
        None,
        None,
    )
    assert oldest.policy_sha256 == hashlib.sha256(POLICY.encode()).hexdigest()
    assert oldest.table == table and oldest.digest == table.digest
    assert oldest.policy_text == POLICY and oldest.outcome == "applied"
    assert history.get(first) == oldest and history.get(999) is None
    assert [e.id for e in history.entries(limit=1)] == [second]


def test_database_is_private_and_in_wal_mode(state: StateDir) -> None:
    """history.sqlite3 is made 0600 in the state dir, journal mode WAL."""
    History.of(state).record(Action.APPLY, "/p.yaml", POLICY, _table(), "applied")
    path = state.path / HISTORY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [row[1] for row in db.execute("PRAGMA table_info(history)")]
    assert columns == [
        "id",
        "at",
        "action",
        "policy_path",
        "policy_text",
        "policy_sha256",
        "table",
        "digest",
        "outcome",
    ]


def test_growth_is_bounded_and_ids_never_reused(state: StateDir) -> None:
    """With keep=3 only the newest three rows stay; ids keep increasing after pruning."""
    history = History.of(state, keep=3)
    ids = [history.record(Action.APPLY, f"/p{n}", "", None, "applied") for n in range(7)]
    assert [e.id for e in history.entries()] == ids[:-4:-1]
    assert history.get(ids[0]) is None
    assert History.of(state, keep=1).record(Action.APPLY, "/q", "", None, "applied") > ids[-1]
    assert len(history.entries()) == 1


def test_keep_comes_from_the_environment(state: StateDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """PORTGUARD_HISTORY_KEEP bounds the rows note_change keeps; a bad value is a warning."""
    monkeypatch.setenv(HISTORY_KEEP_ENV, "2")
    change = _Change(None, "", "", Action.REMOVE)
    for _ in range(4):
        assert note_change(state, change, "applied") == ()
    assert len(History.of(state).entries()) == 2
    monkeypatch.setenv(HISTORY_KEEP_ENV, "many")
    warnings = note_change(state, change, "applied")
    assert len(warnings) == 1 and "PORTGUARD_HISTORY_KEEP='many'" in warnings[0]
    assert len(History.of(state).entries()) == 3  # the default (1000) applied to this row


def test_damaged_database_becomes_a_warning(state: StateDir) -> None:
    """A file that is not a database: record raises HistoryError, note_change only warns."""
    (state.path / HISTORY_FILE).write_bytes(b"this is not sqlite\n" * 100)
    with pytest.raises(HistoryError, match="file is not a database"):
        History.of(state).record(Action.APPLY, "/p", "", None, "applied")
    warnings = note_change(state, _Change(None, "", "", Action.REMOVE), "applied")
    assert len(warnings) == 1 and warnings[0].startswith("history not recorded: ")
    with pytest.raises(HistoryError):
        History.of(state).entries()


def test_outcome_is_one_line(state: StateDir) -> None:
    """A multi-line failure message is recorded as one line."""
    note_change(state, _Change(None, "", "", Action.REMOVE), "failed: one\ntwo\n\tthree")
    assert History.of(state).entries()[0].outcome == "failed: one two three"


def test_missing_history_reads_as_empty(tmp_path: Path) -> None:
    """No state dir or no database: an empty history, and nothing is created by reading."""
    assert History.of(StateDir(tmp_path / "absent")).entries() == []
    assert History.of(StateDir(tmp_path / "absent")).get(1) is None
    assert not (tmp_path / "absent").exists()


def test_untrusted_state_dir_is_refused(state: StateDir) -> None:
    """A group-writable state dir or a symlinked database is refused, as for the records."""
    os.chmod(state.path, 0o770)
    with pytest.raises(HistoryError, match="writable by group or others"):
        History.of(state).entries()
    os.chmod(state.path, 0o700)
    (state.path / HISTORY_FILE).symlink_to(state.path / "elsewhere")
    with pytest.raises(HistoryError):
        History.of(state).record(Action.APPLY, "/p", "", None, "applied")
    assert not (state.path / "elsewhere").exists()


def test_damaged_table_in_a_row(state: StateDir) -> None:
    """A row whose table JSON is damaged reads, but asking for its table is a HistoryError."""
    history = History.of(state)
    row = history.record(Action.APPLY, "/p", POLICY, _table(), "applied")
    with sqlite3.connect(state.path / HISTORY_FILE) as db:
        db.execute('UPDATE history SET "table" = ? WHERE id = ?', ('{"sets": 3}', row))
    entry = history.get(row)
    assert entry is not None and entry.outcome == "applied"
    with pytest.raises(HistoryError, match=f"history row {row}: damaged table"):
        _ = entry.table


def test_show_view_names_entries_as_written(tmp_path: Path) -> None:
    """The view lists protocols, ports, sources as written, interface, limit, comment, line."""
    path = str(tmp_path / "policy.yaml")
    view = policy_view(path, POLICY, _table(path=path))
    assert (view.default, view.icmp, view.log, view.parse_error) == (
        "drop",
        "essential",
        False,
        None,
    )
    assert view.named_sets == (("office", 2),)
    ssh, web = view.allow
    assert ssh.to_json() == {
        "proto": "tcp",
        "ports": "22",
        "from": ["@office", "198.51.100.7"],
        "interface": None,
        "limit": "6/minute",
        "comment": "admins only",
        "service": "ssh",
        "line": 5,
    }
    assert web.to_json()["from"] is None and web.proto == "tcp,udp" and web.ports == "80,443"
    assert web.text() == "tcp,udp 80,443 from anywhere on eth1 [line 9]"
    assert ssh.text() == (
        'tcp 22 (ssh) from @office, 198.51.100.7, limit 6/minute per source "admins only" [line 5]'
    )


def test_show_view_falls_back_to_the_rendered_sets(tmp_path: Path) -> None:
    """When the applied text no longer parses (a set file gone), the view lists the table's sets."""
    (tmp_path / "partners.txt").write_text("203.0.113.0/24\n")
    text = "version: 1\nsets:\n  p: {file: partners.txt}\nallow:\n  - port: 22\n    from: ['@p']\n"
    path = str(tmp_path / "policy.yaml")
    table = _table(text, path)
    (tmp_path / "partners.txt").unlink()
    view = policy_view(path, text, table)
    assert view.parse_error is not None and "partners.txt" in view.parse_error
    assert view.allow == () and {s.name for s in view.rendered_sets} == set(table.set_names())


class _Change:
    """A change as execute passes it (apply.Target has the same attributes)."""

    def __init__(self, table: NftTable | None, path: str, text: str, action: Action) -> None:
        self.table, self.policy_path, self.policy_text, self.action = table, path, text, action
