"""Pure: what a policy would do to this host's listening sockets, and to the live ruleset."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from itertools import islice
from types import MappingProxyType

from portguard.drift import RulesetState
from portguard.facts.published import PublishedPort
from portguard.model import (
    AllowRule,
    ForwardedMode,
    ListeningSocket,
    Network,
    Policy,
    PortRange,
    Proto,
)
from portguard.policy.lint import TROJAN_PORTS
from portguard.policy.networks import in_family, network_parts, union
from portguard.render.layout import complement, merge_ranges
from portguard.verdict import LOOPBACK_INTERFACE, interface_matches

__all__ = [
    "IdleAllow",
    "Plan",
    "PublishedPlan",
    "ReachIndex",
    "RulesetChange",
    "SocketPlan",
    "SocketVerdict",
    "build_plan",
    "judge_published",
    "judge_socket",
    "plan_json",
    "published_json",
    "reach_index",
    "rule_reach_text",
    "socket_json",
    "trojan_name",
]

# An arriving interface that no `interface:` pattern in a policy is expected to name.
GENERIC_INTERFACE = "pg-probe0"
OUTSIDER_START = MappingProxyType({4: ip_address("1.0.0.1"), 6: ip_address("2000::1")})
TROJANS = MappingProxyType(dict(TROJAN_PORTS))
MAX_ADDRESS = (1 << 128) - 1
LOOPBACK_V4_OCTET = 127


class SocketVerdict(StrEnum):
    """What the policy does to new connections towards a socket."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"
    LOOPBACK = "loopback"  # bound to loopback only: other hosts cannot reach it anyway


@dataclass(frozen=True)
class SocketPlan:
    """One listening socket and the policy's verdict on it."""

    socket: ListeningSocket
    verdict: SocketVerdict
    from_anywhere: bool  # allowed for a source no `from` list names
    allowed_by: tuple[str, ...]  # the entries that let someone in ("@office on eth1", ...)
    trojan: str | None  # the trojan that made this port famous, if any


@dataclass(frozen=True)
class PublishedPlan:
    """One published (DNAT) port and the policy's verdict on new connections to it."""

    published: PublishedPort
    verdict: SocketVerdict  # ALLOWED or BLOCKED
    from_anywhere: bool
    allowed_by: tuple[str, ...]


@dataclass(frozen=True)
class IdleAllow:
    """Allowed ports of an entry (for one protocol) that no exposed socket listens on."""

    proto: Proto
    ports: str
    line: int
    comment: str | None


@dataclass(frozen=True)
class RulesetChange:
    """The live table against the new rendering; state None when it could not be read."""

    state: RulesetState | None
    diff: str  # unified diff of the rendered text ("" when in sync or unknown)
    reason: str | None = None  # why the state is unknown


@dataclass(frozen=True)
class Plan:
    """Everything `portguard plan` reports."""

    policy_path: str
    sockets: tuple[SocketPlan, ...]
    idle_allows: tuple[IdleAllow, ...]
    ruleset: RulesetChange
    published: tuple[PublishedPlan, ...] = ()

    @property
    def changes(self) -> bool | None:
        """Whether apply would change the kernel's rules (None: cannot tell)."""
        if self.ruleset.state is None:
            return None
        return self.ruleset.state is not RulesetState.IN_SYNC

    @property
    def unreachable(self) -> tuple[SocketPlan, ...]:
        """Exposed sockets the policy blocks for every source."""
        return tuple(s for s in self.sockets if s.verdict is SocketVerdict.BLOCKED)

    @property
    def loopback_only(self) -> tuple[SocketPlan, ...]:
        """Sockets bound to loopback only."""
        return tuple(s for s in self.sockets if s.verdict is SocketVerdict.LOOPBACK)

    @property
    def unreachable_published(self) -> tuple[PublishedPlan, ...]:
        """Published ports the policy blocks for every source."""
        return tuple(p for p in self.published if p.verdict is SocketVerdict.BLOCKED)


def build_plan(
    policy: Policy,
    sockets: Iterable[ListeningSocket],
    ruleset_state: RulesetState | None,
    rendered_diff: str,
    unknown_reason: str | None = None,
    *,
    published: Iterable[PublishedPort] = (),
) -> Plan:
    """Judge every socket and published port, find idle allows, attach the ruleset change."""
    listening = tuple(sockets)
    index = reach_index(policy)
    return Plan(
        policy_path=policy.path,
        sockets=tuple(judge_socket(policy, s, index) for s in listening),
        idle_allows=_idle_allows(policy, listening),
        ruleset=RulesetChange(ruleset_state, rendered_diff, unknown_reason),
        published=tuple(judge_published(policy, p, index) for p in published),
    )


def trojan_name(port: int) -> str | None:
    """The well-known trojan on `port` (from the lint list), if any."""
    return TROJANS.get(port)


@dataclass(frozen=True)
class _EntryReach:
    """What one allow entry needs to judge a socket, with its `from` list reduced once."""

    rule: AllowRule
    protos: frozenset[str]
    source_families: frozenset[int] | None  # families with a non-loopback source; None: any
    open_families: frozenset[int]  # ... whose first address `deny:` does not list either
    generic_interface: bool  # the entry admits a packet arriving on GENERIC_INTERFACE
    text: str


@dataclass(frozen=True)
class ReachIndex:
    """A policy reduced once for judging sockets: per-socket cost independent of `from` sizes.

    Built in O(n log n) over all `from` lists (`reach_index`); judging a socket then looks
    only at each entry's protocols and ports. Gives verdict.verdict's answers (see `_reach`).
    """

    policy: Policy
    outsiders: tuple[tuple[int, IPv4Address | IPv6Address | None], ...]  # (family, address)
    entries: tuple[_EntryReach, ...]

    def outsider(self, family: int) -> IPv4Address | IPv6Address | None:
        """A public address of `family` that no `from` list names, if one exists."""
        return dict(self.outsiders)[family]


def reach_index(policy: Policy) -> ReachIndex:
    """Reduce `policy`'s `from` lists once, for judging any number of sockets."""
    deny_lists = [item.networks for item in policy.deny]
    denied = {family: _merged(_intervals(deny_lists, family)) for family in (4, 6)}
    entries = tuple(
        _EntryReach(
            rule=rule,
            protos=frozenset(p.value for p in rule.protos),
            source_families=None if rule.sources is None else _source_families(rule.sources),
            open_families=frozenset()
            if rule.sources is None
            else _source_families(rule.sources, denied),
            generic_interface=rule.interface is None
            or interface_matches(rule.interface, GENERIC_INTERFACE),
            text=rule_reach_text(rule),
        )
        for rule in policy.allow
    )
    return ReachIndex(policy, ((4, _outsider(policy, 4)), (6, _outsider(policy, 6))), entries)


def judge_socket(
    policy: Policy, sock: ListeningSocket, index: ReachIndex | None = None
) -> SocketPlan:
    """The verdict on NEW connections from other hosts to `sock` (verdict.verdict's meaning).

    Pass `index` (reach_index of the same policy) when judging many sockets.
    """
    trojan = trojan_name(sock.port)
    if not sock.exposed:
        return SocketPlan(sock, SocketVerdict.LOOPBACK, False, (), trojan)
    dual_stack = sock.address == IPv6Address("::") and not sock.v6only
    families = (4, 6) if dual_stack else (sock.address.version,)
    index = index if index is not None and index.policy is policy else reach_index(policy)
    from_anywhere, allowed_by = _reach(index, sock.proto.value, sock.port, families)
    allowed = from_anywhere or bool(allowed_by)
    return SocketPlan(
        sock,
        SocketVerdict.ALLOWED if allowed else SocketVerdict.BLOCKED,
        from_anywhere,
        allowed_by,
        trojan,
    )


def judge_published(
    policy: Policy, published: PublishedPort, index: ReachIndex | None = None
) -> PublishedPlan:
    """The verdict on NEW connections from other hosts to a published port (a DNAT packet)."""
    index = index if index is not None and index.policy is policy else reach_index(policy)
    from_anywhere, allowed_by = _reach(
        index, published.proto.value, published.port, (published.family,), dnat=True
    )
    allowed = from_anywhere or bool(allowed_by)
    return PublishedPlan(
        published,
        SocketVerdict.ALLOWED if allowed else SocketVerdict.BLOCKED,
        from_anywhere,
        allowed_by,
    )


def _reach(
    index: ReachIndex, proto: str, port: int, families: tuple[int, ...], *, dnat: bool = False
) -> tuple[bool, tuple[str, ...]]:
    """Whether a source no `from` names gets in, and which entries let someone in.

    The same answers as asking verdict.verdict about probe packets (tests/test_reach.py
    checks it against that walk): an outsider matches no `from` list, so it gets in from
    GENERIC_INTERFACE exactly when an entry without `from` admits that interface (or
    `forwarded: ignore` passes every DNAT packet). An entry lets someone in when its
    protocol and port match and it has a probe: an outsider (no `from`), or one of its own
    non-loopback sources of the socket's families that `deny:` does not list (verdict drops
    denied sources, except on "lo" and under `forwarded: ignore` for DNAT packets); its own
    interface example always matches its pattern, and a packet one entry accepts and `deny:`
    does not drop, verdict accepts.
    """
    outsiders = [o for o in (index.outsider(f) for f in families) if o is not None]
    allowed_by: list[str] = []
    from_anywhere = False
    if outsiders and dnat and index.policy.forwarded is ForwardedMode.IGNORE:
        from_anywhere = True
    for entry in index.entries:
        if proto not in entry.protos or not any(port in r for r in entry.rule.ports):
            continue
        if entry.source_families is None:
            if outsiders:
                from_anywhere = from_anywhere or entry.generic_interface
                allowed_by.append(entry.text)
        else:
            # verdict accepts before the deny test on "lo" (input) and under forwarded: ignore
            passes_deny = (not dnat and entry.rule.interface == LOOPBACK_INTERFACE) or (
                dnat and index.policy.forwarded is ForwardedMode.IGNORE
            )
            usable = entry.source_families if passes_deny else entry.open_families
            if any(f in usable for f in families):
                allowed_by.append(entry.text)
    return from_anywhere, tuple(dict.fromkeys(allowed_by))


def _source_families(
    sources: Sequence[Network], denied: Mapping[int, list[tuple[int, int]]] | None = None
) -> frozenset[int]:
    """The IP families among `sources` with a network address that is no loopback address
    (and, with `denied`, lies in none of those merged, sorted intervals)."""
    families: set[int] = set()
    for family in (4, 6):
        for _, address, _ in network_parts(in_family(sources, family)):
            if not _is_loopback(family, address) and (
                denied is None or not _inside(denied[family], address)
            ):
                families.add(family)
                break  # one such network is enough
    return frozenset(families)


def rule_reach_text(rule: AllowRule) -> str:
    """Who an entry lets in: "anywhere", "any source on eth1", "@office (limit 6/minute)"."""
    if rule.source_names:
        text = ", ".join(rule.source_names)
    else:
        text = "any source" if rule.interface else "anywhere"
    if rule.interface:
        text += f" on {rule.interface}"
    if rule.limit:
        text += f" (limit {rule.limit})"
    return text


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted intervals with overlapping and touching ones merged."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _inside(merged: list[tuple[int, int]], address: int) -> bool:
    """Whether `address` lies in one of the merged, sorted intervals (a binary search)."""
    index = bisect_right(merged, (address, MAX_ADDRESS)) - 1
    return index >= 0 and merged[index][0] <= address <= merged[index][1]


def _intervals(groups: Iterable[Sequence[Network]], family: int) -> list[tuple[int, int]]:
    """(first, last) address of each network of `family` in `groups`, as integers."""
    bits = OUTSIDER_START[family].max_prefixlen
    return [
        (start, start + (1 << (bits - prefix)) - 1)
        for networks in groups
        for version, start, prefix in network_parts(in_family(networks, family))
        if version == family
    ]


def _is_loopback(version: int, address: int) -> bool:
    """ipaddress's is_loopback on an address as an int: 127.0.0.0/8 or ::1."""
    return address >> 24 == LOOPBACK_V4_OCTET if version == 4 else address == 1


def _outsider(policy: Policy, family: int) -> IPv4Address | IPv6Address | None:
    """A public address of `family` that no `from` list and no `deny:` item names, if any.

    The lowest address from OUTSIDER_START up outside every such network: the lists'
    union (one NetworkSet: sorted, disjoint), entered by a bisection, not a walk of addresses.
    """
    named = [rule.sources for rule in policy.allow if rule.sources is not None]
    keys = union([*named, *(item.networks for item in policy.deny)]).keys(family)
    start = OUTSIDER_START[family]
    candidate = int(start)
    # The last network starting at or before the candidate; those before it end before it.
    at = max(0, bisect_right(keys, candidate << 8 | 0xFF) - 1)
    for first, prefix in ((key >> 8, key & 0xFF) for key in islice(keys, at, None)):
        if first > candidate:
            break
        candidate = max(candidate, first + (1 << (start.max_prefixlen - prefix)))
    if candidate > (1 << start.max_prefixlen) - 1:  # the lists run to the end of the space
        return None
    return IPv4Address(candidate) if family == 4 else IPv6Address(candidate)


def _idle_allows(policy: Policy, sockets: tuple[ListeningSocket, ...]) -> tuple[IdleAllow, ...]:
    """Allowed ports nothing exposed listens on, per entry and protocol, as ranges.

    Reported per port, not per entry: a range with 3 of 11 ports in use has 8 idle ports,
    which is where something could start listening unseen.
    """
    listening = {
        proto: sorted({s.port for s in sockets if s.exposed and s.proto is proto})
        for proto in Proto
    }
    idle: list[IdleAllow] = []
    for rule in policy.allow:
        for proto in rule.protos:
            free = [gap for r in rule.ports for gap in _unused(r, listening[proto])]
            if free:
                ports = ",".join(str(r) for r in merge_ranges(free))
                idle.append(IdleAllow(proto, ports, rule.location.line, rule.comment))
    return tuple(idle)


def _unused(ports: PortRange, used: list[int]) -> tuple[PortRange, ...]:
    """The parts of `ports` not in the sorted list `used`."""
    inside = used[bisect_left(used, ports.first) : bisect_right(used, ports.last)]
    return complement([PortRange(p, p) for p in inside], ports.first, ports.last)


def socket_json(judged: SocketPlan | ListeningSocket) -> dict[str, object]:
    """One socket as DESIGN §5's JSON object (with the verdict when it was judged)."""
    sock = judged.socket if isinstance(judged, SocketPlan) else judged
    data: dict[str, object] = {
        "proto": sock.proto.value,
        "address": str(sock.address),
        "port": sock.port,
        "pid": sock.pid,
        "process": sock.process,
        "exposed": sock.exposed,
        "v6only": sock.v6only,
    }
    if isinstance(judged, SocketPlan):
        data.update(_verdict_json(judged))
    data["trojan"] = trojan_name(sock.port)
    return data


def published_json(judged: PublishedPlan | PublishedPort) -> dict[str, object]:
    """One published port as DESIGN §5's JSON object (with the verdict when it was judged)."""
    port = judged.published if isinstance(judged, PublishedPlan) else judged
    data: dict[str, object] = {
        "proto": port.proto.value,
        "port": port.port,
        "to": port.to,
        "table": port.table,
    }
    if isinstance(judged, PublishedPlan):
        data.update(_verdict_json(judged))
    return data


def _verdict_json(judged: SocketPlan | PublishedPlan) -> dict[str, object]:
    """The verdict fields shared by a judged socket's and a judged published port's JSON."""
    return {
        "verdict": judged.verdict.value,
        "from_anywhere": judged.from_anywhere,
        "allowed_by": list(judged.allowed_by),
    }


def plan_json(plan: Plan) -> dict[str, object]:
    """The plan as DESIGN §5's JSON object."""
    return {
        "policy": plan.policy_path,
        "changes": plan.changes,
        "sockets": [socket_json(s) for s in plan.sockets],
        "published": [published_json(p) for p in plan.published],
        "idle_allows": [
            {"proto": i.proto.value, "ports": i.ports, "line": i.line, "comment": i.comment}
            for i in plan.idle_allows
        ],
        "ruleset": {
            "state": plan.ruleset.state.value if plan.ruleset.state is not None else "unknown",
            "diff": plan.ruleset.diff,
            "reason": plan.ruleset.reason,
        },
    }
