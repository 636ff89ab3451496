"""The WinDivert filters `portguard enforce` opens (the same language on Linux's eBPF backend).

Most packets never leave the kernel. The filters are split by what must happen to a packet:
- DROP filters (handles opened with Flag.DROP, dropped in the kernel, never seen by Python):
  new inbound TCP connections (SYN without ACK) to ports no entry allows, and to ports open
  only to listed sources, from every other source;
- the JUDGE filter (diverted to Python, judged by portguard.verdict, re-injected or not):
  new TCP connections the kernel filter cannot decide (entries with `limit` or `interface`,
  or source lists the filter cannot express), and inbound UDP to ports not open to everyone,
  because a reply to this host's own datagram must pass (UDP state, as verdict's
  established);
- the SNIFF filter (Flag.SNIFF: a copy, the packet is not held): outbound UDP, so that the
  replies are recognised.
Packets the policy allows to everyone, and allowed sources on `from` ports, match no filter.

Measured on pydivert 4's Linux backend (real packets, this repository's tests): ordered
comparisons of addresses (`ip.SrcAddr <= A`) match the wrong packets, `not (...)` does not
parse, and within one filter only the first address comparison of a family is reliable
(`!=` chains, `or` chains and nested `? :` on addresses went wrong). Ports compare fine in
the range form generated here; chained `tcp.DstPort != N` diverted allowed ports too. So a
DROP filter tests at most one address per family, as `(ipv6 ? (A6 ? false : true) :
(A4 ? false : true))`, and each such source list gets its own DROP handle; anything else is
judged in Python, which is correct but costs a trip to user space per packet.

`forwarded` does not change the filters: the enforcer opens the network layer (this host's
own inbound and outbound packets), never WinDivert's forward layer (see backends/divert.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from itertools import pairwise

from portguard.model import Network, Policy, PortRange, Proto
from portguard.render.layout import PolicyLayout, complement, layout_policy, merge_ranges

__all__ = [
    "MAX_DROP_HANDLES",
    "MAX_FILTER_TERMS",
    "EnforcerFilters",
    "enforcer_filters",
    "render_windivert",
    "windivert_filter",
]

# WinDivert compiles a filter into at most 256 objects (WINDIVERT_FILTER_MAXLEN); measured
# here, 254 port comparisons plus two other tests are refused as "Filter expression too long".
MAX_FILTER_TERMS = 240
MAX_DROP_HANDLES = 8  # one per source list the kernel can test; the rest is judged in Python
SYN = "tcp and tcp.Syn and not tcp.Ack"
HEAD = f"inbound and not loopback and {SYN}"
HEAD_TERMS = 6
JUDGE_FIXED_TERMS = 8


@dataclass(frozen=True)
class EnforcerFilters:
    """Every filter the enforcer opens: kernel drops, the Python judge, the UDP sniffer."""

    drop: tuple[str, ...]
    judge: str  # "false" when nothing needs Python
    sniff: str  # "false" when no UDP is judged


def _port_terms(field: str, ranges: Sequence[PortRange]) -> list[str]:
    terms: list[str] = []
    for r in ranges:
        if r.first == r.last:
            terms.append(f"{field} == {r.first}")
        elif r.first == 0:
            terms.append(f"{field} <= {r.last}")
        elif r.last == 65535:
            terms.append(f"{field} >= {r.first}")
        else:
            terms.append(f"({field} >= {r.first} and {field} <= {r.last})")
    return terms


def _any_of(terms: Sequence[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")"


def _single_host(sources: Sequence[Network]) -> str | None:
    """The one host address of `sources`, '' if none, None if not expressible in the kernel."""
    if not sources:
        return ""
    if len(sources) == 1 and sources[0].num_addresses == 1:
        return str(sources[0].network_address)
    return None


def _kernel_sourced(layout: PolicyLayout, proto: Proto, busy: Sequence[PortRange]) -> tuple[
    dict[tuple[str, str], list[PortRange]], list[PortRange]
]:  # fmt: skip
    """`from` port pieces the kernel can decide, keyed by (v4 host, v6 host); the rest."""
    elements = [*layout.sourced_for(proto, 4), *layout.sourced_for(proto, 6)]
    ranges = [e.ports for e in elements]
    edges = sorted({r.first for r in ranges} | {r.last + 1 for r in ranges})
    kernel: dict[tuple[str, str], list[PortRange]] = {}
    python: list[PortRange] = []
    for start, stop in pairwise(edges):
        piece = PortRange(start, stop - 1)
        sources = [n for e in elements if e.ports.first <= start <= e.ports.last for n in e.sources]
        if not sources:
            continue
        v4 = _single_host([n for n in sources if isinstance(n, IPv4Network)])
        v6 = _single_host([n for n in sources if not isinstance(n, IPv4Network)])
        overlaps = any(b.first <= piece.last and piece.first <= b.last for b in busy)
        if v4 is None or v6 is None or overlaps:
            python.append(piece)
        else:
            kernel.setdefault((v4, v6), []).append(piece)
    return kernel, python


def _source_test(v4: str, v6: str, field: str = "SrcAddr") -> str:
    """True unless the packet's `field` is the given host of its family (one test each)."""
    four = f"(ip.{field} == {v4} ? false : true)" if v4 else "true"
    six = f"(ipv6.{field} == {v6} ? false : true)" if v6 else "true"
    return f"(ipv6 ? {six} : {four})"


def enforcer_filters(policy: Policy) -> EnforcerFilters:
    """The DROP, JUDGE and SNIFF filters for `policy` (see the module docstring)."""
    layout = layout_policy(policy)
    special = {
        p: merge_ranges([r for _, rule in layout.special if p in rule.protos for r in rule.ports])
        for p in Proto
    }
    sourced_tcp = [*layout.sourced_for(Proto.TCP, 4), *layout.sourced_for(Proto.TCP, 6)]
    allowed_tcp = [
        *layout.open_for(Proto.TCP),
        *special[Proto.TCP],
        *(e.ports for e in sourced_tcp),
    ]
    refused = complement(allowed_tcp, low=0)
    drop: list[str] = []
    judged_tcp: list[PortRange] = list(special[Proto.TCP])
    refused_terms = _port_terms("tcp.DstPort", refused)
    if HEAD_TERMS + 2 * len(refused_terms) > MAX_FILTER_TERMS:
        coarse = True  # too many gaps for the kernel: Python judges every new TCP connection
    else:
        coarse = False
        if refused_terms:
            drop.append(f"{HEAD} and {_any_of(refused_terms)}")
        kernel, python = _kernel_sourced(layout, Proto.TCP, special[Proto.TCP])
        judged_tcp += python
        for n, ((v4, v6), pieces) in enumerate(sorted(kernel.items())):
            terms = _port_terms("tcp.DstPort", merge_ranges(pieces))
            if n >= MAX_DROP_HANDLES or HEAD_TERMS + 2 * len(terms) + 6 > MAX_FILTER_TERMS:
                judged_tcp += pieces
                continue
            drop.append(f"{HEAD} and {_any_of(terms)} and {_source_test(v4, v6)}")
    udp_gaps = complement(layout.open_for(Proto.UDP), low=0)
    # One source list of a UDP `from` port (one address per family: see the docstring) is left
    # in the kernel: its datagrams from that source are allowed whatever their state.
    udp_kernel, _ = _kernel_sourced(layout, Proto.UDP, special[Proto.UDP])
    exempt: tuple[tuple[str, str], tuple[PortRange, ...]] | None = None
    if udp_kernel:
        key, pieces = min(udp_kernel.items())
        exempt = (key, merge_ranges(pieces))
        udp_gaps = complement([*layout.open_for(Proto.UDP), *exempt[1]], low=0)
    judge, judges_udp = _judge_filter(coarse, merge_ranges(judged_tcp), udp_gaps, exempt)
    sniff = _sniff_filter(udp_gaps, exempt) if judges_udp else "false"
    return EnforcerFilters(drop=tuple(drop), judge=judge, sniff=sniff)


def _sniff_filter(
    udp_gaps: Sequence[PortRange], exempt: tuple[tuple[str, str], tuple[PortRange, ...]] | None
) -> str:
    """Outbound UDP whose replies the judge filter would select (the mirror of its UDP part)."""
    gap_terms = _port_terms("udp.SrcPort", udp_gaps)
    exempt_terms = _port_terms("udp.SrcPort", exempt[1]) if exempt else []
    if JUDGE_FIXED_TERMS + 2 * (len(gap_terms) + len(exempt_terms)) > MAX_FILTER_TERMS:
        return "outbound and not loopback and udp"
    clauses = [f"(udp and {_any_of(gap_terms)})"] if gap_terms else []
    if exempt and exempt_terms:
        (v4, v6), _ = exempt
        test = _source_test(v4, v6, "DstAddr")
        clauses.append(f"(udp and {_any_of(exempt_terms)} and {test})")
    return f"outbound and not loopback and {_any_of(clauses)}" if clauses else "false"


def _judge_filter(
    coarse: bool,
    tcp_ports: Sequence[PortRange],
    udp_gaps: Sequence[PortRange],
    exempt: tuple[tuple[str, str], tuple[PortRange, ...]] | None,
) -> tuple[str, bool]:
    tcp_terms = _port_terms("tcp.DstPort", tcp_ports)
    udp_terms = _port_terms("udp.DstPort", udp_gaps)
    exempt_terms = _port_terms("udp.DstPort", exempt[1]) if exempt else []
    if JUDGE_FIXED_TERMS + 2 * (len(tcp_terms) + len(udp_terms) + len(exempt_terms)) > (
        MAX_FILTER_TERMS
    ):
        udp_terms, exempt_terms = [], []  # judge every inbound UDP datagram
        udp_gaps = [PortRange(0, 65535)]
    if JUDGE_FIXED_TERMS + 2 * (len(tcp_terms) + len(udp_terms)) > MAX_FILTER_TERMS:
        coarse = True
    clauses: list[str] = []
    if coarse:
        clauses.append(f"({SYN})")
    elif tcp_terms:
        clauses.append(f"({SYN} and {_any_of(tcp_terms)})")
    if udp_gaps:
        clauses.append(f"(udp and {_any_of(udp_terms)})" if udp_terms else "udp")
    if exempt and exempt_terms:
        (v4, v6), _ = exempt
        clauses.append(f"(udp and {_any_of(exempt_terms)} and {_source_test(v4, v6)})")
    if not clauses:
        return "false", False
    return f"inbound and not loopback and {_any_of(clauses)}", bool(udp_gaps or exempt)


def windivert_filter(policy: Policy) -> str:
    """Every packet some filter selects (drop or judge): what the enforcer may refuse."""
    filters = enforcer_filters(policy)
    selected = [f"({text})" for text in (*filters.drop, filters.judge) if text != "false"]
    return " or ".join(selected) if selected else "false"


def render_windivert(policy: Policy) -> str:
    """The enforcer's filters, one labelled line each."""
    filters = enforcer_filters(policy)
    lines = [f"drop: {text}" for text in filters.drop]
    lines += [f"judge: {filters.judge}", f"sniff: {filters.sniff}"]
    return "\n".join(lines) + "\n"
