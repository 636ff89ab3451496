"""diff by meaning agrees with a brute-force oracle: every (proto, port, address, interface)."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.model import AllowRule, Policy, Proto
from portguard.policy import parse_policy
from portguard.policy_diff import ANYWHERE, SpaceChange, diff_policies

PORTS = range(1, 25)
ADDRESSES = [
    ip_address(a) for a in ("10.0.0.1", "10.0.0.9", "10.0.1.1", "192.0.2.7", "2001:db8::5")
]
SOURCES = ["10.0.0.0/29", "10.0.0.9", "10.0.0.0/16", "192.0.2.0/24", "2001:db8::/64"]
INTERFACES = [None, None, "eth1", "eth10", '"eth*"', '"e*"', "wlan0"]
# Concrete names a packet may arrive on: named ones, ones only a glob covers, and others.
NAMES = ["eth1", "eth10", "eth5", "e9", "wlan0", "lo2", "x"]


def _entry() -> st.SearchStrategy[str]:
    """One allow entry as YAML over small ports, sources and interfaces."""
    return st.builds(
        lambda first, width, proto, sources, interface: (
            f'  - port: "{first}-{first + width}"\n    proto: {proto}\n'
            + (f"    from: [{', '.join(repr(s) for s in sources)}]\n" if sources else "")
            + (f"    interface: {interface}\n" if interface else "")
        ),
        st.integers(1, 20),
        st.integers(0, 4),
        st.sampled_from(["tcp", "udp", "[tcp, udp]"]),
        st.none() | st.lists(st.sampled_from(SOURCES), min_size=1, max_size=2, unique=True),
        st.sampled_from(INTERFACES),
    )


def _policy(entries: list[str], name: str) -> Policy:
    """A policy from allow entries."""
    return parse_policy("version: 1\nallow:\n" + ("".join(entries) or "  []\n"), name).policy


def _matches(interface: str | None, name: str) -> bool:
    """Whether an entry's interface matches a packet arriving on `name`."""
    if interface is None:
        return True
    return name.startswith(interface[:-1]) if interface.endswith("*") else name == interface


def _allows(policy: Policy, proto: Proto, port: int, address: object, name: str) -> bool:
    """Brute force: does any entry accept this packet?"""
    return any(
        proto in rule.protos
        and any(port in r for r in rule.ports)
        and (rule.sources is None or any(address in n for n in rule.sources))
        and _matches(rule.interface, name)
        for rule in policy.allow
    )


def _witness(rules: tuple[AllowRule, ...], name: str) -> str | None:
    """Which interface label stands for `name`: a literal named, else the longest glob."""
    named = {r.interface for r in rules if r.interface is not None}
    if name in named:
        return name
    globs = [g for g in named if g.endswith("*") and name.startswith(g[:-1])]
    return max(globs, key=len) if globs else None


def _label_covers(label: str | None, witness: str | None) -> bool:
    """Whether a SpaceChange's interface label includes interfaces of `witness`."""
    if label is None:
        return True
    if label.startswith("any except "):
        return witness not in label.removeprefix("any except ").split(", ")
    return witness is not None and witness in label.split(", ")


def _covered(
    changes: tuple[SpaceChange, ...], point: tuple[Proto, int, object, str | None]
) -> bool:
    """Whether some change row contains the point."""
    proto, port, address, witness = point
    return any(
        c.proto is proto
        and any(port in r for r in c.ports)
        and (c.sources == (ANYWHERE,) or any(address in ip_network(s) for s in c.sources))
        and _label_covers(c.interface, witness)
        for c in changes
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(_entry(), max_size=6), st.lists(_entry(), max_size=6))
def test_opened_and_closed_are_exactly_the_changed_packets(old: list[str], new: list[str]) -> None:
    """A packet is in opened (closed) exactly when NEW (OLD) accepts it and the other does not."""
    before, after = _policy(old, "old.yaml"), _policy(new, "new.yaml")
    diff = diff_policies(before, after)
    rules = before.allow + after.allow
    for proto in Proto:
        for port in PORTS:
            for address in ADDRESSES:
                for name in NAMES:
                    was = _allows(before, proto, port, address, name)
                    now = _allows(after, proto, port, address, name)
                    point = (proto, port, address, _witness(rules, name))
                    assert _covered(diff.opened, point) == (now and not was), (point, name)
                    assert _covered(diff.closed, point) == (was and not now), (point, name)
