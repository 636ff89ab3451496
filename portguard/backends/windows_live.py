"""What Windows Firewall holds, read back, and how it compares with what a policy renders to.

The comparison reads everything that decides a verdict: every portguard rule's Enabled,
Action, Direction, Profile, protocol, ports, ICMP types, remote addresses and interface, and
every profile's Enabled, DefaultInboundAction and AllowLocalFirewallRules (Group Policy can
make Windows ignore local rules). Each difference is one cause line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_network

from portguard.backends.windows_scripts import DONE, FIELD_SEP
from portguard.model import Network, PortRange
from portguard.render.netsh import rule_name
from portguard.render.windows_rules import GROUP, WindowsRule, WindowsRuleset, generation

__all__ = [
    "SLOTS",
    "LiveFirewall",
    "LiveProfile",
    "LiveRule",
    "expected_rules",
    "parse_listing",
    "profile_causes",
    "rule_causes",
]

SLOTS = ("a", "b", "c")  # a third for a host left with two generations by an interruption
ANY = "any"
_RULE_FIELDS = 11
_PROFILE_FIELDS = 5


@dataclass(frozen=True)
class LiveRule:
    """One portguard rule as Windows reports it, normalised for comparison."""

    name: str
    enabled: bool
    action: str  # "allow" / "block"
    direction: str  # "inbound" / "outbound"
    profile: str  # "any" or e.g. "domain, private"
    protocol: str  # "tcp", "udp", "icmpv4", "icmpv6"
    local_ports: frozenset[PortRange]
    icmp_types: frozenset[int]
    remote_addresses: frozenset[Network]
    interfaces: frozenset[str]


@dataclass(frozen=True)
class LiveProfile:
    """One firewall profile (Domain, Private, Public) as in force (ActiveStore)."""

    name: str
    enabled: str
    default_inbound: str
    allow_local_rules: str


@dataclass(frozen=True)
class LiveFirewall:
    """The portguard group and the profiles, as read in one listing."""

    rules: tuple[LiveRule, ...]
    profiles: tuple[LiveProfile, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the rules in the group, sorted."""
        return tuple(sorted(rule.name for rule in self.rules))


def _ports(text: str) -> frozenset[PortRange]:
    if text.lower() in ("", ANY):
        return frozenset()
    ranges = []
    for item in text.split(","):
        first, _, last = item.strip().partition("-")
        ranges.append(PortRange(int(first), int(last or first)))
    return frozenset(ranges)


def _addresses(text: str) -> frozenset[Network]:
    # IPv4 subnets come back as "192.0.2.0/255.255.255.0", which ip_network() reads too.
    if text.lower() in ("", ANY):
        return frozenset()
    return frozenset(ip_network(item.strip(), strict=False) for item in text.split(","))


def _list(text: str) -> frozenset[str]:
    return frozenset() if text.lower() in ("", ANY) else frozenset(text.split(","))


def parse_listing(stdout: str) -> LiveFirewall:
    """The rules and profiles in a listing's output; ValueError if it is not one."""
    lines = [line.rstrip("\r") for line in stdout.splitlines() if line.strip()]
    if not lines or lines[-1] != DONE:
        raise ValueError("the listing did not finish")
    rules: list[LiveRule] = []
    profiles: list[LiveProfile] = []
    for line in lines[:-1]:
        fields = line.split(FIELD_SEP)
        if fields[0] == "rule" and len(fields) == _RULE_FIELDS:
            _, name, enabled, action, direction, profile, proto, ports, icmp, remote, alias = fields
            rules.append(
                LiveRule(
                    name, enabled == "True", action.lower(), direction.lower(),
                    profile.lower(), proto.lower(), _ports(ports),
                    frozenset(int(t) for t in _list(icmp)), _addresses(remote), _list(alias),
                )
            )  # fmt: skip
        elif fields[0] == "profile" and len(fields) == _PROFILE_FIELDS:
            profiles.append(LiveProfile(*fields[1:]))
        else:
            raise ValueError(f"unexpected listing line: {line[:80]}")
    return LiveFirewall(tuple(rules), tuple(profiles))


def expected_rules(ruleset: WindowsRuleset, slot: str) -> dict[str, LiveRule]:
    """The rules `ruleset` puts in the group under `slot`, as a listing would show them."""
    gen = generation(ruleset.fingerprint, slot)
    return {rule_name(gen, rule.key): _as_live(rule_name(gen, rule.key), rule) for rule in
            ruleset.rules}  # fmt: skip


def _as_live(name: str, rule: WindowsRule) -> LiveRule:
    return LiveRule(
        name, True, rule.action.value, "inbound", ANY, rule.protocol.lower(),
        frozenset(rule.local_ports), frozenset(rule.icmp_types),
        frozenset(rule.remote_addresses),
        frozenset() if rule.interface is None else frozenset({rule.interface}),
    )  # fmt: skip


def _difference(want: LiveRule, have: LiveRule) -> str | None:
    if not have.enabled:
        return "disabled"
    for label, a, b in (
        ("action", want.action, have.action),
        ("direction", want.direction, have.direction),
        ("profile", want.profile, have.profile),
        ("protocol", want.protocol, have.protocol),
        ("ports", want.local_ports, have.local_ports),
        ("ICMP types", want.icmp_types, have.icmp_types),
        ("remote addresses", want.remote_addresses, have.remote_addresses),
        ("interface", want.interfaces, have.interfaces),
    ):
        if a != b:
            return f"{label} changed"
    return None


def rule_causes(
    expected: dict[str, LiveRule], live: Sequence[LiveRule]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(missing names, extra names, edited-rule causes) of `live` against `expected`."""
    by_name = {rule.name: rule for rule in live}
    missing = tuple(sorted(set(expected) - set(by_name)))
    extra = tuple(sorted(set(by_name) - set(expected)))
    edited = []
    for name in sorted(set(expected) & set(by_name)):
        why = _difference(expected[name], by_name[name])
        if why is not None:
            edited.append(f"{name}: {why}")
    return missing, extra, tuple(edited)


def profile_causes(profiles: Sequence[LiveProfile]) -> tuple[str, ...]:
    """Why the profiles let in more than the rules say (firewall off, default Allow, GPO)."""
    causes = []
    if not profiles:
        causes.append("no firewall profile could be read")
    for profile in profiles:
        if profile.enabled == "False":
            causes.append(f"profile {profile.name}: Windows Firewall is off")
        if profile.default_inbound == "Allow":
            causes.append(f"profile {profile.name}: DefaultInboundAction is Allow")
        if profile.allow_local_rules == "False":
            causes.append(
                f"profile {profile.name}: Group Policy sets AllowLocalFirewallRules False,"
                f" so the local {GROUP} rules are not in force"
            )
    return tuple(causes)
