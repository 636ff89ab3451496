"""diff by meaning (interfaces, settings); lint (interfaces, icmp line, ::ffff:); idle ports."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from portguard.cli import main
from portguard.model import ListeningSocket, Proto
from portguard.plan import build_plan
from portguard.policy.load import parse_policy
from portguard.policy_diff import PolicyDiff, diff_json, diff_policies


def _diff(old: str, new: str) -> PolicyDiff:
    """diff_policies over two policy texts."""
    first, second = (parse_policy(t.encode(), n) for t, n in ((old, "old.yaml"), (new, "new.yaml")))
    return diff_policies(first.policy, second.policy, first.warnings, second.warnings)


def _rows(diff: PolicyDiff) -> tuple[list[tuple[str, str, str | None]], ...]:
    """(proto, ports, interface) of opened and of closed."""
    return tuple(
        [(c.proto.value, c.ports_text, c.interface) for c in changes]
        for changes in (diff.opened, diff.closed)
    )


def _warnings(text: str) -> list[str]:
    """The lint warnings of a policy text, as printed."""
    return [str(w) for w in parse_policy(text.encode(), "t.yaml").warnings]


def test_interface_glob_covering_the_old_name_closes_nothing() -> None:
    """mgmt0 -> "mgmt*": packets on mgmt0 still pass; other mgmt interfaces open."""
    old = "version: 1\nallow:\n  - port: 22\n    interface: mgmt0\n"
    new = 'version: 1\nallow:\n  - port: 22\n    interface: "mgmt*"\n'
    assert _rows(_diff(old, new)) == ([("tcp", "22", "mgmt*")], [])
    assert _rows(_diff(new, old)) == ([], [("tcp", "22", "mgmt*")])


def test_same_interface_meaning_is_no_change() -> None:
    """An entry on eth0 next to the same port for any interface: dropping it changes nothing."""
    old = "version: 1\nallow:\n  - port: 22\n  - port: 22\n    interface: eth0\n"
    new = "version: 1\nallow:\n  - port: 22\n"
    assert _rows(_diff(old, new)) == ([], [])


def test_opened_everywhere_reads_as_any_interface() -> None:
    """A port opened for every interface is one row with interface None (any)."""
    old = "version: 1\nallow:\n  - port: 80\n    interface: eth0\n"
    new = "version: 1\nallow:\n  - port: 80\n    interface: eth0\n  - port: 443\n"
    assert _rows(_diff(old, new)) == ([("tcp", "443", None)], [])


def test_settings_changes_are_in_the_summary() -> None:
    """default, icmp, log and a limit change appear as settings, in text, JSON and markdown."""
    old = "version: 1\nallow:\n  - port: 22\n    limit: 6/minute\n"
    new = (
        "version: 1\ndefault: reject\nicmp: all\nlog: true\nallow:\n"
        "  - port: 22\n    limit: 20/minute\n"
    )
    diff = _diff(old, new)
    assert [str(s) for s in diff.settings] == [
        "default: drop -> reject",
        "icmp: essential -> all",
        "log: false -> true",
        "limit tcp 22 from any: 6/minute -> 20/minute",
    ]
    assert diff.changed
    assert diff_json(diff)["settings"] == [
        {"key": "default", "old": "drop", "new": "reject"},
        {"key": "icmp", "old": "essential", "new": "all"},
        {"key": "log", "old": "false", "new": "true"},
        {"key": "limit tcp 22 from any", "old": "6/minute", "new": "20/minute"},
    ]


def test_settings_block_in_diff_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`portguard diff` prints a Settings block when a limit is dropped."""
    base = tmp_path
    (base / "a.yaml").write_text("version: 1\nallow:\n  - port: 22\n    limit: 6/minute\n")
    (base / "b.yaml").write_text("version: 1\nallow:\n  - port: 22\n")
    assert main(["diff", str(base / "a.yaml"), str(base / "b.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Settings:\n  limit tcp 22 from any: 6/minute -> none" in out


def test_unchanged_policies_have_no_settings() -> None:
    """Identical settings: nothing reported, and JSON has no settings key."""
    text = "version: 1\nicmp: none\nallow:\n  - port: 22\n    limit: 6/minute\n"
    diff = _diff(text, text)
    assert diff.settings == ()
    assert "settings" not in diff_json(diff)


def test_lint_any_interface_overlapping_an_interface_entry() -> None:
    """An entry for any interface overlapping an eth0 entry is flagged, naming both."""
    text = "version: 1\nallow:\n  - port: 22\n    interface: eth0\n  - port: 20-25\n"
    assert _warnings(text) == [
        "t.yaml:5:5: warning: overlaps the entry at line 3 (port 22; interface eth0 and any meet)"
    ]


def test_lint_interface_glob_overlapping_a_name() -> None:
    """ "eth*" and eth0 meet; eth0 and eth1 do not."""
    text = (
        'version: 1\nallow:\n  - port: 80\n    interface: "eth*"\n'
        "  - port: 80\n    interface: eth0\n  - port: 80\n    interface: wlan0\n"
    )
    assert _warnings(text) == [
        "t.yaml:5:5: warning: overlaps the entry at line 3 (port 80; interface eth* and eth0 meet)"
    ]


def test_icmp_none_warning_names_the_icmp_line() -> None:
    """The icmp: none warning points at the icmp key, not the first allow entry."""
    text = "version: 1\ndescription: x\nallow:\n  - port: 22\nicmp: none\n"
    assert _warnings(text) == [
        "t.yaml:5:1: warning: icmp: none also blocks IPv6 neighbour discovery;"
        " IPv6 will stop working"
    ]


def test_ipv4_mapped_from_warns_with_the_ipv4_form() -> None:
    """from ::ffff:198.51.100.0/120 never matches IPv4 clients: warn and suggest /24."""
    text = 'version: 1\nallow:\n  - port: 22\n    from: "::ffff:198.51.100.0/120"\n    comment: x\n'
    assert _warnings(text) == [
        "t.yaml:3:5: warning: from ::ffff:198.51.100.0/120 is IPv4-mapped IPv6: IPv4 clients"
        " arrive as IPv4 and never match it; write 198.51.100.0/24"
    ]


def test_plan_reports_idle_ports_per_port_as_ranges() -> None:
    """A range 8000-8010 with 3 ports in use reports its 8 idle ports, compressed to ranges."""
    policy = parse_policy(b"version: 1\nallow:\n  - port: 8000-8010\n  - port: 22\n", "p.yaml")
    sockets = tuple(
        ListeningSocket(Proto.TCP, ip_address("0.0.0.0"), port, 1, "app")
        for port in (8000, 8004, 8005, 22)
    )
    plan = build_plan(policy.policy, sockets, None, "", None)
    assert [(i.proto.value, i.ports, i.line) for i in plan.idle_allows] == [
        ("tcp", "8001-8003,8006-8010", 3)
    ]
