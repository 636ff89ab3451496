"""Windows renderers: golden files, and the rendered rules read back and checked against verdict.

Set PORTGUARD_UPDATE_GOLDEN=1 to rewrite the expected files after a deliberate change.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portguard.cli import main
from portguard.errors import PolicyError
from portguard.model import ForwardedMode, Network, Policy, PortRange, Proto
from portguard.policy import load_policy
from portguard.render.layout import layout_policy, merge_ranges
from portguard.render.netsh import render_netsh
from portguard.render.powershell import render_powershell
from portguard.render.windivert import render_windivert, windivert_filter
from portguard.render.windows_rules import (
    DHCP_CLIENT_PORTS,
    FORWARDED_NOTE,
    MAX_PORT_ITEMS_PER_RULE,
    address_complement,
    build_windows_rules,
)
from portguard.verdict import Packet, PacketProto, Verdict, verdict

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted(p for p in (HERE / "scenarios_windows").iterdir() if p.is_dir())
BUNDLED = sorted((HERE.parent / "policies").glob("*.yaml"))
TARGETS = {"expected.cmd": render_netsh, "expected.ps1": render_powershell}
V4_SPACE = IPv4Network("0.0.0.0/0")
V6_SPACE = IPv6Network("::/0")


@dataclass(frozen=True)
class ParsedRule:
    """A rendered rule read back from text: what Windows Firewall would match."""

    action: str
    protocol: str
    ports: tuple[PortRange, ...]  # () = any
    remotes: tuple[Network, ...]  # () = any
    interface: str | None

    def matches(self, proto: str, port: int, source: str, interface: str) -> bool:
        """Whether Windows Firewall would apply this rule to the packet."""
        if self.protocol != proto.upper():
            return False
        if self.ports and not any(port in r for r in self.ports):
            return False
        address = ip_address(source)
        if self.remotes and not any(
            address.version == n.version and address in n for n in self.remotes
        ):
            return False
        return self.interface is None or fnmatch.fnmatchcase(interface, self.interface)


def _ranges(text: str) -> tuple[PortRange, ...]:
    ranges = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        ranges.append(PortRange(int(first), int(last or first)))
    return tuple(ranges)


def _quoted_list(text: str | None) -> list[str]:
    return re.findall(r"'([^']*)'", text) if text else []


def parse_powershell(script: str) -> list[ParsedRule]:
    """The New-NetFirewallRule commands of a rendered script, as ParsedRules."""
    rules = []
    for line in script.splitlines():
        if not line.startswith("New-NetFirewallRule"):
            continue
        ports = re.search(r"-LocalPort (@\([^)]*\))", line)
        remotes = re.search(r"-RemoteAddress (@\([^)]*\))", line)
        interface = re.search(r"-InterfaceAlias '([^']*)'", line)
        action = re.search(r"-Action (\w+)", line)
        protocol = re.search(r"-Protocol (\w+)", line)
        assert action and protocol and "-Group 'portguard'" in line, line
        rules.append(
            ParsedRule(
                action=action.group(1).lower(),
                protocol=protocol.group(1).upper(),
                ports=_ranges(",".join(_quoted_list(ports.group(1)))) if ports else (),
                remotes=tuple(ip_network(a) for a in _quoted_list(remotes and remotes.group(1))),
                interface=interface.group(1) if interface else None,
            )
        )
    return rules


def parse_netsh(script: str) -> list[ParsedRule]:
    """The `netsh advfirewall firewall add rule` lines of a rendered script, as ParsedRules."""
    rules = []
    for line in script.splitlines():
        if not line.startswith("netsh advfirewall firewall add rule"):
            continue
        fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        assert fields["name"].startswith('"portguard-') and fields["dir"] == "in", line
        remote = fields["remoteip"]
        ports = fields.get("localport", "any")
        rules.append(
            ParsedRule(
                action=fields["action"],
                protocol=fields["protocol"].split(":")[0].upper(),
                ports=() if ports == "any" else _ranges(ports),
                remotes=() if remote == "any" else tuple(ip_network(a) for a in remote.split(",")),
                interface=None,
            )
        )
    return rules


def windows_decides(rules: list[ParsedRule], proto: str, port: int, source: str) -> Verdict:
    """Windows Firewall's answer: any block wins, else any allow, else the default (Block)."""
    hits = [r for r in rules if r.matches(proto, port, source, "eth1")]
    if any(r.action == "block" for r in hits):
        return Verdict.DROP
    return Verdict.ACCEPT if any(r.action == "allow" for r in hits) else Verdict.DROP


def _policy(path: Path) -> Policy:
    return load_policy(path).policy


def _relative_policy(scenario: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    monkeypatch.chdir(scenario.parent)
    return _policy(Path(scenario.name) / "policy.yaml")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
@pytest.mark.parametrize("expected_name", [*TARGETS, "expected.windivert"])
def test_golden(scenario: Path, expected_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each scenario renders exactly its expected file (netsh refuses `interface` instead)."""
    policy = _relative_policy(scenario, monkeypatch)
    expected = scenario / expected_name
    if expected_name == "expected.cmd" and any(r.interface for r in policy.allow):
        with pytest.raises(PolicyError, match=r"policy\.yaml:\d+:\d+: `interface` cannot"):
            render_netsh(policy)
        return
    render = TARGETS.get(expected_name, render_windivert)
    text = render(policy)
    if os.environ.get("PORTGUARD_UPDATE_GOLDEN"):
        expected.write_text(text)
    assert text == expected.read_text()


def _all_policies() -> list[Path]:
    return [*(s / "policy.yaml" for s in SCENARIOS), *BUNDLED]


@pytest.mark.parametrize("path", _all_policies(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_blocked_and_allowed_ports_partition_the_port_space(path: Path) -> None:
    """Per protocol, any-source block, allowed and DHCP client ports are 1-65535, no overlap."""
    policy = _policy(path)
    for rules in (parse_powershell(render_powershell(policy)), _netsh_rules(policy)):
        if rules is None:
            continue
        for proto in ("TCP", "UDP"):
            blocked = [r for x in rules if _any_block(x, proto) for r in x.ports]
            allowed = [
                r for x in rules if x.protocol == proto and x.action == "allow" for r in x.ports
            ]
            assert _overlap(blocked, allowed) == 0
            exempt = list(DHCP_CLIENT_PORTS) if proto == "UDP" else []
            assert _overlap(blocked, exempt) == 0  # left to Windows' own DHCP-In rules
            assert merge_ranges([*blocked, *allowed, *exempt]) == (PortRange(1, 65535),)


@pytest.mark.parametrize("path", _all_policies(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sourced_ports_block_exactly_the_other_sources(path: Path) -> None:
    """On a port open to listed sources only, allowed plus blocked sources are every address."""
    policy = _policy(path)
    rules = parse_powershell(render_powershell(policy))
    for proto in ("TCP", "UDP"):
        sourced_block = [
            r for r in rules if r.protocol == proto and r.action == "block" and r.remotes
        ]
        for block in sourced_block:
            for port_range in block.ports:
                port = port_range.first
                allowed = [
                    n
                    for r in rules
                    if r.action == "allow" and r.protocol == proto and r.interface is None
                    for n in r.remotes
                    if any(port in p for p in r.ports)
                ]
                blocked = [
                    n for r in sourced_block if any(port in p for p in r.ports) for n in r.remotes
                ]
                assert set(address_complement(allowed)) == set(blocked)


def _netsh_rules(policy: Policy) -> list[ParsedRule] | None:
    try:
        return parse_netsh(render_netsh(policy))
    except PolicyError:
        return None


def _any_block(rule: ParsedRule, proto: str) -> bool:
    return rule.protocol == proto and rule.action == "block" and not rule.remotes


def _overlap(a: list[PortRange], b: list[PortRange]) -> int:
    return sum(
        max(0, min(x.last, y.last) - max(x.first, y.first) + 1)
        for x in merge_ranges(a)
        for y in merge_ranges(b)
    )


SOURCES = ["192.0.2.7", "192.0.2.200", "10.1.2.3", "198.51.100.9", "203.0.113.5"]
SOURCES += ["2001:db8:100::5", "2001:db8:1::1", "2001:db8:ffff::1", "2001:4860::8888"]


@pytest.mark.parametrize("path", _all_policies(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rendered_rules_agree_with_verdict(path: Path) -> None:
    """For ports at every range edge and sources on both sides of each `from`, as verdict says."""
    policy = _policy(path)
    edges = {1, 65535}
    for rule in policy.allow:
        for r in rule.ports:
            edges |= {max(1, r.first - 1), r.first, r.last, min(65535, r.last + 1)}
    targets = [("powershell", parse_powershell(render_powershell(policy)))]
    netsh_rules = _netsh_rules(policy)
    if netsh_rules is not None:
        targets.append(("netsh", netsh_rules))
    checked = 0
    for name, rules in targets:
        for proto in (PacketProto.TCP, PacketProto.UDP):
            for port in sorted(edges):
                for source in SOURCES:
                    packet = Packet(proto, ip_address(source), "eth1", dport=port)
                    expected = (
                        Verdict.ACCEPT
                        if verdict(policy, packet) is Verdict.ACCEPT
                        else (Verdict.DROP)
                    )
                    got = windows_decides(rules, proto.value, port, source)
                    assert got is expected, (name, proto, port, source)
                    checked += 1
    assert checked > 0


def test_long_port_lists_are_chunked() -> None:
    """No rule carries more than MAX_PORT_ITEMS_PER_RULE port items; 250 ports need 3 blocks."""
    policy = _policy(HERE / "scenarios_windows" / "04-icmp-none-many-ports" / "policy.yaml")
    rules = parse_powershell(render_powershell(policy))
    assert max(len(r.ports) for r in rules) <= MAX_PORT_ITEMS_PER_RULE
    assert len([r for r in rules if _any_block(r, "TCP")]) == 3


def _diverted(pydivert: Any, text: str, proto: str, port: int, source: str) -> bool:
    builder = pydivert.PacketBuilder()
    builder = builder.ipv6(source, "2001:db8:7::1") if ":" in source else builder.ipv4(source)
    raw = getattr(builder, proto)(40000, port).build()
    raw.direction = pydivert.Direction.INBOUND
    if proto == "tcp":
        raw.tcp.syn = True
    return bool(raw.matches(text))


@pytest.mark.parametrize("path", _all_policies(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_windivert_filter_compiles_and_diverts_every_port_not_open_to_all(path: Path) -> None:
    """The filter passes Divert.check_filter; it diverts new packets to every port not open."""
    pydivert = pytest.importorskip("pydivert")
    policy = _policy(path)
    text = windivert_filter(policy)
    assert pydivert.Divert.check_filter(text) == (True, 0, "")
    layout = layout_policy(policy)
    ports = {0, 1, 65535} | {e for r in policy.allow for p in r.ports for e in _around(p)}
    for proto in Proto:
        for port in sorted(ports):
            open_to_all = any(port in r for r in layout.open_for(proto))
            for source in ("203.0.113.5", "2001:db8:1::1"):
                exact = f"{proto.value}.DstPort" in text  # else coarse: every new packet
                expected = not open_to_all if exact else True
                assert _diverted(pydivert, text, proto.value, port, source) is expected


def _around(r: PortRange) -> set[int]:
    return {max(0, r.first - 1), r.first, r.last, min(65535, r.last + 1)}


@pytest.mark.parametrize(
    ("count", "range_form"), [(10, True), (110, True), (130, False), (5000, False)]
)
def test_windivert_filter_stays_within_the_length_limit(count: int, range_form: bool) -> None:
    """Many allowed ports: the filter always compiles; past the budget it diverts all new TCP."""
    pydivert = pytest.importorskip("pydivert")
    allowed = [1000 + 2 * i for i in range(count)]
    policy = _load_text(f"version: 1\nallow:\n  - port: {allowed}\n")
    text = windivert_filter(policy)
    assert pydivert.Divert.check_filter(text) == (True, 0, "")
    assert ("tcp.DstPort" in text) is range_form
    for port in (allowed[0], allowed[0] + 1, allowed[-1], allowed[-1] + 1, 999, 1):
        diverted = _diverted(pydivert, text, "tcp", port, "203.0.113.5")
        assert diverted is (not range_form or port not in allowed)


def test_chained_not_equal_trap_is_not_rendered() -> None:
    """The filter never uses `!=` (seen here to divert allowed ports too); it uses ranges."""
    policy = _load_text("version: 1\nallow:\n  - port: [22, 80, 443, 8080]\n")
    text = windivert_filter(policy)
    assert "!=" not in text
    assert "tcp.DstPort <= 21 or (tcp.DstPort >= 23 and tcp.DstPort <= 79)" in text


def _load_text(text: str) -> Policy:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(text)
        return _policy(path)


@pytest.mark.parametrize("target", ["netsh", "powershell", "windivert"])
def test_cli_renders_each_windows_target(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`portguard render --target T` prints the renderer's text and exits 0."""
    path = SCENARIOS[1] / "policy.yaml"
    assert main(["render", "--target", target, str(path)]) == 0
    printed = capsys.readouterr().out
    expected = {"netsh": "netsh advfirewall", "powershell": "New-NetFirewallRule"}
    assert expected.get(target, "tcp.Syn and not tcp.Ack") in printed


def test_cli_netsh_refuses_interface_with_one_located_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An `interface` entry for netsh is one `FILE:LINE:COL: message` line and exit 1."""
    path = SCENARIOS[2] / "policy.yaml"
    assert main(["render", "--target", "netsh", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.match(
        rf"{re.escape(str(path))}:4:5: `interface` cannot", lines[0]
    )


def test_cli_enforce_rejects_a_bad_policy_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`enforce` on an invalid policy prints one located error and exits 1, diverting nothing."""
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nallow:\n  - port: 70000\n")
    assert main(["enforce", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:3:")


NETWORKS = ["192.0.2.0/24", "192.0.2.7", "10.0.0.0/8", "2001:db8:100::/48", "2001:db8::/32"]
PORT_ITEMS = st.one_of(
    st.integers(1, 65535).map(str),
    st.tuples(st.integers(1, 65535), st.integers(0, 300)).map(
        lambda t: f"{t[0]}-{min(65535, t[0] + t[1])}"
    ),
)
ENTRY = st.fixed_dictionaries(
    {
        "port": st.lists(PORT_ITEMS, min_size=1, max_size=4),
        "proto": st.sampled_from([["tcp"], ["udp"], ["tcp", "udp"]]),
    },
    optional={
        "from": st.lists(
            st.sampled_from([*NETWORKS, "@none"]), min_size=1, max_size=3, unique=True
        ),
        "interface": st.sampled_from(["eth1", "eth2", "Ethernet 2", "vEthernet (Default Switch)"]),
        "limit": st.just("5/minute"),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(ENTRY, max_size=5))
def test_random_policies_render_to_the_same_verdicts(entries: list[dict[str, object]]) -> None:
    """Random policies (aliases, empty sets, DHCP ports): PowerShell rules decide as verdict."""
    document = {"version": 1, "sets": {"none": []}, "allow": entries}
    text = json.dumps(document)  # JSON is YAML, and has no aliases
    policy = _load_text(text)
    rules = parse_powershell(render_powershell(policy))
    ports = {1, 65535, 67, 68, 69, 546, 547}
    for rule in policy.allow:
        for r in rule.ports:
            ports |= _around(r) - {0}
    for proto in (PacketProto.TCP, PacketProto.UDP):
        for port in sorted(ports):
            for source in ("192.0.2.7", "192.0.2.99", "10.9.9.9", "2001:db8:100::1", "2001:db9::1"):
                for interface in ("eth1", "eth2", "Ethernet 2", "vEthernet (Default Switch)"):
                    packet = Packet(proto, ip_address(source), interface, dport=port)
                    wanted = verdict(policy, packet) is Verdict.ACCEPT
                    hits = [r for r in rules if r.matches(proto.value, port, source, interface)]
                    got = not any(r.action == "block" for r in hits) and any(
                        r.action == "allow" for r in hits
                    )
                    assert got is wanted, (proto, port, source, interface, text)


def test_forwarded_filter_is_a_note_and_ignore_renders_the_same_rules() -> None:
    """forwarded: filter gets a NOTE (NAT'd ports are not filtered); ignore: no note, same rules."""
    policy = load_policy(HERE.parent / "policies" / "web-server.yaml").policy
    ignoring = replace(policy, forwarded=ForwardedMode.IGNORE)
    filtering = replace(policy, forwarded=ForwardedMode.FILTER)
    assert FORWARDED_NOTE in build_windows_rules(filtering).notes
    assert FORWARDED_NOTE not in build_windows_rules(ignoring).notes
    assert build_windows_rules(filtering).rules == build_windows_rules(ignoring).rules
    for render, prefix in ((render_netsh, "rem NOTE: "), (render_powershell, "# NOTE: ")):
        assert any(
            line.startswith(prefix + "forwarded: filter does not apply to Windows Firewall")
            for line in render(filtering).splitlines()
        )
        assert "forwarded" not in render(ignoring)


def test_windivert_filter_does_not_depend_on_forwarded() -> None:
    """The divert filter sees local inbound traffic only: forwarded changes nothing in it."""
    policy = load_policy(HERE.parent / "policies" / "web-server.yaml").policy
    assert windivert_filter(replace(policy, forwarded=ForwardedMode.IGNORE)) == windivert_filter(
        replace(policy, forwarded=ForwardedMode.FILTER)
    )
