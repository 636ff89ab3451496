"""`rollback`: history rows back in force through apply's path, proven with packets."""

from __future__ import annotations

from pathlib import Path

import pytest

from portguard.history import History
from portguard.state import Action, StateDir
from tests.faultlab import FaultLab

pytestmark = pytest.mark.netns


def _run(fl: FaultLab, state: Path, *args: str) -> str:
    done = fl.run(*args, "--yes", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_history_and_rollback_round_trip(fl: FaultLab, tmp_path: Path) -> None:
    """Three applies, then rollback walks back one policy at a time; ID jumps; all recorded."""
    state = tmp_path / "state"
    for name in ("old", "new", "refused"):
        _run(fl, state, "apply", str(fl.policy(name)))
    assert fl.in_force() == "refused"
    assert "rolled back to history row 2" in _run(fl, state, "rollback")
    assert fl.in_force() == "new"
    assert "rolled back to history row 1" in _run(fl, state, "rollback")
    assert fl.in_force() == "old"
    assert "rolled back to history row 3" in _run(fl, state, "rollback", "3")
    assert fl.in_force() == "refused"
    rows = History.of(StateDir(state)).entries()
    assert [(r.action, r.outcome) for r in rows[:3]] == [(Action.ROLLBACK, "applied")] * 3
    record = StateDir(state).read_applied()
    assert record is not None and record.source is Action.ROLLBACK
    status = fl.run("status", "--check", "--state-dir", str(state))
    assert status.returncode == 0, status.stdout


def test_rollback_refuses_a_failed_row_and_changes_nothing(fl: FaultLab, tmp_path: Path) -> None:
    """Rolling back to a missing or failed row: exit 1, one line, the rules stay."""
    state = tmp_path / "state"
    _run(fl, state, "apply", str(fl.policy("old")))
    missing = fl.run("rollback", "99", "--yes", "--state-dir", str(state))
    assert missing.returncode == 1 and missing.stderr == "no history row 99\n"
    nothing = fl.run("rollback", "--yes", "--state-dir", str(state))
    assert nothing.returncode == 1
    assert nothing.stderr == "no earlier change in the history to roll back to\n"
    assert fl.in_force() == "old"
