"""Counters on real packets: `stats` counts new connections per entry and blocked ports.

The scanner opens N connections to an allowed port and M to blocked ones; `stats` must show
N (the first packet of each connection, not its later packets), M per blocked port in
`by_port`, a Prometheus file that prometheus_client's own parser reads, zero after
`--reset`, and counters must never make the table drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portguard.facts.counters import LiveCounters, RuleCounter, parse_counters
from portguard.policy import parse_policy
from portguard.stats import build_stats
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab, Netns, portguard_argv
from tests.probe import FILTERED, OPEN, Probe, apply_in_host, listeners, prepare_lab, scan

POLICY = """\
version: 1
allow:
  - port: 22
    comment: "ssh \\"admin\\" access"
  - port: 80
    from: [192.0.2.0/24, "2001:db8:7::/64"]
  - port: 8080
    limit: 100/second
"""
# The counters read over netlink (read_counters) and from the stateful listing, as JSON.
BOTH_READINGS = """
import dataclasses, json
from portguard.backends.nftables import open_kernel
from portguard.facts.counters import parse_counters, read_counters
kernel = open_kernel()
netlink = read_counters(kernel)
kernel.handle.set_stateless_output(False)
listing = parse_counters(kernel.stateful_listing())
print(json.dumps({"netlink": dataclasses.asdict(netlink), "listing": dataclasses.asdict(listing)}))
"""
ALLOWED_22 = 5
ALLOWED_80 = 3
BLOCKED_23 = 4
BLOCKED_UDP = 2
# A blocked SYN is retransmitted after 1 s; a shorter probe sends exactly one per connection.
BLOCKED_PROBE_TIMEOUT = 0.5


def test_parse_counters_reads_rules_and_blocked_elements() -> None:
    """Rule counters by the sets they name (suffix-free); blocked elements per proto/port."""
    listing = (
        "table inet portguard {\n\tset blocked_g1 {\n\t\ttype inet_proto . inet_service\n"
        "\t\tsize 4096\n\t\tflags dynamic,timeout\n\t\ttimeout 1d\n"
        "\t\telements = { tcp . 23 expires 23h59m58s counter packets 4 bytes 240,\n"
        "\t\t\t     udp . 5353 expires 23h59m counter packets 2 bytes 64 }\n\t}\n\n"
        "\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n"
        '\t\tiif "lo" accept comment "portguard rendering 0123"\n'
        "\t\tip saddr @ban4 counter packets 7 bytes 420 drop\n"
        "\t\ttcp dport @open_tcp_g1 counter packets 5 bytes 300 accept\n"
        "\t\tmeta nfproto ipv4 tcp dport @e3_ports_g1 update @e3_meter4_g1 { ip saddr limit"
        " rate 5/minute burst 5 packets } counter packets 2 bytes 120 accept\n"
        "\t\tct state new meta l4proto { tcp, udp } update @blocked_g1 { meta l4proto . th dport"
        " counter }\n\t\tcounter packets 9 bytes 540\n\t}\n}\n"
    )
    counters = parse_counters(listing)
    assert [(r.sets, r.packets, r.bytes) for r in counters.rules] == [
        (("ban4",), 7, 420),
        (("open_tcp",), 5, 300),
        (("e3_ports", "e3_meter4"), 2, 120),
        ((), 9, 540),
    ]
    assert [(b.proto, b.port, b.packets) for b in counters.blocked] == [
        ("tcp", 23, 4),
        ("udp", 5353, 2),
    ]


def _pg(ns: Netns, *args: str) -> str:
    done = ns.run(portguard_argv(*args), check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stats(lab: Lab, state: str) -> dict[str, object]:
    data = json.loads(_pg(lab.host, "stats", "--format", "json", "--state-dir", state))
    assert isinstance(data, dict)
    return data


def _entry_packets(data: dict[str, object]) -> dict[str, int]:
    entries = data["entries"]
    assert isinstance(entries, list)
    return {e["ports"]: e["packets"] for e in entries}


def _by_port(data: dict[str, object]) -> dict[tuple[str, int], int]:
    dropped = data["dropped"]
    assert isinstance(dropped, dict)
    return {(p["proto"], p["port"]): p["packets"] for p in dropped["by_port"]}


@pytest.mark.netns
def test_stats_count_new_connections_and_blocked_ports(net_lab: Lab, tmp_path: Path) -> None:
    """N allowed and M blocked connections show as N per entry and M per blocked port."""
    state = str(tmp_path / "state")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    prepare_lab(net_lab)
    with listeners(net_lab.host, tcp=(22, 80, 8080)):
        apply_in_host(net_lab, policy, tmp_path / "state")
        zero = _stats(net_lab, state)
        assert set(_entry_packets(zero).values()) == {0} and _by_port(zero) == {}
        allowed = [Probe("tcp", HOST_V4, 22, SCANNER_V4)] * (ALLOWED_22 - 2) + [
            Probe("tcp", HOST_V6, 22, SCANNER_V6)
        ] * 2
        allowed += [Probe("tcp", HOST_V4, 80, SCANNER_V4)] * ALLOWED_80
        assert {r.outcome for r in scan(net_lab.scanner, allowed)} == {OPEN}
        blocked = [Probe("tcp", HOST_V4, 23, SCANNER_V4)] * BLOCKED_23
        blocked += [Probe("udp", HOST_V6, 5353, SCANNER_V6)] * BLOCKED_UDP
        outcomes = scan(net_lab.scanner, blocked, timeout=BLOCKED_PROBE_TIMEOUT)
        assert {r.outcome for r in outcomes} == {FILTERED}
        data = _stats(net_lab, state)
        assert _entry_packets(data) == {"22": ALLOWED_22, "80": ALLOWED_80, "8080": 0}
        both = json.loads(net_lab.host.run([sys.executable, "-c", BOTH_READINGS]).stdout)
        assert both["netlink"] == both["listing"] and both["netlink"]["blocked"]
        assert _by_port(data) == {("tcp", 23): BLOCKED_23, ("udp", 5353): BLOCKED_UDP}
        dropped = data["dropped"]
        assert isinstance(dropped, dict)
        assert dropped["packets"] >= BLOCKED_23 + BLOCKED_UDP
        status = net_lab.host.run(
            portguard_argv("status", "--check", "--state-dir", state), check=False
        )
        assert status.returncode == 0, "counters must never be drift: " + status.stdout

        metrics = tmp_path / "metrics" / "portguard.prom"
        metrics.parent.mkdir()
        _pg(net_lab.host, "stats", "-f", "prometheus", "-o", str(metrics), "--state-dir", state)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.read_text(encoding="utf-8"))
            for s in family.samples
        }
        ssh = (("comment", 'ssh "admin" access'), ("line", "3"), ("ports", "22"), ("proto", "tcp"))
        assert samples["portguard_entry_packets_total", ssh] == ALLOWED_22
        port23 = (("port", "23"), ("proto", "tcp"))
        assert samples["portguard_dropped_packets_total", port23] == BLOCKED_23
        assert samples["portguard_ruleset_in_sync", ()] == 1
        assert samples["portguard_bans", ()] == 0
        assert samples["portguard_last_apply_timestamp_seconds", ()] > 1.7e9
        assert list(metrics.parent.iterdir()) == [metrics], "no temporary file may be left"

        assert "reset" in _pg(net_lab.host, "stats", "--reset", "--state-dir", state)
        after_reset = _stats(net_lab, state)
        assert set(_entry_packets(after_reset).values()) == {0}
        assert set(_by_port(after_reset).values()) <= {0}
        assert {r.outcome for r in scan(net_lab.scanner, allowed[:1])} == {OPEN}
        assert _entry_packets(_stats(net_lab, state))["22"] == 1


def test_an_entry_with_its_own_address_set_is_counted() -> None:
    """A `from` list over 64 sources has a numbered set and rule (`@from4_tcp_1`); its
    counter is the entry's, with the shared `@from4_tcp` rule's."""
    sources = ", ".join(f"10.0.{n}.0/24" for n in range(0, 200, 2))
    text = f"version: 1\nallow:\n  - port: 443\n    from: [{sources}]\n"
    policy = parse_policy(text.encode(), "big.yaml").policy
    counters = LiveCounters(
        rules=(
            RuleCounter("input", ("from4_tcp_1",), 7, 420),
            RuleCounter("input", ("from4_tcp",), 2, 120),
            RuleCounter("input", ("from4_udp_1",), 50, 3000),
        ),
        blocked=(),
    )
    stats = build_stats(policy, counters, bans=0, in_sync=True, last_apply=None)
    assert [(e.ports, e.packets) for e in stats.entries] == [("443", 9)]
