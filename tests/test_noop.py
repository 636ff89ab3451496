"""The no-op re-apply fast path on a real kernel: taken when nothing changed, never on drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.netns import Netns, portguard_argv

pytestmark = pytest.mark.netns

POLICY = """\
version: 1
sets:
  office: {file: office.txt}
allow:
  - port: 22
    from: ['@office']
  - port: 443
"""
OFFICE = "192.0.2.0/24\n198.51.100.0/25\n10.1.0.0/16\n"
UNCHANGED = "unchanged, nothing to do"
DRIFTED = "replaced a table that had drifted"
PROVEN = (
    "import sys; from portguard.noop import proven_unchanged; from portguard.state import StateDir;"
    " from pathlib import Path;"
    " print('proven' if proven_unchanged(sys.argv[1], StateDir(Path(sys.argv[2]))) else 'full')"
)


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    (tmp_path / "office.txt").write_text(OFFICE, encoding="utf-8")
    return policy, tmp_path / "state"


def _apply(netns: Netns, policy: Path, state: Path) -> str:
    """Run `portguard apply --yes` in the namespace; its stdout."""
    result = netns.run(portguard_argv("apply", "--yes", "--state-dir", str(state), str(policy)))
    return result.stdout


def _proof(netns: Netns, policy: Path, state: Path) -> str:
    """'proven' when the fast path would answer in the namespace now, else 'full'."""
    argv = [*portguard_argv()[:1], "-c", PROVEN, str(policy), str(state)]
    return netns.run(argv).stdout.strip()


def _set_name(netns: Netns) -> str:
    """The live name of the IPv4 tcp `from` set (its generation suffix varies)."""
    listing = netns.run(["nft", "list", "table", "inet", "portguard"]).stdout
    match = re.search(r"set (from4_tcp\w*) \{", listing)
    assert match is not None, listing
    return match.group(1)


def test_unchanged_reapply_is_proven_and_says_so(netns: Netns, tmp_path: Path) -> None:
    """Apply, then the same apply: proven unchanged from the records, and reported as such."""
    policy, state = _setup(tmp_path)
    assert _proof(netns, policy, state) == "full"  # no record yet
    assert "applied" in _apply(netns, policy, state)
    assert _proof(netns, policy, state) == "proven"
    listing = netns.run(["nft", "list", "ruleset"]).stdout
    assert UNCHANGED in _apply(netns, policy, state)
    assert netns.run(["nft", "list", "ruleset"]).stdout == listing


def test_element_added_behind_portguards_back_is_drift(netns: Netns, tmp_path: Path) -> None:
    """One set element added by hand: no proof; the apply replaces the drifted table."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    name = _set_name(netns)
    netns.run(["nft", "add", "element", "inet", "portguard", name, "{ 203.0.113.7 . 22 }"])
    assert _proof(netns, policy, state) == "full"
    assert DRIFTED in _apply(netns, policy, state)
    listing = netns.run(["nft", "list", "table", "inet", "portguard"]).stdout
    assert "203.0.113.7" not in listing
    assert _proof(netns, policy, state) == "proven"  # the new record carries a new proof


def test_rule_changed_behind_portguards_back_is_drift(netns: Netns, tmp_path: Path) -> None:
    """One rule inserted by hand: no proof; the apply replaces the drifted table."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    netns.run(
        ["nft", "insert", "rule", "inet", "portguard", "input", "tcp", "dport", "31337", "accept"]
    )
    assert _proof(netns, policy, state) == "full"
    assert DRIFTED in _apply(netns, policy, state)
    assert "31337" not in netns.run(["nft", "list", "table", "inet", "portguard"]).stdout


def test_changed_set_file_is_applied(netns: Netns, tmp_path: Path) -> None:
    """A set file edited (the policy text the same): no proof; the new address goes in."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    (tmp_path / "office.txt").write_text(OFFICE + "203.0.113.0/24\n", encoding="utf-8")
    assert _proof(netns, policy, state) == "full"
    assert "replaced the previously applied policy" in _apply(netns, policy, state)
    assert "203.0.113.0/24" in netns.run(["nft", "list", "table", "inet", "portguard"]).stdout


def test_other_tables_change_falls_back_to_the_full_comparison(
    netns: Netns, tmp_path: Path
) -> None:
    """Another table's change makes a new generation: the full path still finds it unchanged."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    netns.run(["nft", "add", "table", "inet", "someone_else"])
    assert _proof(netns, policy, state) == "full"
    assert UNCHANGED in _apply(netns, policy, state)
    assert _proof(netns, policy, state) == "proven"


def test_removed_table_is_not_unchanged(netns: Netns, tmp_path: Path) -> None:
    """The table deleted by hand: no proof; the apply loads it again."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    netns.run(["nft", "delete", "table", "inet", "portguard"])
    assert _proof(netns, policy, state) == "full"
    assert "table inet portguard was not loaded before" in _apply(netns, policy, state)
