"""Lint: every warning fires where it should, and nowhere on the bundled policies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from portguard.model import ForwardedMode
from portguard.policy import lint_policy, load_policy, parse_policy

POLICIES = sorted((Path(__file__).resolve().parent.parent / "policies").glob("*.yaml"))


def warnings_of(body: str) -> list[str]:
    """The warning lines for a version-1 policy whose remaining text is `body`."""
    loaded = parse_policy("version: 1\n" + body, "t.yaml")
    return [str(w) for w in loaded.warnings]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_bundled_policies_have_no_warnings(path: Path) -> None:
    """The example policies are lint-clean."""
    assert load_policy(path).warnings == ()


def test_clean_policy_has_no_warnings() -> None:
    """Ordinary, distinct entries produce nothing."""
    body = (
        "allow:\n  - port: 22\n    from: [10.0.0.0/8]\n  - port: 22\n    from: [192.168.0.0/16]\n"
    )
    body += "  - port: 53\n    proto: udp\n  - port: 53\n"
    assert warnings_of(body) == []


def test_every_port() -> None:
    """An entry covering 1-65535, in one range or in pieces, is flagged."""
    assert warnings_of("allow:\n  - port: 1-65535\n") == [
        "t.yaml:3:5: warning: this entry allows every port (1-65535)"
    ]
    pieces = warnings_of("allow:\n  - port: [1-1000, 1001-65535]\n")
    assert pieces == ["t.yaml:3:5: warning: this entry allows every port (1-65535)"]
    gap = warnings_of("allow:\n  - port: [1-1000, 1002-65535]\n")
    assert not any("every port" in w for w in gap)


def test_duplicate_entry() -> None:
    """The same ports, protocols and sources twice: the second names the first."""
    body = "allow:\n  - port: 80\n  - port: [80]\n    proto: tcp\n"
    assert warnings_of(body) == ["t.yaml:4:5: warning: duplicates the entry at line 3"]


def test_overlapping_entries_name_the_shared_ports() -> None:
    """Overlapping ranges on the same protocol warn with the shared ports."""
    body = "allow:\n  - port: 8000-8100\n  - port: 8050-9000\n"
    assert warnings_of(body) == [
        "t.yaml:4:5: warning: overlaps the entry at line 3 (port 8050-8100)"
    ]


def test_overlap_needs_shared_protocol_and_sources() -> None:
    """Different protocols, or disjoint source lists, are not overlaps."""
    assert warnings_of("allow:\n  - port: 53\n  - port: 53\n    proto: udp\n") == []
    body = (
        "allow:\n  - port: 22\n    from: [10.0.0.0/8]\n  - port: 22\n    from: ['2001:db8::/32']\n"
    )
    assert warnings_of(body) == []
    nested = "allow:\n  - port: 22\n    from: [10.0.0.0/8]\n  - port: 22\n    from: [10.1.0.0/16]\n"
    assert warnings_of(nested) == ["t.yaml:5:5: warning: overlaps the entry at line 3 (port 22)"]


def test_trojan_ports() -> None:
    """A well-known trojan port, alone or inside a range, is named with its trojan."""
    assert warnings_of("allow:\n  - port: 31337\n") == [
        "t.yaml:3:5: warning: allows well-known trojan port(s): 31337 (Back Orifice)"
    ]
    assert warnings_of("allow:\n  - port: 12340-12350\n") == [
        "t.yaml:3:5: warning: allows well-known trojan port(s): 12345 (NetBus), 12346 (NetBus)"
    ]


def test_single_public_host_without_comment() -> None:
    """A lone public address needs a comment saying whose it is; private ones do not."""
    assert warnings_of("allow:\n  - port: 22\n    from: [8.8.8.8]\n") == [
        "t.yaml:3:5: warning: from a single public host 8.8.8.8 with no comment; say whose it is"
    ]
    commented = "allow:\n  - port: 22\n    from: [8.8.8.8]\n    comment: the DNS people\n"
    assert warnings_of(commented) == []
    assert warnings_of("allow:\n  - port: 22\n    from: [10.0.0.7, 192.0.2.1]\n") == []
    assert warnings_of("allow:\n  - port: 22\n    from: [8.8.8.0/24]\n") == []


def test_icmp_none_warns_about_ipv6() -> None:
    """icmp: none breaks IPv6 neighbour discovery, and says so at the icmp line."""
    assert warnings_of("icmp: none\nallow: []\n") == [
        "t.yaml:2:1: warning: icmp: none also blocks IPv6 neighbour discovery;"
        " IPv6 will stop working"
    ]


def test_from_matching_nothing() -> None:
    """A from that is only an empty set allows nothing, and is flagged."""
    body = "sets:\n  nobody: []\nallow:\n  - port: 22\n    from: ['@nobody']\n"
    assert warnings_of(body) == ["t.yaml:5:5: warning: 'from' matches no address: allows nothing"]


def test_host_bits_set() -> None:
    """An address with host bits set is read as its network, with a warning at the item."""
    loaded = parse_policy("version: 1\nallow:\n  - port: 22\n    from: [10.0.0.1/8]\n", "t.yaml")
    assert [str(w) for w in loaded.warnings] == [
        "t.yaml:4:12: warning: '10.0.0.1/8' has host bits set; it means 10.0.0.0/8"
    ]
    assert str(loaded.policy.allow[0].sources) == "(IPv4Network('10.0.0.0/8'),)"


def test_warnings_come_in_file_order() -> None:
    """Warnings are sorted by line, whichever check found them."""
    body = "allow:\n  - port: 31337\n  - port: 22\n    from: [8.8.8.8]\n  - port: 22\n"
    lines = [int(w.split(":")[1]) for w in warnings_of(body)]
    assert lines == sorted(lines)
    assert len(lines) == 3


def test_forwarded_ignore_warns_at_the_key() -> None:
    """forwarded: ignore warns, at the key, that published ports escape the allow list."""
    warnings = warnings_of("description: x\nforwarded: ignore\nallow: []\n")
    assert warnings == [
        "t.yaml:3:1: warning: published ports (Docker -p, podman, libvirt, kube-proxy DNAT)"
        " are reachable whatever the allow list says (forwarded: ignore)"
    ]


def test_forwarded_filter_does_not_warn() -> None:
    """forwarded: filter, written or by default, is silent."""
    assert warnings_of("forwarded: filter\nallow: []\n") == []
    assert warnings_of("allow: []\n") == []


def test_forwarded_warning_without_the_loader_points_at_line_one() -> None:
    """lint_policy on a Policy built in code (no key locations) still warns, at line 1."""
    policy = replace(
        parse_policy("version: 1\nallow: []\n", "t.yaml").policy, forwarded=ForwardedMode.IGNORE
    )
    assert [str(w) for w in lint_policy(policy)] == [
        "t.yaml:1:1: warning: published ports (Docker -p, podman, libvirt, kube-proxy DNAT)"
        " are reachable whatever the allow list says (forwarded: ignore)"
    ]
