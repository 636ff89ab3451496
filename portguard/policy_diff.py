"""Pure: what changes between two policies, by meaning (port x source space), not by text.

For each protocol (and arriving interface, where an entry names one) the allowed space is
the union of (port, source network) over the entries; `opened` is what the new policy allows
and the old one did not, `closed` the reverse. Reordering or splitting entries changes
nothing. A `limit` is not part of the space: a rate-limited port counts as allowed. Sources
under `deny:` are cut out of every entry's space, so adding a deny shows as `closed`.

The space is the same for this host's own ports and for the ports it publishes by DNAT
(Docker `-p`, ...), except that `forwarded: ignore` leaves published ports unfiltered: a change
of `forwarded` is reported on its own (`forwarded_change`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, collapse_addresses
from itertools import pairwise

from portguard.drift import unified_diff
from portguard.model import ForwardedMode, LintWarning, Network, Policy, PortRange, Proto
from portguard.render.layout import merge_ranges
from portguard.render.nftables import render_nftables

__all__ = [
    "ANYWHERE",
    "ForwardedChange",
    "PolicyDiff",
    "SpaceChange",
    "diff_json",
    "diff_policies",
    "subtract_networks",
]

ANYWHERE = "any"
EVERY_SOURCE: tuple[Network, ...] = (IPv4Network("0.0.0.0/0"), IPv6Network("::/0"))


@dataclass(frozen=True)
class SpaceChange:
    """Ports of one protocol that became allowed (or blocked) for these sources."""

    proto: Proto
    ports: tuple[PortRange, ...]
    sources: tuple[str, ...]  # ("any",) for every address, else CIDRs
    interface: str | None  # only for traffic arriving here; None: any interface

    @property
    def ports_text(self) -> str:
        """The ports as "22,8000-8100"."""
        return ",".join(str(r) for r in self.ports)


@dataclass(frozen=True)
class ForwardedChange:
    """`forwarded` differs: published (DNAT) ports become filtered or unfiltered."""

    old: ForwardedMode
    new: ForwardedMode

    @property
    def summary(self) -> str:
        """One sentence on what the change does to published ports."""
        if self.new is ForwardedMode.IGNORE:
            return (
                f"forwarded: {self.old.value} -> {self.new.value}: published ports (Docker -p,"
                " DNAT) become unfiltered, reachable whatever the allow list says"
            )
        return (
            f"forwarded: {self.old.value} -> {self.new.value}: published ports (Docker -p,"
            " DNAT) become filtered: only those the allow list allows stay reachable"
        )


@dataclass(frozen=True)
class PolicyDiff:
    """Everything `portguard diff OLD NEW` reports."""

    old_path: str
    new_path: str
    opened: tuple[SpaceChange, ...]
    closed: tuple[SpaceChange, ...]
    warnings_added: tuple[LintWarning, ...]
    warnings_removed: tuple[LintWarning, ...]
    ruleset_diff: str  # unified diff of the rendered rules, comments left out
    forwarded_change: ForwardedChange | None = None  # None: `forwarded` is the same

    @property
    def changed(self) -> bool:
        """Whether the two policies differ in what they allow or in the rules they render."""
        return bool(self.opened or self.closed or self.ruleset_diff or self.forwarded_change)


def diff_policies(
    old: Policy,
    new: Policy,
    old_warnings: Iterable[LintWarning] = (),
    new_warnings: Iterable[LintWarning] = (),
) -> PolicyDiff:
    """Compare two policies by meaning, lint and rendered rules."""
    opened: list[SpaceChange] = []
    closed: list[SpaceChange] = []
    keys = sorted(
        {(p, r.interface) for policy in (old, new) for r in policy.allow for p in r.protos},
        key=lambda key: (key[0].value, key[1] or ""),
    )
    for proto, interface in keys:
        old_space = _space(old, proto, interface)
        new_space = _space(new, proto, interface)
        opened.extend(_changes(proto, interface, new_space, old_space))
        closed.extend(_changes(proto, interface, old_space, new_space))
    added, removed = _warning_changes(tuple(old_warnings), tuple(new_warnings))
    return PolicyDiff(
        old_path=old.path,
        new_path=new.path,
        opened=tuple(opened),
        closed=tuple(closed),
        warnings_added=added,
        warnings_removed=removed,
        ruleset_diff=unified_diff(_rules_only(old), _rules_only(new), old.path, new.path),
        forwarded_change=(
            ForwardedChange(old.forwarded, new.forwarded)
            if old.forwarded is not new.forwarded
            else None
        ),
    )


def _space(policy: Policy, proto: Proto, interface: str | None) -> list[tuple[PortRange, Network]]:
    """The (ports, source) pairs the policy allows; `deny:` sources are cut out of them."""
    denied = policy.denied()
    space: list[tuple[PortRange, Network]] = []
    for rule in policy.allow:
        if proto not in rule.protos or rule.interface != interface:
            continue
        sources = rule.sources if rule.sources is not None else EVERY_SOURCE
        if denied:
            sources = subtract_networks(sources, denied)
        space.extend((ports, network) for ports in rule.ports for network in sources)
    return space


def _changes(
    proto: Proto,
    interface: str | None,
    gained: list[tuple[PortRange, Network]],
    lost: list[tuple[PortRange, Network]],
) -> list[SpaceChange]:
    """The (ports, sources) in `gained` but not in `lost`, grouped by identical sources."""
    pairs = gained + lost
    edges = sorted({r.first for r, _ in pairs} | {r.last + 1 for r, _ in pairs})
    by_sources: dict[tuple[Network, ...], list[PortRange]] = {}
    for start, stop in pairwise(edges):
        here = [net for r, net in gained if r.first <= start and stop - 1 <= r.last]
        there = [net for r, net in lost if r.first <= start and stop - 1 <= r.last]
        difference = subtract_networks(here, there)
        if difference:
            by_sources.setdefault(difference, []).append(PortRange(start, stop - 1))
    return [
        SpaceChange(proto, merge_ranges(ranges), _source_names(sources), interface)
        for sources, ranges in by_sources.items()
    ]


def subtract_networks(
    minuend: Iterable[Network], subtrahend: Iterable[Network]
) -> tuple[Network, ...]:
    """The addresses in `minuend` that are not in `subtrahend`, collapsed, IPv4 first."""
    removed = list(subtrahend)
    pieces: list[Network] = list(minuend)
    for cut in removed:
        kept: list[Network] = []
        for piece in pieces:
            if piece.version != cut.version or not piece.overlaps(cut):
                kept.append(piece)
            elif piece.prefixlen < cut.prefixlen:  # the cut lies inside the piece
                kept.extend(piece.address_exclude(cut))  # type: ignore[arg-type]
        pieces = kept
    v4 = collapse_addresses(p for p in pieces if isinstance(p, IPv4Network))
    v6 = collapse_addresses(p for p in pieces if isinstance(p, IPv6Network))
    return (*v4, *v6)


def _source_names(sources: tuple[Network, ...]) -> tuple[str, ...]:
    return (ANYWHERE,) if sources == EVERY_SOURCE else tuple(str(n) for n in sources)


def _warning_changes(
    old: tuple[LintWarning, ...], new: tuple[LintWarning, ...]
) -> tuple[tuple[LintWarning, ...], tuple[LintWarning, ...]]:
    """Warnings whose message appears more often in new (added) or in old (removed)."""
    old_count = Counter(w.message for w in old)
    new_count = Counter(w.message for w in new)
    added = tuple(w for w in new if new_count[w.message] > old_count[w.message])
    removed = tuple(w for w in old if old_count[w.message] > new_count[w.message])
    return added, removed


def _rules_only(policy: Policy) -> str:
    """The rendering without its comment header, which names the file and entry lines."""
    lines = render_nftables(policy).splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def diff_json(diff: PolicyDiff) -> dict[str, object]:
    """The diff as DESIGN §5's JSON object: opened, closed, lint changes, ruleset diff.

    A key "forwarded": {"old", "new"} is present only when `forwarded` changes.
    """

    def change(item: SpaceChange) -> dict[str, object]:
        return {
            "proto": item.proto.value,
            "ports": item.ports_text,
            "from": list(item.sources),
            "interface": item.interface,
        }

    data: dict[str, object] = {
        "old": diff.old_path,
        "new": diff.new_path,
        "changed": diff.changed,
        "opened": [change(c) for c in diff.opened],
        "closed": [change(c) for c in diff.closed],
    }
    if diff.forwarded_change is not None:
        data["forwarded"] = {
            "old": diff.forwarded_change.old.value,
            "new": diff.forwarded_change.new.value,
        }
    data["lint"] = {
        "added": [str(w) for w in diff.warnings_added],
        "removed": [str(w) for w in diff.warnings_removed],
    }
    data["ruleset_diff"] = diff.ruleset_diff
    return data
