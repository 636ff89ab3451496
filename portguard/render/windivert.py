"""The WinDivert filter string `portguard enforce` diverts with (the same language on Linux).

The filter only narrows what reaches the enforcer: inbound new TCP connections (SYN without
ACK) and inbound UDP to ports that are not open to every source, plus outbound UDP so that
replies to this host's own datagrams are recognised. The per-packet decision is
portguard.verdict's. Ports are written in the range form generated from complement()
(`tcp.DstPort <= 21 or tcp.DstPort == 23 or ...`): a filter of chained `tcp.DstPort != N`
clauses was seen here to divert (and so drop) the allowed ports too.

`forwarded` does not change the filter: the enforcer opens the network layer (this host's
own inbound and outbound packets), never WinDivert's forward layer, so traffic this host
forwards or NATs to a VM or container is not judged as such (see backends/divert.py).
"""

from __future__ import annotations

from types import MappingProxyType

from portguard.model import Policy, PortRange, Proto
from portguard.render.layout import complement, layout_policy

__all__ = ["MAX_FILTER_TERMS", "render_windivert", "windivert_filter"]

# WinDivert compiles a filter into at most 256 objects (WINDIVERT_FILTER_MAXLEN); measured
# here, 254 port comparisons plus two other tests are refused as "Filter expression too long".
MAX_FILTER_TERMS = 240
PROTO_HEAD = MappingProxyType({Proto.TCP: "tcp and tcp.Syn and not tcp.Ack", Proto.UDP: "udp"})
HEAD_TERMS = MappingProxyType({Proto.TCP: 3, Proto.UDP: 1})
FIXED_TERMS = 5  # not loopback, inbound, outbound, udp (outbound), and one spare


def _port_terms(field: str, gaps: tuple[PortRange, ...]) -> list[str]:
    terms: list[str] = []
    for gap in gaps:
        if gap.first == gap.last:
            terms.append(f"{field} == {gap.first}")
        elif gap.first == 0:
            terms.append(f"{field} <= {gap.last}")
        elif gap.last == 65535:
            terms.append(f"{field} >= {gap.first}")
        else:
            terms.append(f"({field} >= {gap.first} and {field} <= {gap.last})")
    return terms


def windivert_filter(policy: Policy) -> str:
    """The filter for `policy`; ports open to everyone are left out when the filter fits."""
    layout = layout_policy(policy)
    gaps = {p: complement(layout.open_for(p), low=0) for p in Proto}
    port_clauses = {
        p: _port_terms(f"{p.value}.DstPort", gaps[p]) if gaps[p] != (PortRange(0, 65535),) else []
        for p in Proto
    }
    # Too many gaps for one filter: divert the whole protocol and let verdict() decide.
    while FIXED_TERMS + sum(HEAD_TERMS[p] + 2 * len(port_clauses[p]) for p in Proto) > (
        MAX_FILTER_TERMS
    ):
        widest = max(Proto, key=lambda p: len(port_clauses[p]))
        port_clauses[widest] = []
    inbound: list[str] = []
    for proto in Proto:
        if not gaps[proto]:
            continue  # every port open to everyone: nothing to decide
        clause = PROTO_HEAD[proto]
        if port_clauses[proto]:
            clause += " and (" + " or ".join(port_clauses[proto]) + ")"
        inbound.append(f"({clause})")
    if not inbound:
        return "false"
    parts = [f"(inbound and ({' or '.join(inbound)}))"]
    if gaps[Proto.UDP]:
        parts.append("(outbound and udp)")
    return f"not loopback and ({' or '.join(parts)})"


def render_windivert(policy: Policy) -> str:
    """The filter string, one line."""
    return windivert_filter(policy) + "\n"
