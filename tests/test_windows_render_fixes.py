"""Windows rules: no open Allow from an empty set, aliases, interface blocks, netsh limits, DHCP.

Each case is judged with the rules read back from the rendered text (as Windows Firewall
matches them) next to a third-party allow rule for the same ports, which portguard's block
rules must beat wherever the policy does not allow.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from portguard.cli import main
from portguard.errors import PolicyError
from portguard.model import Policy, PortRange
from portguard.policy import load_policy
from portguard.render.netsh import MAX_LINE, render_netsh
from portguard.render.nftables import render_nftables
from portguard.render.powershell import render_powershell
from portguard.render.windows_rules import ICMPV6_ND_TYPES, build_windows_rules
from tests.test_render_windows import ParsedRule, parse_netsh, parse_powershell


def _policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path).policy


def _third_party(proto: str, port: int) -> ParsedRule:
    return ParsedRule("allow", proto, (PortRange(port, port),), (), None)


def _lets_in(rules: list[ParsedRule], proto: str, port: int, source: str, iface: str) -> bool:
    hits = [r for r in rules if r.matches(proto, port, source, iface)]
    return not any(r.action == "block" for r in hits) and any(r.action == "allow" for r in hits)


def test_empty_set_on_an_interface_entry_opens_nothing(tmp_path: Path) -> None:
    """`from: [@empty]` with `interface` renders no Allow rule, and the port stays blocked."""
    policy = _policy(
        tmp_path,
        'version: 1\nsets:\n  none: []\nallow:\n  - port: 2222\n    from: ["@none"]\n'
        '    interface: "Ethernet 2"\n',
    )
    rules = parse_powershell(render_powershell(policy))
    assert not [r for r in rules if r.action == "allow" and PortRange(2222, 2222) in r.ports]
    with_vendor = [*rules, _third_party("TCP", 2222)]
    assert not _lets_in(with_vendor, "TCP", 2222, "203.0.113.5", "Ethernet 2")


ALIASES = ("Ethernet 2", "vEthernet (Default Switch)", "Wi-Fi")


@pytest.mark.parametrize("alias", ALIASES)
def test_windows_aliases_are_accepted_quoted_and_refused_for_nftables(
    tmp_path: Path, alias: str
) -> None:
    """An alias loads, is one quoted -InterfaceAlias, and nftables refuses it with its place."""
    policy = _policy(tmp_path, f'version: 1\nallow:\n  - port: 8000\n    interface: "{alias}"\n')
    assert f"-InterfaceAlias '{alias}' " in render_powershell(policy)
    if " " in alias or "(" in alias:
        with pytest.raises(PolicyError, match=r"policy\.yaml:3:5: interface .* not a Linux"):
            render_nftables(policy)


def test_check_on_linux_refuses_an_alias_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` on a Linux host: one located line, exit 1 (the alias cannot match here)."""
    path = tmp_path / "p.yaml"
    path.write_text('version: 1\nallow:\n  - port: 8000\n    interface: "Ethernet 2"\n')
    assert main(["check", "--no-kernel", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:3:5: interface 'Ethernet 2' is not a Linux interface name (1-15 characters"
        " of A-Z a-z 0-9 _ . @ + -, optionally ending in *); a Windows alias works with the"
        " Windows targets only"
    ]


def test_interface_entry_with_from_blocks_other_sources_everywhere(tmp_path: Path) -> None:
    """A third-party allow cannot open an interface entry's ports to sources it does not list."""
    policy = _policy(
        tmp_path,
        "version: 1\nallow:\n  - port: 9000\n    from: [192.0.2.0/24]\n    interface: eth1\n",
    )
    rules = [*parse_powershell(render_powershell(policy)), _third_party("TCP", 9000)]
    assert _lets_in(rules, "TCP", 9000, "192.0.2.7", "eth1")
    for source in ("203.0.113.5", "2001:db8::1"):
        for iface in ("eth1", "eth2"):
            assert not _lets_in(rules, "TCP", 9000, source, iface)


def test_netsh_lines_fit_cmd_and_every_rule_gets_the_group(tmp_path: Path) -> None:
    """10,000 /24s: every line within cmd.exe's limit, same verdicts, a group line at the end."""
    nets = [str(n) for n in list(IPv4Network("10.0.0.0/8").subnets(new_prefix=24))[::2][:10_000]]
    policy = _policy(tmp_path, f"version: 1\nallow:\n  - port: 22\n    from: {nets}\n")
    text = render_netsh(policy)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= MAX_LINE < 8191
    assert len([ln for ln in lines if "add rule" in ln]) > 10
    rules = parse_netsh(text)
    for source, wanted in (("10.0.0.9", True), ("10.0.1.9", False), ("10.39.2.1", True)):
        assert _lets_in(rules, "TCP", 22, source, "eth1") is wanted
    assert not _lets_in(rules, "TCP", 22, "203.0.113.5", "eth1")
    generation = re.search(r'name="portguard-([^-]+)-', text)
    assert generation is not None
    assert lines[-1].startswith("powershell -NoProfile")
    assert f"-DisplayName 'portguard-{generation.group(1)}-*'" in lines[-1]
    assert "$_.Group = 'portguard'" in lines[-1]
    assert all(ln.endswith("|| exit /b 1") for ln in lines if ln.startswith(("netsh", "power")))


def test_dhcp_client_replies_and_nd_are_never_blocked(tmp_path: Path) -> None:
    """UDP 68/546 and ICMPv6 ND are in no portguard block; Windows' DHCP-In rules still work."""
    policy = _policy(tmp_path, "version: 1\nicmp: none\nallow:\n  - port: 22\n")
    ruleset = build_windows_rules(policy)
    rules = parse_powershell(render_powershell(policy))
    for port in (68, 546):
        assert _lets_in([*rules, _third_party("UDP", port)], "UDP", port, "192.0.2.1", "eth1")
        assert not _lets_in(rules, "UDP", port, "192.0.2.1", "eth1")  # default still blocks
    assert _lets_in([*rules, _third_party("UDP", 67)], "UDP", 67, "192.0.2.1", "eth1") is False
    (block_v6,) = [r for r in ruleset.rules if r.key == "block-icmpv6"]
    assert not set(block_v6.icmp_types) & set(ICMPV6_ND_TYPES)
    assert set(block_v6.icmp_types) | set(ICMPV6_ND_TYPES) == set(range(256))
