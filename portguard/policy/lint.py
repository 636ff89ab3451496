"""Lint: legal but suspicious policy constructs, as located warnings (never errors)."""

from __future__ import annotations

from itertools import combinations

from portguard.errors import Location
from portguard.model import (
    MAX_PORT,
    AllowRule,
    IcmpMode,
    LintWarning,
    Network,
    Policy,
    PortRange,
)

__all__ = ["TROJAN_PORTS", "lint_policy"]

# Ports long used by well-known trojans and backdoors (Back Orifice, NetBus, SubSeven, ...).
TROJAN_PORTS: tuple[tuple[int, str], ...] = (
    (1243, "SubSeven"),
    (1999, "BackDoor"),
    (2140, "Deep Throat"),
    (3150, "Deep Throat"),
    (6711, "SubSeven"),
    (6776, "SubSeven"),
    (12345, "NetBus"),
    (12346, "NetBus"),
    (20034, "NetBus 2 Pro"),
    (27374, "SubSeven"),
    (27665, "Trin00"),
    (31335, "Trin00"),
    (31337, "Back Orifice"),
    (31338, "Back Orifice"),
    (54320, "Back Orifice 2000"),
    (54321, "Back Orifice 2000"),
    (65000, "Devil"),
)
ALL_PORTS = PortRange(1, MAX_PORT)


def lint_policy(policy: Policy) -> tuple[LintWarning, ...]:
    """Every lint warning for `policy`, in file order."""
    warnings: list[LintWarning] = []
    if policy.icmp is IcmpMode.NONE:
        warnings.append(
            LintWarning(
                policy.allow[0].location if policy.allow else Location(policy.path, 1, 1),
                "icmp: none also blocks IPv6 neighbour discovery; IPv6 will stop working",
            )
        )
    for rule in policy.allow:
        warnings.extend(_rule_warnings(rule))
    for first, second in combinations(policy.allow, 2):
        overlap = _overlap(first, second)
        if overlap is not None:
            warnings.append(LintWarning(second.location, overlap))
    return tuple(sorted(warnings, key=lambda w: (w.location.line, w.location.col)))


def _rule_warnings(rule: AllowRule) -> list[LintWarning]:
    found: list[LintWarning] = []
    if _covers_every_port(rule.ports):
        found.append(LintWarning(rule.location, "this entry allows every port (1-65535)"))
    else:
        trojans = [
            f"{port} ({name})" for port, name in TROJAN_PORTS if any(port in r for r in rule.ports)
        ]
        if trojans:
            found.append(
                LintWarning(
                    rule.location, f"allows well-known trojan port(s): {', '.join(trojans)}"
                )
            )
    if rule.sources is not None and not rule.sources:
        found.append(LintWarning(rule.location, "'from' matches no address: allows nothing"))
    if rule.sources and not rule.comment:
        for network in rule.sources:
            if network.num_addresses == 1 and network.network_address.is_global:
                found.append(
                    LintWarning(
                        rule.location,
                        f"from a single public host {network.network_address} with no comment;"
                        " say whose it is",
                    )
                )
    return found


def _covers_every_port(ports: tuple[PortRange, ...]) -> bool:
    """Whether the ranges together cover 1-65535 (also when split, as 1-1000 and 1001-65535)."""
    next_port = ALL_PORTS.first
    for r in sorted(ports):
        if r.first > next_port:
            return False
        next_port = max(next_port, r.last + 1)
    return next_port > ALL_PORTS.last


def _overlap(first: AllowRule, second: AllowRule) -> str | None:
    """A message when `second` repeats or overlaps `first` for the same traffic, else None."""
    if first.interface != second.interface or not set(first.protos) & set(second.protos):
        return None
    shared = [
        PortRange(max(a.first, b.first), min(a.last, b.last))
        for a in first.ports
        for b in second.ports
        if a.overlaps(b)
    ]
    if not shared:
        return None
    if (
        first.sources is not None
        and second.sources is not None
        and not _sources_overlap(first.sources, second.sources)
    ):
        return None
    line = first.location.line
    if (first.ports, first.protos, first.sources) == (second.ports, second.protos, second.sources):
        return f"duplicates the entry at line {line}"
    return f"overlaps the entry at line {line} (port {min(shared)})"


def _sources_overlap(first: tuple[Network, ...], second: tuple[Network, ...]) -> bool:
    return any(a.version == b.version and a.overlaps(b) for a in first for b in second)
