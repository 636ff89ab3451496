"""Pure: what changes between two policies, by meaning (port x source space), not by text.

For each protocol and arriving interface the allowed space is the union of (port, source
network) over the entries that match it; `opened` is what the new policy allows and the old
one did not, `closed` the reverse. Reordering or splitting entries changes nothing, and
interfaces compare by what they match: `mgmt0` -> `mgmt*` closes nothing on mgmt0. A
`limit` is not part of the space (a rate-limited port counts as allowed); limit, default,
icmp and log changes are reported as `settings`. Sources under `deny:` are cut out of every
entry's space, so adding a deny shows as `closed`.

The space is the same for this host's own ports and for the ports it publishes by DNAT
(Docker `-p`, ...), except that `forwarded: ignore` leaves published ports unfiltered: a change
of `forwarded` is reported on its own (`forwarded_change`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    summarize_address_range,
)
from itertools import pairwise

from portguard.drift import unified_diff
from portguard.model import ForwardedMode, LintWarning, Network, Policy, PortRange, Proto
from portguard.render.layout import merge_ranges
from portguard.render.nftables import render_nftables

__all__ = [
    "ANYWHERE",
    "ForwardedChange",
    "PolicyDiff",
    "SettingChange",
    "SpaceChange",
    "diff_json",
    "diff_policies",
    "space_change_json",
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
class SettingChange:
    """A setting outside the allowed space that differs: default, icmp, log, or a limit."""

    key: str  # "default", "icmp", "log", or "limit tcp 22 from any"
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.key}: {self.old} -> {self.new}"


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
    settings: tuple[SettingChange, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the two policies differ in what they allow or in the rules they render."""
        return bool(
            self.opened
            or self.closed
            or self.ruleset_diff
            or self.forwarded_change
            or self.settings
        )


def diff_policies(
    old: Policy,
    new: Policy,
    old_warnings: Iterable[LintWarning] = (),
    new_warnings: Iterable[LintWarning] = (),
) -> PolicyDiff:
    """Compare two policies by meaning, lint and rendered rules."""
    opened: list[SpaceChange] = []
    closed: list[SpaceChange] = []
    named = sorted({r.interface for p in (old, new) for r in p.allow if r.interface is not None})
    witnesses: tuple[str | None, ...] = (None, *named)
    for proto in sorted({p for policy in (old, new) for r in policy.allow for p in r.protos}):
        old_spaces = {w: _space(old, proto, w) for w in witnesses}
        new_spaces = {w: _space(new, proto, w) for w in witnesses}
        opened.extend(_changes_by_meaning(proto, witnesses, new_spaces, old_spaces))
        closed.extend(_changes_by_meaning(proto, witnesses, old_spaces, new_spaces))
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
        settings=_setting_changes(old, new),
    )


def _setting_changes(old: Policy, new: Policy) -> tuple[SettingChange, ...]:
    """default, icmp and log when they differ, then each limit that differs on kept ports."""
    found = [
        SettingChange(key, str(before), str(after))
        for key, before, after in (
            ("default", old.default.value, new.default.value),
            ("icmp", old.icmp.value, new.icmp.value),
            ("log", str(old.log).lower(), str(new.log).lower()),
        )
        if before != after
    ]
    old_limits, new_limits = _limits(old), _limits(new)
    for key in sorted(old_limits.keys() & new_limits.keys()):
        if old_limits[key] != new_limits[key]:
            proto, ports, sources, interface = key
            where = f"limit {proto} {ports} from {sources}" + (
                f" on {interface}" if interface else ""
            )
            found.append(SettingChange(where, old_limits[key], new_limits[key]))
    return tuple(found)


def _limits(policy: Policy) -> dict[tuple[str, str, str, str], str]:
    """(proto, ports, sources, interface) of every entry -> its limit ("none" without one)."""
    limits: dict[tuple[str, str, str, str], str] = {}
    for rule in policy.allow:
        sources = ",".join(str(n) for n in rule.sources) if rule.sources is not None else ANYWHERE
        for proto in rule.protos:
            for ports in rule.ports:
                key = (proto.value, str(ports), sources, rule.interface or "")
                limits[key] = str(rule.limit) if rule.limit is not None else "none"
    return limits


def _space(policy: Policy, proto: Proto, witness: str | None) -> list[tuple[PortRange, Network]]:
    """What `policy` allows for `proto` on the interfaces `witness` stands for.

    `deny:` sources are cut out of every entry's sources.
    """
    denied = policy.denied()
    space: list[tuple[PortRange, Network]] = []
    for rule in policy.allow:
        if proto not in rule.protos or not _reaches(rule.interface, witness):
            continue
        sources = rule.sources if rule.sources is not None else EVERY_SOURCE
        if denied:
            sources = subtract_networks(sources, denied)
        space.extend((ports, network) for ports in rule.ports for network in sources)
    return space


def _reaches(interface: str | None, witness: str | None) -> bool:
    """Whether an entry for `interface` matches the interfaces `witness` stands for.

    Witnesses: None is an interface no entry names; "eth0" is eth0; "eth*" is an interface
    matching eth* that no entry names literally (so eth0 and eth* stay apart).
    """
    if interface is None:
        return True
    if witness is None:
        return False
    name = witness[:-1] + "\0" if witness.endswith("*") else witness
    return name.startswith(interface[:-1]) if interface.endswith("*") else name == interface


def _changes_by_meaning(
    proto: Proto,
    witnesses: tuple[str | None, ...],
    gained: dict[str | None, list[tuple[PortRange, Network]]],
    lost: dict[str | None, list[tuple[PortRange, Network]]],
) -> list[SpaceChange]:
    """Changes per interface witness, merged: on every witness they read as interface None."""
    pairs = [pair for space in (*gained.values(), *lost.values()) for pair in space]
    edges = sorted({r.first for r, _ in pairs} | {r.last + 1 for r, _ in pairs})
    where: dict[tuple[PortRange, tuple[Network, ...]], list[str | None]] = {}
    for witness in witnesses:
        for segment, sources in _difference(edges, gained[witness], lost[witness]):
            where.setdefault((segment, sources), []).append(witness)
    grouped: dict[tuple[str | None, tuple[Network, ...]], list[PortRange]] = {}
    for (segment, sources), found in where.items():
        grouped.setdefault((_interface_label(found, witnesses), sources), []).append(segment)
    return [
        SpaceChange(proto, merge_ranges(ranges), _source_names(sources), label)
        for (label, sources), ranges in sorted(
            grouped.items(), key=lambda item: ((item[0][0] or ""), min(item[1]))
        )
    ]


def _interface_label(found: list[str | None], witnesses: tuple[str | None, ...]) -> str | None:
    """None for every interface; "eth0" or "eth0, eth1"; "any except eth0" for most."""
    if len(found) == len(witnesses):
        return None
    if None in found:
        missing = [w for w in witnesses if w is not None and w not in found]
        return "any except " + ", ".join(missing)
    return ", ".join(w for w in found if w is not None)


def _difference(
    edges: list[int],
    gained: list[tuple[PortRange, Network]],
    lost: list[tuple[PortRange, Network]],
) -> list[tuple[PortRange, tuple[Network, ...]]]:
    """(port segment, sources) in `gained` but not in `lost`, on shared segment edges.

    One sweep over the edges keeps the sources active on each side, so the cost follows the
    entries and the segments, not their product.
    """
    events: dict[int, list[tuple[int, Network, int]]] = {}
    for side, pairs in enumerate((gained, lost)):
        for ports, network in pairs:
            events.setdefault(ports.first, []).append((side, network, 1))
            events.setdefault(ports.last + 1, []).append((side, network, -1))
    active: tuple[Counter[Network], Counter[Network]] = (Counter(), Counter())
    found = []
    for start, stop in pairwise(edges):
        for side, network, delta in events.get(start, ()):
            active[side][network] += delta
            if not active[side][network]:
                del active[side][network]
        if active[0]:
            difference = subtract_networks(active[0], active[1])
            if difference:
                found.append((PortRange(start, stop - 1), difference))
    return found


def subtract_networks(
    minuend: Iterable[Network], subtrahend: Iterable[Network]
) -> tuple[Network, ...]:
    """The addresses in `minuend` that are not in `subtrahend`, collapsed, IPv4 first.

    A sweep over merged integer intervals: linear after the sort, where cutting every piece
    by every network was the product of the two lists (a minute at 4k sources).
    """
    minuend, subtrahend = list(minuend), list(subtrahend)
    result: list[Network] = []
    for cls, address in ((IPv4Network, IPv4Address), (IPv6Network, IPv6Address)):
        keep = _intervals(n for n in minuend if isinstance(n, cls))
        cut = _intervals(n for n in subtrahend if isinstance(n, cls))
        for first, last in _interval_difference(keep, cut):
            result.extend(summarize_address_range(address(first), address(last)))
    return tuple(result)


def _intervals(networks: Iterable[Network]) -> list[tuple[int, int]]:
    """The networks as sorted (first, last) integer intervals, overlapping or touching merged."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted((int(n.network_address), int(n.broadcast_address)) for n in networks):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _interval_difference(
    keep: list[tuple[int, int]], cut: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of the merged intervals `keep` outside the merged intervals `cut`."""
    out: list[tuple[int, int]] = []
    index = 0
    for first, last in keep:
        while index < len(cut) and cut[index][1] < first:
            index += 1
        position, scan = first, index
        while scan < len(cut) and cut[scan][0] <= last:
            if cut[scan][0] > position:
                out.append((position, cut[scan][0] - 1))
            position = max(position, cut[scan][1] + 1)
            scan += 1
        if position <= last:
            out.append((position, last))
    return out


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


def space_change_json(item: SpaceChange) -> dict[str, object]:
    """One opened or closed space as JSON: proto, ports, from, interface."""
    return {
        "proto": item.proto.value,
        "ports": item.ports_text,
        "from": list(item.sources),
        "interface": item.interface,
    }


def diff_json(diff: PolicyDiff) -> dict[str, object]:
    """The diff as DESIGN §5's JSON object: opened, closed, lint changes, ruleset diff.

    A key "forwarded": {"old", "new"} is present only when `forwarded` changes.
    """

    data: dict[str, object] = {
        "old": diff.old_path,
        "new": diff.new_path,
        "changed": diff.changed,
        "opened": [space_change_json(c) for c in diff.opened],
        "closed": [space_change_json(c) for c in diff.closed],
    }
    if diff.forwarded_change is not None:
        data["forwarded"] = {
            "old": diff.forwarded_change.old.value,
            "new": diff.forwarded_change.new.value,
        }
    if diff.settings:
        data["settings"] = [{"key": s.key, "old": s.old, "new": s.new} for s in diff.settings]
    data["lint"] = {
        "added": [str(w) for w in diff.warnings_added],
        "removed": [str(w) for w in diff.warnings_removed],
    }
    data["ruleset_diff"] = diff.ruleset_diff
    return data
