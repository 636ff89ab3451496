"""Pure: the live counters told per allow entry, blocked totals, top blocked ports, bans.

Each allow entry's packets are the counter of the rule that accepts for it, summed over the
input and forward chains (a published port's connections are accepted in forward). Plain
entries of one protocol share one rule (`@open_tcp`), as do the `from` entries of one
protocol (`@from4_tcp`, `@from6_tcp`); an entry then reports its rule's count and names the
entries it shares it with. Counts are new connections: established packets are accepted
before any entry's rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from portguard.facts.counters import BlockedPort, LiveCounters, RuleCounter
from portguard.model import Policy

__all__ = [
    "EntryStats",
    "Stats",
    "StatsBaseline",
    "build_stats",
    "prometheus_text",
    "stats_json",
]

TOP_PORTS = 10


@dataclass(frozen=True)
class EntryStats:
    """One allow entry and protocol: what it accepted."""

    line: int
    comment: str | None
    proto: str
    ports: str
    packets: int
    bytes: int
    shared_with: tuple[int, ...]  # lines of entries counted by the same rule


@dataclass(frozen=True)
class Stats:
    """Everything `portguard stats` reports."""

    entries: tuple[EntryStats, ...]
    dropped_packets: int  # new connections that met the default verdict
    dropped_by_port: tuple[tuple[str, int, int], ...]  # (proto, port, packets), most first
    denied_packets: int
    banned_packets: int
    bans: int
    in_sync: bool
    last_apply: float | None  # Unix seconds


@dataclass(frozen=True)
class StatsBaseline:
    """Counter values recorded by `stats --reset` for one rendering (digest)."""

    digest: str
    rules: tuple[tuple[str, tuple[str, ...], int, int], ...]  # (chain, sets, packets, bytes)
    blocked: tuple[tuple[str, int, int], ...]

    @classmethod
    def of(cls, digest: str, counters: LiveCounters) -> StatsBaseline:
        """The baseline that makes every current counter read zero."""
        return cls(
            digest,
            tuple((r.chain, r.sets, r.packets, r.bytes) for r in counters.rules),
            tuple((b.proto, b.port, b.packets) for b in counters.blocked),
        )

    def subtract(self, counters: LiveCounters) -> LiveCounters:
        """`counters` minus this baseline (never below zero: a counter may have restarted)."""
        rules = {(c, s): (p, b) for c, s, p, b in self.rules}
        blocked = {(proto, port): n for proto, port, n in self.blocked}
        return LiveCounters(
            rules=tuple(
                RuleCounter(
                    r.chain,
                    r.sets,
                    max(0, r.packets - rules.get((r.chain, r.sets), (0, 0))[0]),
                    max(0, r.bytes - rules.get((r.chain, r.sets), (0, 0))[1]),
                )
                for r in counters.rules
            ),
            blocked=tuple(
                BlockedPort(b.proto, b.port, max(0, b.packets - blocked.get((b.proto, b.port), 0)))
                for b in counters.blocked
            ),
        )


def _group(policy: Policy, number: int, proto: str, counted: Iterable[str]) -> tuple[str, ...]:
    """The generation-free set names that identify the rule(s) accepting for an entry.

    A `from` entry's sources may be in the shared `from4_tcp` set or, for a port range open
    to many sources, in a numbered set of its own (`from4_tcp_1`, render/nftables.py); any
    of those of its protocol and families may hold it, so all of them count (shared).
    """
    rule = policy.allow[number - 1]
    if rule.interface is not None or rule.limit is not None or rule.log:
        return (f"e{number}_ports",)
    if rule.sources is None:
        return (f"open_{proto}",)
    bases = [f"from{f}_{proto}" for f in (4, 6) if any(n.version == f for n in rule.sources)]
    numbered = sorted(
        n
        for n in counted
        for base in bases
        if n.startswith(f"{base}_") and n[len(base) + 1 :].isdigit()
    )
    return (*bases, *numbered)


def build_stats(
    policy: Policy | None,
    counters: LiveCounters,
    *,
    bans: int,
    in_sync: bool,
    last_apply: float | None,
) -> Stats:
    """Per-entry and blocked figures from the live counters and the policy in force."""
    totals: dict[str, tuple[int, int]] = {}
    dropped = denied = banned = 0
    for counted in counters.rules:
        if not counted.sets:
            dropped += counted.packets
            continue
        if counted.sets[0] in ("ban4", "ban6"):
            banned += counted.packets
            continue
        if counted.sets[0] in ("deny4", "deny6"):
            denied += counted.packets
            continue
        key = next(
            (n for n in counted.sets if n.endswith("_ports") or n.startswith(("open_", "from"))),
            None,
        )
        if key is not None:
            packets, size = totals.get(key, (0, 0))
            totals[key] = (packets + counted.packets, size + counted.bytes)
    entries: list[EntryStats] = []
    if policy is not None:
        groups = {
            (number, proto.value): _group(policy, number, proto.value, totals)
            for number, rule in enumerate(policy.allow, 1)
            for proto in rule.protos
        }
        for (number, proto), names in groups.items():
            rule = policy.allow[number - 1]
            sharing = sorted(
                {
                    policy.allow[other - 1].location.line
                    for (other, _), theirs in groups.items()
                    if other != number and set(theirs) & set(names)
                }
            )
            packets = sum(totals.get(n, (0, 0))[0] for n in names)
            size = sum(totals.get(n, (0, 0))[1] for n in names)
            entries.append(
                EntryStats(
                    rule.location.line,
                    rule.comment,
                    proto,
                    rule.ports_text(),
                    packets,
                    size,
                    tuple(sharing),
                )
            )
    by_port = sorted(
        ((b.proto, b.port, b.packets) for b in counters.blocked if b.packets),
        key=lambda item: (-item[2], item[0], item[1]),
    )
    return Stats(
        entries=tuple(entries),
        dropped_packets=dropped,
        dropped_by_port=tuple(by_port),
        denied_packets=denied,
        banned_packets=banned,
        bans=bans,
        in_sync=in_sync,
        last_apply=last_apply,
    )


def stats_json(stats: Stats, top: int | None = None) -> dict[str, object]:
    """`stats --format json`: entries, dropped (with by_port), denied, banned, bans."""
    ports = stats.dropped_by_port if top is None else stats.dropped_by_port[:top]
    return {
        "entries": [
            {
                "line": e.line,
                "comment": e.comment,
                "proto": e.proto,
                "ports": e.ports,
                "packets": e.packets,
                "bytes": e.bytes,
                "shared_with": list(e.shared_with),
            }
            for e in stats.entries
        ],
        "dropped": {
            "packets": stats.dropped_packets,
            "by_port": [{"proto": p, "port": port, "packets": n} for p, port, n in ports],
        },
        "denied": {"packets": stats.denied_packets},
        "banned": {"packets": stats.banned_packets, "bans": stats.bans},
        "in_sync": stats.in_sync,
        "last_apply": stats.last_apply,
    }


def _label(value: str) -> str:
    """A Prometheus label value, escaped (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def prometheus_text(stats: Stats) -> str:
    """node_exporter's textfile format (text exposition 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])

    family("portguard_entry_packets_total", "counter", "New connections accepted per allow entry.")
    for e in stats.entries:
        labels = _labels(line=str(e.line), comment=e.comment or "", proto=e.proto, ports=e.ports)
        lines.append(f"portguard_entry_packets_total{labels} {e.packets}")
    family("portguard_entry_bytes_total", "counter", "Bytes of the accepted first packets.")
    for e in stats.entries:
        labels = _labels(line=str(e.line), comment=e.comment or "", proto=e.proto, ports=e.ports)
        lines.append(f"portguard_entry_bytes_total{labels} {e.bytes}")
    family(
        "portguard_dropped_packets_total",
        "counter",
        "Blocked new connections per protocol and destination port.",
    )
    for proto, port, packets in stats.dropped_by_port:
        lines.append(
            f"portguard_dropped_packets_total{_labels(proto=proto, port=str(port))} {packets}"
        )
    family(
        "portguard_default_verdict_packets_total",
        "counter",
        "New packets that met the policy's default verdict (all protocols).",
    )
    lines.append(f"portguard_default_verdict_packets_total {stats.dropped_packets}")
    family("portguard_denied_packets_total", "counter", "New packets from deny: sources.")
    lines.append(f"portguard_denied_packets_total {stats.denied_packets}")
    family("portguard_banned_packets_total", "counter", "Packets from banned sources.")
    lines.append(f"portguard_banned_packets_total {stats.banned_packets}")
    family("portguard_bans", "gauge", "Runtime bans in force.")
    lines.append(f"portguard_bans {stats.bans}")
    family("portguard_ruleset_in_sync", "gauge", "1 when the live table is the applied one.")
    lines.append(f"portguard_ruleset_in_sync {int(stats.in_sync)}")
    family(
        "portguard_last_apply_timestamp_seconds", "gauge", "When the table in force was applied."
    )
    last = "NaN" if stats.last_apply is None or math.isnan(stats.last_apply) else stats.last_apply
    lines.append(f"portguard_last_apply_timestamp_seconds {last}")
    return "\n".join(lines) + "\n"
