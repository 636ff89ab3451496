"""The divert enforcer: the kernel drops what the policy refuses; Python judges the rest.

pydivert's `Divert` is WinDivert on Windows and its eBPF backend on Linux (same filter language,
same re-injection). render/windivert.py splits the policy into filters: DROP handles
(Flag.DROP) drop refused new TCP connections in the kernel, so allowed traffic never leaves
it; one JUDGE handle diverts what needs Python (`limit`, `interface`, source lists the kernel
filter cannot test, and inbound UDP to ports not open to all), judged by portguard.verdict and
re-injected or not; a SNIFF handle copies outbound UDP so that replies count as established.
The loop stops when `stop` is set (the CLI sets it on SIGTERM and Ctrl-C), and closing the
handles detaches the filters, so nothing stays behind.

UDP state follows conntrack, as verdict's "established" means there: a flow this host sent
on is remembered 30 s, and 120 s once the other side has answered, renewed by every packet
either way; flows of connected UDP sockets that exist when the enforcer starts are
remembered from the start (see facts: `connected_udp_flows`).

Fragments: WinDivert reassembles inbound fragments before filtering (unless Flag.FRAGMENTS).
pydivert's Linux backend hands no IPv4 fragment and no IPv6 fragment (even an atomic one) to
a filter, and the kernel reassembles them after the TC hook, so a fragmented SYN would pass.
On Linux the enforcer therefore puts a table of its own, `inet portguard_enforce`, in its
network namespace that drops inbound fragments before reassembly, and deletes it at exit
(backends/divert_fragments.py); it refuses to start if it cannot.

Only local inbound traffic is judged: every packet is judged as input (never `Packet.dnat`),
and the filters are opened on the network layer, not the forward layer. `forwarded` therefore
means nothing to the enforcer: ports NATed to a VM or container (WinNAT, Hyper-V, WSL, Docker)
are not filtered by it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from threading import Event
from typing import Any, Protocol

from portguard.backends.divert_fragments import connected_udp_flows, fragments_dropped
from portguard.errors import PortguardError
from portguard.model import Policy
from portguard.render.windivert import EnforcerFilters, enforcer_filters
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, rule_matches, verdict

__all__ = [
    "UDP_FLOW_TIMEOUT",
    "UDP_STREAM_TIMEOUT",
    "DivertUnavailable",
    "EnforcerCounts",
    "EnforcerState",
    "decide",
    "interface_namer",
    "open_divert",
    "run_enforcer",
]

UDP_FLOW_TIMEOUT = 30.0  # seconds, as the kernel's conntrack timeout for unanswered UDP
UDP_STREAM_TIMEOUT = 120.0  # seconds, conntrack's timeout once the other side has answered
MAX_UDP_FLOWS = 65536
MAX_LIMIT_SOURCES = 65535  # like the nftables meter; when full, new sources fail closed
RECV_TIMEOUT = 0.2

FlowKey = tuple[int, str, int]  # (local port, remote address, remote port)


class DivertUnavailable(PortguardError):
    """pydivert is missing, or the divert handle cannot be opened here."""


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

    answered: set[FlowKey] = field(default_factory=set)

    def note_outbound_udp(self, key: FlowKey, now: float) -> None:
        """Remember that this host sent a datagram, so the reply counts as established."""
        timeout = UDP_STREAM_TIMEOUT if key in self.answered else UDP_FLOW_TIMEOUT
        self.udp_flows[key] = max(self.udp_flows.get(key, 0.0), now + timeout)
        self.udp_flows.move_to_end(key)
        while len(self.udp_flows) > MAX_UDP_FLOWS:
            old, _ = self.udp_flows.popitem(last=False)
            self.answered.discard(old)

    def is_reply(self, key: FlowKey, now: float) -> bool:
        """Whether an inbound datagram answers a live flow; an answer renews it (120 s)."""
        expiry = self.udp_flows.get(key)
        if expiry is None or expiry < now:
            return False
        self.answered.add(key)
        self.udp_flows[key] = now + UDP_STREAM_TIMEOUT
        self.udp_flows.move_to_end(key)
        return True

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


def _require_root() -> None:
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise DivertUnavailable("enforce needs root (CAP_BPF and CAP_NET_ADMIN); run as root")


def open_divert(filter_text: str, mode: str = "judge") -> DivertHandle:
    """An open pydivert handle for `filter_text` ("drop", "judge" or "sniff" mode)."""
    try:
        from pydivert import Divert, Flag  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        raise DivertUnavailable(
            "pydivert is not installed (pip install 'portguard[divert]')"
        ) from None
    _require_root()
    ok, position, message = Divert.check_filter(filter_text)
    if not ok:
        raise DivertUnavailable(f"divert filter refused at {position}: {message}")
    flags = {"drop": Flag.DROP, "sniff": Flag.SNIFF | Flag.RECV_ONLY}.get(mode, Flag.DEFAULT)
    handle = Divert(filter_text, flags=flags)
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


def interface_namer() -> Callable[[int], str]:
    """Index -> the name `interface` entries match: the alias on Windows, else the kernel's."""
    if sys.platform != "win32":
        return _interface_name
    from portguard.backends.windows import (  # noqa: PLC0415 - Windows only
        PowerShellRunner,
        WindowsFirewallError,
        interface_aliases,
    )

    try:
        aliases = interface_aliases(PowerShellRunner())
    except WindowsFirewallError as why:
        raise DivertUnavailable(f"cannot read the interface aliases: {why}") from None
    return lambda index: aliases.get(index, f"if{index}")  # a new interface matches no entry


def _as_packet(
    raw: Any, name_of: Callable[[int], str] = _interface_name
) -> tuple[Packet, FlowKey] | None:
    """The verdict view of a diverted inbound packet, and its UDP flow key."""
    tcp, udp = raw.tcp, raw.udp
    if (tcp is None and udp is None) or raw.src_addr is None or raw.dst_port is None:
        return None
    source: IPv4Address | IPv6Address = ip_address(raw.src_addr)
    packet = Packet(
        proto=PacketProto.TCP if tcp is not None else PacketProto.UDP,
        source=source,
        interface=name_of(int(raw.interface[0])),
        dport=int(raw.dst_port),
    )
    return packet, (int(raw.dst_port), str(source), int(raw.src_port or 0))


def run_enforcer(
    policy: Policy,
    stop: Event,
    *,
    opener: Callable[[str, str], DivertHandle] = open_divert,
    on_ready: Callable[[str], None] = lambda _filter: None,
    clock: Callable[[], float] = time.monotonic,
    known_flows: Callable[[], Iterable[FlowKey]] = connected_udp_flows,
) -> EnforcerCounts:
    """Open the drop, judge and sniff handles; judge and re-inject until `stop` is set."""
    filters = enforcer_filters(policy)
    _require_root()
    name_of = interface_namer()
    state = EnforcerState()
    counts = [0, 0, 0, 0]  # accepted, dropped, flows seen, re-injections failed
    with contextlib.ExitStack() as stack:
        if sys.platform != "win32":
            stack.enter_context(fragments_dropped())
        for text in filters.drop:
            stack.callback(opener(text, "drop").close)
        judge = sniff = None
        if filters.judge != "false":
            judge = opener(filters.judge, "judge")
            stack.callback(judge.close)
        if filters.sniff != "false":
            sniff = opener(filters.sniff, "sniff")
            stack.callback(sniff.close)
            now = clock()
            for key in known_flows():
                state.note_outbound_udp(key, now)
        on_ready(_describe(filters))
        while not stop.is_set():
            if judge is None:
                stop.wait(RECV_TIMEOUT)
                continue
            try:
                raw = judge.recv(timeout=RECV_TIMEOUT)
            except TimeoutError:
                counts[2] += _drain(sniff, state, clock())
                continue
            counts[2] += _drain(sniff, state, clock())  # the request a reply answers came first
            if not _judge(policy, state, raw, clock(), name_of):
                counts[1] += 1
                continue
            try:
                judge.send(raw)
            except OSError:
                counts[3] += 1  # the packet is lost, as a drop would lose it; keep enforcing
                continue
            counts[0] += 1
    return EnforcerCounts(*counts)


def _describe(filters: EnforcerFilters) -> str:
    parts = [f"drop in kernel: {text}" for text in filters.drop]
    return "; ".join([*parts, f"judge: {filters.judge}", f"sniff: {filters.sniff}"])


def _drain(sniff: DivertHandle | None, state: EnforcerState, now: float) -> int:
    """Remember every outbound UDP datagram copied so far; how many there were."""
    if sniff is None:
        return 0
    seen = 0
    while True:
        try:
            raw = sniff.recv(timeout=0)
        except TimeoutError:
            return seen
        if raw.udp is not None and raw.dst_addr is not None and not raw.is_inbound:
            key = (int(raw.src_port), str(ip_address(raw.dst_addr)), int(raw.dst_port))
            state.note_outbound_udp(key, now)
            seen += 1


def _judge(
    policy: Policy,
    state: EnforcerState,
    raw: Any,
    now: float,
    name_of: Callable[[int], str] = _interface_name,
) -> bool:
    """Whether to re-inject a diverted inbound packet (the judge filter selects inbound only)."""
    if not raw.is_inbound:
        return True
    judged = _as_packet(raw, name_of)
    if judged is None:
        return True  # not TCP/UDP: the filter does not select it; pass it on unjudged
    packet, key = judged
    if packet.proto is PacketProto.UDP and state.is_reply(key, now):
        packet = replace(packet, state=ConnState.ESTABLISHED)
    return decide(policy, packet, state, now) is Verdict.ACCEPT
