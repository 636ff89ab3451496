"""Drift classification, the unified diff, and the meter-state filter on listings (pure)."""

from __future__ import annotations

import pytest

from portguard.backends.nftables import without_dynamic_elements
from portguard.drift import RulesetState, classify, unified_diff
from portguard.state import AppliedState, listing_digest

LISTING = "table inet portguard {\n\tchain input {\n\t\ttcp dport 22 accept\n\t}\n}\n"


def _applied(rendered: str = "RENDERED", listing: str = LISTING) -> AppliedState:
    return AppliedState(
        policy_path="p.yaml",
        policy_text="version: 1\n",
        rendered=rendered,
        listing=listing,
        listing_sha256=listing_digest(listing),
        applied_at="2026-01-01T00:00:00+00:00",
    )


@pytest.mark.parametrize(
    ("rendered", "applied", "live", "expected"),
    [
        (None, None, None, RulesetState.ABSENT),
        ("RENDERED", _applied(), None, RulesetState.ABSENT),
        (None, None, LISTING, RulesetState.DRIFTED),
        ("RENDERED", None, LISTING, RulesetState.DRIFTED),
        (None, _applied(), LISTING + "# extra\n", RulesetState.DRIFTED),
        ("OTHER", _applied(), LISTING.replace("22", "23"), RulesetState.DRIFTED),
        ("OTHER", _applied(), LISTING, RulesetState.DIFFERS),
        ("RENDERED", _applied(), LISTING, RulesetState.IN_SYNC),
        (None, _applied(), LISTING, RulesetState.IN_SYNC),
    ],
    ids=[
        "nothing",
        "applied-but-gone",
        "table-without-record",
        "table-without-record-with-rendering",
        "live-changed",
        "live-changed-and-new-rendering",
        "new-rendering",
        "same-rendering",
        "no-rendering-given",
    ],
)
def test_classify(
    rendered: str | None,
    applied: AppliedState | None,
    live: str | None,
    expected: RulesetState,
) -> None:
    """Each combination of rendering, record and live listing gets the documented state."""
    assert classify(rendered, applied, live) is expected


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
