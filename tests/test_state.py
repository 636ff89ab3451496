"""The state dir: atomic records, last-known-good, removal, and the lock with its timeout."""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

from portguard.render.nft_table import NftRule, NftSet, NftTable, SetRef
from portguard.state import (
    STATE_DIR_ENV,
    AppliedState,
    LockTimeout,
    PendingChange,
    StateDir,
    StateError,
    default_state_dir,
)


def _applied(name: str) -> AppliedState:
    listing = f"table inet portguard {{ # {name}\n}}\n"
    table = NftTable(
        header=(name,),
        sets=(NftSet("open_tcp", "inet_service", "interval", ("22", "80-90")),),
        rules=(NftRule(("tcp dport ", SetRef("open_tcp"), " accept"), comment=name),),
    )
    return AppliedState(
        policy_path=f"{name}.yaml",
        policy_text=f"version: 1  # {name}\n",
        table=table,
        listing=listing,
        applied_at="2026-01-01T00:00:00+00:00",
    )


def _record_json(name: str, **changes: object) -> str:
    """The JSON of `_applied(name)` as record_applied writes it, with `changes` made."""
    directory = Path(tempfile.mkdtemp())
    StateDir(directory).record_applied(_applied(name))
    data = json.loads((directory / "applied.json").read_text())
    return json.dumps({**data, **changes})


def test_default_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PORTGUARD_STATE_DIR wins; without it (or empty) the default is /var/lib/portguard."""
    monkeypatch.setenv(STATE_DIR_ENV, "/srv/pg")
    assert default_state_dir() == Path("/srv/pg")
    monkeypatch.setenv(STATE_DIR_ENV, "")
    assert default_state_dir() == Path("/var/lib/portguard")
    monkeypatch.delenv(STATE_DIR_ENV)
    assert default_state_dir() == Path("/var/lib/portguard")


def test_empty_state_dir_has_no_records(tmp_path: Path) -> None:
    """A state dir that does not exist yet reads as nothing applied, nothing removed."""
    state = StateDir(tmp_path / "missing")
    assert state.read_applied() is None
    assert state.read_last_known_good() is None
    assert state.read_removed_at() is None


def test_records_round_trip_and_leave_no_temp_files(tmp_path: Path) -> None:
    """A record reads back equal; the dir is made 0700 and holds only the final files."""
    state = StateDir(tmp_path / "state")
    state.record_applied(_applied("one"))
    state.promote_last_known_good(_applied("one"))
    state.record_applied(_applied("two"))
    assert state.read_applied() == _applied("two")
    assert state.read_last_known_good() == _applied("one")
    assert (state.path.stat().st_mode & 0o777) == 0o700
    assert sorted(p.name for p in state.path.iterdir()) == ["applied.json", "last-known-good.json"]


def test_remove_drops_applied_keeps_last_known_good(tmp_path: Path) -> None:
    """record_removed forgets the applied record, keeps last-known-good, and notes the time."""
    state = StateDir(tmp_path)
    state.record_applied(_applied("one"))
    state.promote_last_known_good(_applied("one"))
    state.record_removed()
    assert state.read_applied() is None
    assert state.read_last_known_good() == _applied("one")
    removed_at = state.read_removed_at()
    assert removed_at is not None and removed_at.startswith("20")
    state.record_applied(_applied("two"))
    assert state.read_removed_at() is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"policy_path": "p"}),
        _record_json("x", listing_sha256="0" * 64),
        _record_json("x", policy_text=5),
        _record_json("x", digest="0" * 16),
        _record_json("x", table={"sets": "no"}),
        _record_json("x")[:-40],
        "",
    ],
    ids=[
        "syntax",
        "not-object",
        "missing-fields",
        "bad-listing-sha",
        "not-text",
        "bad-table-digest",
        "bad-table",
        "truncated",
        "empty",
    ],
)
def test_damaged_record_is_a_state_error(tmp_path: Path, content: str) -> None:
    """A damaged applied record raises StateError naming the file, never a traceback."""
    (tmp_path / "applied.json").write_text(content)
    with pytest.raises(StateError, match=r"applied\.json"):
        StateDir(tmp_path).read_applied()


def _hold_lock(path: str, ready: EventType, release: EventType) -> None:
    with StateDir(Path(path)).lock(timeout=5):
        ready.set()
        release.wait(30)


def test_lock_times_out_while_another_process_holds_it(tmp_path: Path) -> None:
    """A second locker gets LockTimeout while the holder still holds it, then gets the lock."""
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with (
            pytest.raises(LockTimeout, match="another portguard"),
            StateDir(tmp_path).lock(timeout=0.2),
        ):
            pytest.fail("the lock was granted while another process held it")
        assert holder.is_alive()  # the timeout fired while the lock was still held
        release.set()
        with StateDir(tmp_path).lock(timeout=10):
            pass
    finally:
        release.set()
        holder.join(10)
    assert holder.exitcode == 0


def test_lock_is_reentrant_across_sequential_uses(tmp_path: Path) -> None:
    """The lock is released on exit, also after an error inside the block."""
    state = StateDir(tmp_path)
    with pytest.raises(RuntimeError), state.lock(timeout=1):
        raise RuntimeError("inside")
    with state.lock(timeout=0):
        pass
    assert os.listdir(tmp_path) == []  # the lock is the directory's own: no lock file


def test_unwritable_state_dir_is_a_state_error(tmp_path: Path) -> None:
    """A state dir path under a regular file gives one StateError, not an OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot create state dir"):
        StateDir(blocker / "state").record_applied(_applied("one"))


def test_damaged_records_are_warnings_in_read_records(tmp_path: Path) -> None:
    """read_records turns a damaged applied.json into None and one warning; lkg still reads."""
    state = StateDir(tmp_path)
    state.promote_last_known_good(_applied("good"))
    (tmp_path / "applied.json").write_text("{truncat")
    (tmp_path / "pending.json").write_text("[]")
    records = state.read_records()
    assert records.applied is None and records.pending is None
    assert records.last_known_good == _applied("good")
    assert len(records.warnings) == 2
    assert all("damaged record" in w and w.endswith("(ignored)") for w in records.warnings)


def test_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    """A pre-existing group- or world-writable state dir is not trusted (a planted record)."""
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(StateError, match="writable by others"):
        StateDir(loose).record_applied(_applied("one"))
    with pytest.raises(StateError, match="writable by others"), StateDir(loose).lock(1):
        pass


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    """A state dir that is a symlink, or a record that is one, is refused, not followed."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StateError, match="symlink"), StateDir(tmp_path / "link").lock(1):
        pass
    (real / "applied.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text("{}")
    with pytest.raises(StateError, match=r"applied\.json: cannot read"):
        StateDir(real).read_applied()


def test_pending_round_trips_and_clears(tmp_path: Path) -> None:
    """The intent record reads back equal (a removal too), and clear_pending forgets it."""
    state = StateDir(tmp_path)
    pending = PendingChange("p.yaml", "version: 1\n", _applied("x").table, "2026")
    state.record_pending(pending)
    assert state.read_pending() == pending
    state.record_pending(PendingChange("", "", None, "2026"))
    assert state.read_pending() == PendingChange("", "", None, "2026")
    state.clear_pending()
    assert state.read_pending() is None


def test_records_are_parsed_once(tmp_path: Path) -> None:
    """Last-known-good promoted from applied.json is the same record, parsed once; records
    read again with nothing rewritten are the earlier ones; any write is read anew."""
    state = StateDir(tmp_path / "state")
    state.record_applied(_applied("one"))
    state.promote_last_known_good(_applied("one"))
    first = state.read_records()
    assert first.applied == _applied("one") and first.last_known_good is first.applied
    assert state.read_records(first) is first
    state.record_applied(_applied("two"))
    second = state.read_records(first)
    assert second is not first and second.applied == _applied("two")
    assert second.last_known_good == _applied("one")
    state.record_pending(PendingChange("p.yaml", "version: 1\n", None, "now"))
    assert state.read_records(second).pending is not None
