"""The divert enforcer: packets the WinDivert filter selects are judged by portguard.verdict.

pydivert's `Divert` is WinDivert on Windows and its eBPF backend on Linux (same filter language,
same re-injection). Accepted packets are sent on unchanged; the rest are not re-injected, which
drops them. The loop stops when `stop` is set (the CLI sets it on SIGTERM and Ctrl-C), and
closing the handle detaches the filter, so nothing stays behind.

Only local inbound traffic is judged: every packet is judged as input (never `Packet.dnat`),
and the filter is opened on the network layer, not the forward layer. `forwarded` therefore
means nothing to the enforcer: ports NATed to a VM or container (WinNAT, Hyper-V, WSL, Docker)
are not filtered by it. What pydivert's Linux backend (TC hooks, before conntrack and NAT)
diverts for a DNAT-published port has not been established here.
"""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from threading import Event
from typing import Any, Protocol

from portguard.errors import PortguardError
from portguard.model import Policy
from portguard.render.windivert import windivert_filter
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, rule_matches, verdict

__all__ = [
    "UDP_FLOW_TIMEOUT",
    "DivertUnavailable",
    "EnforcerCounts",
    "EnforcerState",
    "decide",
    "open_divert",
    "run_enforcer",
]

UDP_FLOW_TIMEOUT = 30.0  # seconds, as the kernel's conntrack timeout for unanswered UDP
MAX_UDP_FLOWS = 65536
MAX_LIMIT_SOURCES = 65535  # like the nftables meter; when full, new sources fail closed
RECV_TIMEOUT = 0.2

FlowKey = tuple[int, str, int]  # (local port, remote address, remote port)


class DivertUnavailable(PortguardError):
    """pydivert is missing, or the divert handle cannot be opened here."""

    prefix = "portguard: "


class DivertHandle(Protocol):
    """The part of pydivert.Divert the enforcer uses."""

    def recv(self, bufsize: int = ..., timeout: float | None = ...) -> Any:
        """The next diverted packet; TimeoutError when none came in time."""

    def send(self, packet: Any, recalculate_checksum: bool = ...) -> int:
        """Re-inject a packet."""

    def close(self) -> None:
        """Detach the filter."""


@dataclass(frozen=True)
class EnforcerCounts:
    """What the enforcer did, for the summary at exit."""

    accepted: int
    dropped: int
    flows_seen: int  # outbound UDP datagrams remembered for their replies
    reinject_failed: int


@dataclass
class EnforcerState:
    """The enforcer's memory: recent outbound UDP flows and per-source `limit` budgets."""

    udp_flows: OrderedDict[FlowKey, float] = field(default_factory=OrderedDict)
    limit_hits: dict[tuple[int, str], deque[float]] = field(default_factory=dict)

    def note_outbound_udp(self, key: FlowKey, now: float) -> None:
        """Remember that this host sent a datagram, so the reply counts as established."""
        self.udp_flows[key] = now + UDP_FLOW_TIMEOUT
        self.udp_flows.move_to_end(key)
        while len(self.udp_flows) > MAX_UDP_FLOWS:
            self.udp_flows.popitem(last=False)

    def is_reply(self, key: FlowKey, now: float) -> bool:
        """Whether an inbound datagram answers a flow this host started recently."""
        expiry = self.udp_flows.get(key)
        return expiry is not None and expiry >= now

    def take_limit(self, entry: int, source: str, count: int, period: float, now: float) -> bool:
        """Spend one of `count` new connections per `period` for `source` under `entry`."""
        key = (entry, source)
        hits = self.limit_hits.get(key)
        if hits is None:
            if len(self.limit_hits) >= MAX_LIMIT_SOURCES:
                self._forget_idle(now, period)
                if len(self.limit_hits) >= MAX_LIMIT_SOURCES:
                    return False
            hits = self.limit_hits.setdefault(key, deque())
        while hits and hits[0] <= now - period:
            hits.popleft()
        if len(hits) >= count:
            return False
        hits.append(now)
        return True

    def _forget_idle(self, now: float, period: float) -> None:
        for key in [
            k for k, hits in self.limit_hits.items() if not hits or hits[-1] < now - period
        ]:
            del self.limit_hits[key]


def decide(policy: Policy, packet: Packet, state: EnforcerState, now: float) -> Verdict:
    """verdict() for `packet`, spending a per-source budget when only limited entries accept."""
    strict = verdict(policy, replace(packet, over_limit=True))
    if strict is Verdict.ACCEPT:
        return strict
    relaxed = replace(packet, over_limit=False)
    for number, rule in enumerate(policy.allow):
        if rule.limit is not None and rule_matches(rule, relaxed):
            period = float(rule.limit.unit.seconds)
            if state.take_limit(number, str(packet.source), rule.limit.count, period, now):
                return Verdict.ACCEPT
    return strict


def open_divert(filter_text: str) -> DivertHandle:
    """An open pydivert handle for `filter_text`, or DivertUnavailable saying why not."""
    try:
        from pydivert import Divert  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        raise DivertUnavailable(
            "pydivert is not installed (pip install 'portguard[divert]')"
        ) from None
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise DivertUnavailable("enforce needs root (CAP_BPF and CAP_NET_ADMIN); run as root")
    ok, position, message = Divert.check_filter(filter_text)
    if not ok:
        raise DivertUnavailable(f"divert filter refused at {position}: {message}")
    handle = Divert(filter_text)
    try:
        handle.open()
    except (OSError, ImportError, NotImplementedError) as error:
        raise DivertUnavailable(
            f"cannot open the divert handle: {error} (it needs root, or Administrator on Windows)"
        ) from None
    opened: DivertHandle = handle
    return opened


def _interface_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return f"if{index}"


def _as_packet(raw: Any) -> tuple[Packet, FlowKey] | None:
    """The verdict view of a diverted inbound packet, and its UDP flow key."""
    tcp, udp = raw.tcp, raw.udp
    if (tcp is None and udp is None) or raw.src_addr is None or raw.dst_port is None:
        return None
    source: IPv4Address | IPv6Address = ip_address(raw.src_addr)
    packet = Packet(
        proto=PacketProto.TCP if tcp is not None else PacketProto.UDP,
        source=source,
        interface=_interface_name(int(raw.interface[0])),
        dport=int(raw.dst_port),
    )
    return packet, (int(raw.dst_port), str(source), int(raw.src_port or 0))


def run_enforcer(
    policy: Policy,
    stop: Event,
    *,
    opener: Callable[[str], DivertHandle] = open_divert,
    on_ready: Callable[[str], None] = lambda _filter: None,
    clock: Callable[[], float] = time.monotonic,
) -> EnforcerCounts:
    """Divert, judge and re-inject until `stop` is set; return what was done."""
    filter_text = windivert_filter(policy)
    handle = opener(filter_text)
    state = EnforcerState()
    accepted = dropped = flows = failed = 0
    try:
        on_ready(filter_text)
        while not stop.is_set():
            try:
                raw = handle.recv(timeout=RECV_TIMEOUT)
            except TimeoutError:
                continue
            inbound = bool(raw.is_inbound)
            if not _judge(policy, state, raw, clock()):
                dropped += 1
                continue
            try:
                handle.send(raw)
            except OSError:
                failed += 1  # the packet is lost, as a drop would lose it; keep enforcing
                continue
            if inbound:
                accepted += 1
            else:
                flows += 1
    finally:
        handle.close()
    return EnforcerCounts(
        accepted=accepted, dropped=dropped, flows_seen=flows, reinject_failed=failed
    )


def _judge(policy: Policy, state: EnforcerState, raw: Any, now: float) -> bool:
    """Whether to re-inject a diverted packet; outbound UDP is remembered and always passes."""
    if not raw.is_inbound:
        if raw.udp is not None and raw.dst_addr is not None:
            key = (int(raw.src_port), str(ip_address(raw.dst_addr)), int(raw.dst_port))
            state.note_outbound_udp(key, now)
        return True
    judged = _as_packet(raw)
    if judged is None:
        return True  # not TCP/UDP: the filter does not select it; pass it on unjudged
    packet, key = judged
    if packet.proto is PacketProto.UDP and state.is_reply(key, now):
        packet = replace(packet, state=ConnState.ESTABLISHED)
    return decide(policy, packet, state, now) is Verdict.ACCEPT
