"""`deny:`: loading (located errors), lint, verdict, rendering, and real packets v4 + v6."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from portguard.errors import PolicyError
from portguard.policy.load import load_policy, parse_policy
from portguard.render.nftables import render_nftables
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, verdict
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab
from tests.probe import (
    FILTERED,
    OPEN,
    SCANNER_V4_EXTRA,
    SCANNER_V6_EXTRA,
    Probe,
    apply_in_host,
    expected_outcome,
    listeners,
    prepare_lab,
    scan,
)

POLICY = """\
version: 1
sets:
  extra: ["2001:db8:7::3"]
deny:
  - 192.0.2.3
  - "@extra"
  - file: blocklist.txt
allow:
  - port: 22
  - port: 80
    from: [192.0.2.0/24, "2001:db8:7::/64"]
  - port: 53
    proto: udp
    from: 192.0.2.3
"""


def _load(tmp_path: Path, text: str = POLICY) -> Path:
    (tmp_path / "blocklist.txt").write_text("# attackers\n198.51.100.0/24\n", encoding="utf-8")
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_deny_items_load_with_locations(tmp_path: Path) -> None:
    """Addresses, @sets and set files load as named items located at their lines."""
    policy = load_policy(_load(tmp_path)).policy
    assert [(d.name, d.location.line) for d in policy.deny] == [
        ("192.0.2.3", 5),
        ("@extra", 6),
        ("file:blocklist.txt", 7),
    ]
    assert policy.denied() == (
        ip_network("192.0.2.3/32"),
        ip_network("2001:db8:7::3/128"),
        ip_network("198.51.100.0/24"),
    )


@pytest.mark.parametrize(
    ("deny", "message"),
    [
        ("[nonsense]", "x.yaml:3:8: 'nonsense' is not an IP address or CIDR network"),
        ('["@nope"]', "x.yaml:3:8: unknown set '@nope' (define it under sets:)"),
        ("[{file: missing.txt}]", "x.yaml:3:15: cannot read set file 'missing.txt'"),
        ("", "x.yaml:3:6: deny must be a list of sources (use [] to deny no one)"),
    ],
)
def test_bad_deny_is_one_located_error(tmp_path: Path, deny: str, message: str) -> None:
    """Each bad deny item is a PolicyError naming file:line:col."""
    text = f"version: 1\nallow: []\ndeny: {deny}\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "x.yaml", base_dir=tmp_path)
    assert str(caught.value).startswith(message)


def test_lint_warns_when_deny_swallows_a_from(tmp_path: Path) -> None:
    """An entry whose every `from` source is denied allows no one: a warning at the entry."""
    loaded = load_policy(_load(tmp_path))
    messages = [(w.location.line, w.message) for w in loaded.warnings]
    assert messages == [
        (
            12,
            "every source in 'from' (192.0.2.3) is denied by deny '192.0.2.3' (line 5):"
            " this entry allows no one",
        )
    ]
    everyone = parse_policy("version: 1\nallow: []\ndeny: [0.0.0.0/0]\n", "y.yaml")
    assert [w.message for w in everyone.warnings] == [
        "deny '0.0.0.0/0' drops every IPv4 source's new connections"
    ]


def test_verdict_drops_denied_new_packets_only(tmp_path: Path) -> None:
    """Denied sources lose new packets on every port (ICMP too); established ones pass."""
    policy = load_policy(_load(tmp_path)).policy
    denied, other = ip_address("198.51.100.9"), ip_address("203.0.113.1")

    def judge(source: IPv4Address | IPv6Address, **changes: Any) -> Verdict:
        packet = Packet(proto=PacketProto.TCP, source=source, interface="eth0", dport=22)
        return verdict(policy, replace(packet, **changes))

    assert judge(denied) is Verdict.DROP
    assert judge(other) is Verdict.ACCEPT
    assert judge(denied, state=ConnState.ESTABLISHED) is Verdict.ACCEPT
    assert judge(denied, proto=PacketProto.ICMP, dport=None, icmp_type="echo-request") is (
        Verdict.DROP
    )
    assert judge(denied, dnat=True) is Verdict.DROP
    assert judge(other, dnat=True) is Verdict.ACCEPT


def test_render_puts_deny_after_established_and_before_icmp(tmp_path: Path) -> None:
    """The deny rules sit after the established accept and before ICMP and the allow rules."""
    text = render_nftables(load_policy(_load(tmp_path)).policy)
    rules = [line.strip() for line in text.splitlines() if line.startswith("\t\t")]
    input_rules = rules[: rules.index("type filter hook forward priority filter; policy accept;")]
    at = input_rules.index("ip saddr @deny4 counter drop")
    assert input_rules[at - 1] == "ct state { established, related } accept"
    assert input_rules[at + 1] == "ip6 saddr @deny6 counter drop"
    assert input_rules[at + 2].startswith("icmp type")
    assert "\t\t\t198.51.100.0/24,\n" in text and "\t\t\t2001:db8:7::3/128,\n" in text


@pytest.mark.netns
def test_denied_sources_cannot_reach_allowed_ports(net_lab: Lab, tmp_path: Path) -> None:
    """From the scanner: denied addresses (v4, v6) are filtered on open ports, others pass."""
    policy_file = _load(tmp_path)
    policy = load_policy(policy_file).policy
    prepare_lab(net_lab)
    sources = (SCANNER_V4, SCANNER_V4_EXTRA, SCANNER_V6, SCANNER_V6_EXTRA)
    probes = [
        Probe("tcp", HOST_V6 if ":" in src else HOST_V4, port, src)
        for port in (22, 80)
        for src in sources
    ]
    with listeners(net_lab.host, tcp=(22, 80)):
        before = {(r.probe.port, r.probe.src): r.outcome for r in scan(net_lab.scanner, probes)}
        assert set(before.values()) == {OPEN}, before
        apply_in_host(net_lab, policy_file, tmp_path / "state")
        after = scan(net_lab.scanner, probes)
    seen = {(r.probe.port, r.probe.src): r.outcome for r in after}
    for src in (SCANNER_V4_EXTRA, SCANNER_V6_EXTRA):
        assert seen[22, src] == seen[80, src] == FILTERED
    for src in (SCANNER_V4, SCANNER_V6):
        assert seen[22, src] == seen[80, src] == OPEN
    for result in after:
        want = expected_outcome(policy, result.probe, listening=True, interface=net_lab.host_if)
        assert result.outcome == want, result


def test_windows_renders_deny_as_block_rules(tmp_path: Path) -> None:
    """Windows: one block rule per protocol from the denied sources, on every port."""
    from portguard.render.windows_rules import Action, build_windows_rules  # noqa: PLC0415

    policy = load_policy(_load(tmp_path)).policy
    deny = [r for r in build_windows_rules(policy).rules if r.key.startswith("deny-")]
    assert [
        (r.key, r.action, r.local_ports, tuple(map(str, r.remote_addresses))) for r in deny
    ] == [
        ("deny-tcp-1", Action.BLOCK, (), ("192.0.2.3/32", "198.51.100.0/24", "2001:db8:7::3/128")),
        ("deny-udp-1", Action.BLOCK, (), ("192.0.2.3/32", "198.51.100.0/24", "2001:db8:7::3/128")),
        ("deny-icmpv4-1", Action.BLOCK, (), ("192.0.2.3/32", "198.51.100.0/24")),
        ("deny-icmpv6-1", Action.BLOCK, (), ("2001:db8:7::3/128",)),
    ]


def test_diff_reports_a_new_deny_as_closed() -> None:
    """Adding a deny closes exactly the denied sources on the ports they could reach."""
    from portguard.policy_diff import diff_policies  # noqa: PLC0415

    old = parse_policy("version: 1\nallow:\n  - port: 22\n", "old.yaml").policy
    new = parse_policy(
        "version: 1\ndeny: [198.51.100.0/24]\nallow:\n  - port: 22\n", "new.yaml"
    ).policy
    diff = diff_policies(old, new)
    assert diff.opened == ()
    assert [(c.proto.value, c.ports_text, c.sources) for c in diff.closed] == [
        ("tcp", "22", ("198.51.100.0/24",))
    ]
    assert "@deny4" in diff.ruleset_diff


def test_plan_judges_an_outsider_that_is_not_denied() -> None:
    """A deny over plan's usual outsider address does not make an open port look closed."""
    from portguard.model import ListeningSocket, Proto  # noqa: PLC0415
    from portguard.plan import SocketVerdict, judge_socket  # noqa: PLC0415

    policy = parse_policy(
        "version: 1\ndeny: [1.0.0.0/8, '2000::/16']\nallow:\n  - port: 22\n", "p.yaml"
    ).policy
    sock = ListeningSocket(Proto.TCP, ip_address("0.0.0.0"), 22, None, None)
    judged = judge_socket(policy, sock)
    assert (judged.verdict, judged.from_anywhere) == (SocketVerdict.ALLOWED, True)
