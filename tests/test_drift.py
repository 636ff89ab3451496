"""Drift classification, the unified diff, and the meter-state filter on listings (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portguard.backends.nftables import without_dynamic_elements
from portguard.drift import RulesetState, classify, table_in_force, unified_diff, unrecorded
from portguard.facts.ruleset import LiveTable
from portguard.policy import parse_policy
from portguard.render.nft_table import NftTable
from portguard.render.nftables import render_table
from portguard.state import AppliedState, PendingChange, Records

LISTING = "table inet portguard {\n\tchain input {\n\t\ttcp dport 22 accept\n\t}\n}\n"


def _table(port: int) -> NftTable:
    policy = f"version: 1\nallow:\n  - port: {port}\n"
    return render_table(parse_policy(policy, "p.yaml", base_dir=Path(".")).policy)


OLD, NEW = _table(22), _table(80)


def _live(table: NftTable | None, listing: str = LISTING) -> LiveTable:
    marker = table.digest if table is not None else None
    return LiveTable(listing, marker, (), (), foreign=False)


def _records(applied: NftTable | None = None, pending: NftTable | None = None) -> Records:
    return Records(
        applied=None
        if applied is None
        else AppliedState("p.yaml", "version: 1\n", applied, LISTING, "2026-01-01T00:00:00+00:00"),
        last_known_good=None,
        pending=None if pending is None else PendingChange("q.yaml", "", pending, "t"),
        removed_at=None,
        warnings=(),
    )


@pytest.mark.parametrize(
    ("rendering", "records", "live", "expected"),
    [
        (None, _records(), None, RulesetState.ABSENT),
        (OLD, _records(OLD), None, RulesetState.ABSENT),
        (None, _records(), _live(OLD), RulesetState.DRIFTED),
        (OLD, _records(), _live(OLD), RulesetState.DRIFTED),
        (None, _records(OLD), _live(OLD, LISTING + "# extra\n"), RulesetState.DRIFTED),
        (NEW, _records(OLD), _live(OLD, LISTING.replace("22", "23")), RulesetState.DRIFTED),
        (OLD, _records(OLD), _live(None), RulesetState.DRIFTED),
        (NEW, _records(OLD), _live(OLD), RulesetState.DIFFERS),
        (OLD, _records(OLD), _live(OLD), RulesetState.IN_SYNC),
        (None, _records(OLD), _live(OLD), RulesetState.IN_SYNC),
        (NEW, _records(OLD, pending=NEW), _live(NEW, "other"), RulesetState.IN_SYNC),
        (OLD, _records(OLD, pending=NEW), _live(NEW, "other"), RulesetState.DIFFERS),
        (OLD, _records(OLD, pending=NEW), _live(OLD), RulesetState.IN_SYNC),
    ],
    ids=[
        "nothing",
        "applied-but-gone",
        "table-without-record",
        "table-without-record-with-rendering",
        "live-changed",
        "live-changed-and-new-rendering",
        "marker-removed",
        "new-rendering",
        "same-rendering",
        "no-rendering-given",
        "interrupted-apply-is-live",
        "interrupted-apply-is-live-old-wanted",
        "interrupted-apply-did-not-take",
    ],
)
def test_classify(
    rendering: NftTable | None, records: Records, live: LiveTable | None, expected: RulesetState
) -> None:
    """Each combination of rendering, records and live table gets the documented state."""
    assert classify(rendering, records, live) is expected


def test_table_in_force_names_the_interrupted_apply_only_by_its_marker() -> None:
    """A pending change is in force only when the live marker is its digest; then unrecorded."""
    records = _records(OLD, pending=NEW)
    assert table_in_force(records, _live(NEW, "x")) == NEW
    assert unrecorded(records, _live(NEW, "x"))
    assert table_in_force(records, _live(OLD)) == OLD
    assert not unrecorded(records, _live(OLD))
    assert table_in_force(records, _live(_table(443), "x")) is None


def test_state_values_are_the_json_words() -> None:
    """The enum's values are the words `plan --format json` and `status` print."""
    assert [s.value for s in RulesetState] == ["absent", "in-sync", "differs", "drifted"]


def test_unified_diff_shows_changed_lines_and_names() -> None:
    """The diff names both sides and marks the removed and added line."""
    diff = unified_diff("a\nb\n", "a\nc\n", "applied", "live")
    assert diff.splitlines() == ["--- applied", "+++ live", "@@ -1,2 +1,2 @@", " a", "-b", "+c"]


def test_unified_diff_of_equal_texts_is_empty() -> None:
    """Equal texts give an empty diff."""
    assert unified_diff("x\n", "x\n", "a", "b") == ""


def test_unified_diff_ends_every_line() -> None:
    """A text without a final newline still gives one line per diff line."""
    diff = unified_diff("a", "b", "old", "new")
    assert diff.endswith("\n")
    assert "-a\n+b\n" in diff


DYNAMIC_LISTING = """table inet portguard {
\tset e1_meter4 {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 1m
\t\telements = { 10.0.0.1 expires 59s, 10.0.0.2 expires 58s,
\t\t\t     10.0.0.3 expires 30s }
\t}

\tset e1_from4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 192.0.2.0/24 }
\t}
}
"""


def test_dynamic_set_elements_are_dropped_from_listings() -> None:
    """Meter entries (added by traffic) vanish, over several lines; static elements stay."""
    cleaned = without_dynamic_elements(DYNAMIC_LISTING)
    assert "10.0.0." not in cleaned
    assert "expires" not in cleaned
    assert "\t\telements = { 192.0.2.0/24 }\n" in cleaned
    assert "\t\ttimeout 1m\n\t}\n" in cleaned


def test_listing_without_dynamic_sets_is_unchanged() -> None:
    """A listing with no dynamic set comes back byte for byte."""
    assert without_dynamic_elements(LISTING) == LISTING
