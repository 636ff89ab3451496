"""Pure: what a policy would do to this host's listening sockets, and to the live ruleset."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import AddressValueError, IPv4Address, IPv6Address, collapse_addresses, ip_address
from types import MappingProxyType

from portguard.drift import RulesetState
from portguard.facts.published import PublishedPort
from portguard.model import AllowRule, ListeningSocket, Network, Policy, PortRange, Proto
from portguard.policy.lint import TROJAN_PORTS
from portguard.render.layout import merge_ranges
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, rule_matches, verdict

__all__ = [
    "IdleAllow",
    "Plan",
    "PublishedPlan",
    "RulesetChange",
    "SocketPlan",
    "SocketVerdict",
    "build_plan",
    "judge_published",
    "judge_socket",
    "plan_json",
    "published_json",
    "rule_reach_text",
    "socket_json",
    "trojan_name",
]

# An arriving interface that no `interface:` pattern in a policy is expected to name.
GENERIC_INTERFACE = "pg-probe0"
OUTSIDER_START = MappingProxyType({4: ip_address("1.0.0.1"), 6: ip_address("2000::1")})
TROJANS = MappingProxyType(dict(TROJAN_PORTS))


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
    return Plan(
        policy_path=policy.path,
        sockets=tuple(judge_socket(policy, s) for s in listening),
        idle_allows=_idle_allows(policy, listening),
        ruleset=RulesetChange(ruleset_state, rendered_diff, unknown_reason),
        published=tuple(judge_published(policy, p) for p in published),
    )


def trojan_name(port: int) -> str | None:
    """The well-known trojan on `port` (from the lint list), if any."""
    return TROJANS.get(port)


def judge_socket(policy: Policy, sock: ListeningSocket) -> SocketPlan:
    """The verdict on NEW connections from other hosts to `sock`, through verdict.verdict."""
    trojan = trojan_name(sock.port)
    if not sock.exposed:
        return SocketPlan(sock, SocketVerdict.LOOPBACK, False, (), trojan)
    dual_stack = sock.address == IPv6Address("::") and not sock.v6only
    families = (4, 6) if dual_stack else (sock.address.version,)
    from_anywhere, allowed_by = _reach(policy, PacketProto(sock.proto.value), sock.port, families)
    allowed = from_anywhere or bool(allowed_by)
    return SocketPlan(
        sock,
        SocketVerdict.ALLOWED if allowed else SocketVerdict.BLOCKED,
        from_anywhere,
        allowed_by,
        trojan,
    )


def judge_published(policy: Policy, published: PublishedPort) -> PublishedPlan:
    """The verdict on NEW connections from other hosts to a published port (a DNAT packet)."""
    from_anywhere, allowed_by = _reach(
        policy, PacketProto(published.proto.value), published.port, (published.family,), dnat=True
    )
    allowed = from_anywhere or bool(allowed_by)
    return PublishedPlan(
        published,
        SocketVerdict.ALLOWED if allowed else SocketVerdict.BLOCKED,
        from_anywhere,
        allowed_by,
    )


def _reach(
    policy: Policy, proto: PacketProto, port: int, families: tuple[int, ...], *, dnat: bool = False
) -> tuple[bool, tuple[str, ...]]:
    """Whether a source no `from` names gets in, and which entries let someone in."""

    def accepted(source: IPv4Address | IPv6Address, interface: str) -> bool:
        packet = Packet(proto, source, interface, dport=port, state=ConnState.NEW, dnat=dnat)
        return verdict(policy, packet) is Verdict.ACCEPT

    outsiders = [o for o in (_outsider(policy, f) for f in families) if o is not None]
    from_anywhere = any(accepted(o, GENERIC_INTERFACE) for o in outsiders)
    allowed_by: list[str] = []
    for rule in policy.allow:
        probes = [
            (source, interface)
            for source in _rule_sources(rule, families, outsiders)
            for interface in (_interface_example(rule.interface),)
        ]
        if any(
            accepted(s, i) and rule_matches(rule, Packet(proto, s, i, dport=port))
            for s, i in probes
        ):
            allowed_by.append(rule_reach_text(rule))
    return from_anywhere, tuple(dict.fromkeys(allowed_by))


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


def _rule_sources(
    rule: AllowRule, families: tuple[int, ...], outsiders: list[IPv4Address | IPv6Address]
) -> list[IPv4Address | IPv6Address]:
    if rule.sources is None:
        return list(outsiders)
    return [
        net.network_address
        for net in rule.sources
        if net.version in families and not net.network_address.is_loopback
    ]


def _interface_example(pattern: str | None) -> str:
    if pattern is None:
        return GENERIC_INTERFACE
    return pattern[:-1] + "0" if pattern.endswith("*") else pattern


def _outsider(policy: Policy, family: int) -> IPv4Address | IPv6Address | None:
    """A public address of `family` that no `from` list and no `deny:` item names, if any."""
    named: list[Network] = [
        net for rule in policy.allow for net in (rule.sources or ()) if net.version == family
    ]
    named += [net for net in policy.denied() if net.version == family]
    candidate = OUTSIDER_START[family]
    for net in collapse_addresses(named):  # type: ignore[type-var]  # one family only
        if candidate in net:
            try:
                candidate = net.broadcast_address + 1
            except AddressValueError:  # the list runs to the end of the address space
                return None
    return candidate


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


def _unused(ports: PortRange, used: list[int]) -> list[PortRange]:
    """The parts of `ports` not in the sorted list `used`."""
    gaps: list[PortRange] = []
    start = ports.first
    for port in used[bisect_left(used, ports.first) : bisect_right(used, ports.last)]:
        if port > start:
            gaps.append(PortRange(start, port - 1))
        start = port + 1
    if start <= ports.last:
        gaps.append(PortRange(start, ports.last))
    return gaps


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
        data["verdict"] = judged.verdict.value
        data["from_anywhere"] = judged.from_anywhere
        data["allowed_by"] = list(judged.allowed_by)
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
        data["verdict"] = judged.verdict.value
        data["from_anywhere"] = judged.from_anywhere
        data["allowed_by"] = list(judged.allowed_by)
    return data


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
