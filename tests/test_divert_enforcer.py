"""`portguard enforce` on real packets: pydivert's Linux (eBPF) backend in throwaway namespaces.

The host namespace runs the enforcer and real listeners; the scanner probes over veth. Every
expected outcome comes from portguard.verdict (tests/probe.py's expected_outcome), so the
enforcer is checked against the one meaning of a policy, not against a hand-written table.
"""

from __future__ import annotations

import json
import selectors
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from portguard.policy import load_policy
from tests.netns import (
    AS_NOBODY,
    HOST_V4,
    HOST_V6,
    SCANNER_V4,
    SCANNER_V6,
    Lab,
    Netns,
    portguard_argv,
)
from tests.probe import (
    FILTERED,
    OPEN,
    Probe,
    add_address,
    expected_outcome,
    listeners,
    quiet_icmp_ratelimit,
    scan,
)

pydivert = pytest.importorskip("pydivert")

pytestmark = pytest.mark.netns

OTHER_V4 = "192.0.2.3"  # a second scanner address, outside every `from`
OTHER_V6 = "2001:db8:7::3"
READY_TIMEOUT = 20.0
# Each SYN goes through a Python process; on 2 shared cores 0.8 s was sometimes too short.
PROBE_TIMEOUT = 4.0  # every SYN passes through a Python process on shared cores

MIXED_POLICY = f"""\
version: 1
default: drop
icmp: essential
sets:
  none: []
allow:
  - port: [8081, 8090-8092]
  - port: 5353
    proto: udp
  - port: [9000, 9100-9101]
    proto: [tcp, udp]
    from: [{SCANNER_V4}, "{SCANNER_V6}"]
  - port: 8200
    interface: pg-host*
  - port: 8201
    interface: eth9
  - port: 8202
    proto: [tcp, udp]
    interface: "Ethernet 2"
  - port: 8203
    proto: [tcp, udp]
    from: ["@none"]
    interface: pg-host*
"""
TCP_LISTENING = [8081, 8090, 9000, 9100, 8200, 8201, 8202, 8203, 7000]
UDP_LISTENING = [5353, 9000, 9100, 7001, 8202, 8203, 68, 546]
TCP_PROBED = [*TCP_LISTENING, 8091, 9101, 7002, 22]
UDP_PROBED = [*UDP_LISTENING, 9101, 7003]


@contextmanager
def enforcer(host: Netns, policy_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`portguard enforce` running in `host`, ready to judge packets; stopped on exit."""
    proc = host.popen(portguard_argv("enforce", str(policy_path)))
    try:
        assert proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            if not sel.select(READY_TIMEOUT):
                pytest.fail("enforcer did not become ready")
        line = proc.stderr.readline()
        while ": warning: " in line:  # the policy's lint warnings come first
            line = proc.stderr.readline()
        assert "enforcing" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _probes(tcp: list[int], udp: list[int]) -> list[Probe]:
    sources = [
        (HOST_V4, SCANNER_V4),
        (HOST_V4, OTHER_V4),
        (HOST_V6, SCANNER_V6),
        (HOST_V6, OTHER_V6),
    ]
    return [
        *(Probe("tcp", dst, port, src) for dst, src in sources for port in tcp),
        *(Probe("udp", dst, port, src) for dst, src in sources for port in udp),
    ]


def _prepare(net_lab: Lab) -> None:
    add_address(net_lab.scanner, net_lab.scanner_if, f"{OTHER_V4}/24")
    add_address(net_lab.scanner, net_lab.scanner_if, f"{OTHER_V6}/64")
    quiet_icmp_ratelimit(net_lab.host)
    _pin_neighbours(net_lab)


def _pin_neighbours(net_lab: Lab) -> None:
    """Permanent ARP/ND entries both ways: the probes test the enforcer, not neighbour discovery.

    On a loaded core the Python enforcer can hold up the host long enough that a burst of
    probes saw EHOSTUNREACH (ARP gave up after 3 s) instead of an answer.
    """
    host_mac = _mac(net_lab.host, net_lab.host_if)
    scanner_mac = _mac(net_lab.scanner, net_lab.scanner_if)
    for address in (HOST_V4, HOST_V6):
        net_lab.scanner.run(
            [
                "ip",
                "neigh",
                "replace",
                address,
                "lladdr",
                host_mac,
                "dev",
                net_lab.scanner_if,
                "nud",
                "permanent",
            ]
        )
    for address in (SCANNER_V4, OTHER_V4, SCANNER_V6, OTHER_V6):
        net_lab.host.run(
            [
                "ip",
                "neigh",
                "replace",
                address,
                "lladdr",
                scanner_mac,
                "dev",
                net_lab.host_if,
                "nud",
                "permanent",
            ]
        )


def _mac(ns: Netns, ifname: str) -> str:
    """The link-layer address of `ifname` in `ns`."""
    return str(json.loads(ns.run(["ip", "-j", "link", "show", "dev", ifname]).stdout)[0]["address"])


def test_enforcer_matches_verdict_on_real_packets(net_lab: Lab, tmp_path: Path) -> None:
    """TCP/UDP, v4/v6, ranges, from, interface, an alias, an empty set, DHCP: as verdict says."""
    _prepare(net_lab)
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED_POLICY)
    policy = load_policy(path).policy
    probes = _probes(TCP_PROBED, UDP_PROBED)
    with listeners(net_lab.host, tcp=TCP_LISTENING, udp=UDP_LISTENING):
        with enforcer(net_lab.host, path) as proc:
            results = scan(net_lab.scanner, probes, PROBE_TIMEOUT)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            assert proc.returncode == 0
            assert proc.stderr is not None
            assert "stopped;" in proc.stderr.read()
        # After SIGTERM the filter is gone: a blocked listener answers again.
        after = scan(net_lab.scanner, [Probe("tcp", HOST_V4, 7000, OTHER_V4)], PROBE_TIMEOUT)
    listening = {"tcp": set(TCP_LISTENING), "udp": set(UDP_LISTENING)}
    expected = [
        expected_outcome(
            policy, p, listening=p.port in listening[p.proto], interface=net_lab.host_if
        )
        for p in probes
    ]
    mismatches = [
        (r.probe, r.outcome, e) for r, e in zip(results, expected, strict=True) if r.outcome != e
    ]
    assert mismatches == []
    assert {r.outcome for r in results} >= {OPEN, FILTERED, "refused"}
    assert after[0].outcome == OPEN


@pytest.mark.parametrize("allowed_count", [60, 400], ids=["range-filter", "coarse-filter"])
def test_enforcer_with_many_allowed_ports(net_lab: Lab, tmp_path: Path, allowed_count: int) -> None:
    """Many single allowed ports (the `!=`-chain trap): allowed stay open, the gaps are dropped."""
    _prepare(net_lab)
    allowed = [10000 + 2 * i for i in range(allowed_count)]  # every other port: many gaps
    path = tmp_path / "many.yaml"
    path.write_text(f"version: 1\nallow:\n  - port: {allowed}\n    proto: [tcp, udp]\n")
    policy = load_policy(path).policy
    sample = [*allowed[:: max(1, allowed_count // 20)], allowed[-1]]
    tcp = sorted({*sample, *(p + 1 for p in sample), 9999, allowed[-1] + 3})
    probes = [Probe("tcp", HOST_V4, p, SCANNER_V4) for p in tcp]
    probes += [Probe("udp", HOST_V6, p, SCANNER_V6) for p in tcp]
    with listeners(net_lab.host, tcp=tcp, udp=tcp), enforcer(net_lab.host, path):
        results = scan(net_lab.scanner, probes, PROBE_TIMEOUT)
    expected = [
        expected_outcome(policy, p, listening=True, interface=net_lab.host_if) for p in probes
    ]
    assert [r.outcome for r in results] == expected
    assert expected.count(OPEN) == 2 * len(set(sample))


def test_enforcer_applies_limit_per_source(net_lab: Lab, tmp_path: Path) -> None:
    """`limit: 2/minute`: the first two new connections from a source pass, the third is dropped."""
    _prepare(net_lab)
    path = tmp_path / "limit.yaml"
    path.write_text("version: 1\nallow:\n  - port: 8300\n    limit: 2/minute\n")
    policy = load_policy(path).policy
    probe = Probe("tcp", HOST_V4, 8300, SCANNER_V4)
    other = Probe("tcp", HOST_V4, 8300, OTHER_V4)
    with listeners(net_lab.host, tcp=[8300]), enforcer(net_lab.host, path):
        outcomes = [scan(net_lab.scanner, [probe], PROBE_TIMEOUT)[0].outcome for _ in range(3)]
        fresh_source = scan(net_lab.scanner, [other], PROBE_TIMEOUT)[0].outcome
    within = expected_outcome(policy, probe, listening=True, interface=net_lab.host_if)
    over = expected_outcome(
        policy, probe, listening=True, interface=net_lab.host_if, over_limit=True
    )
    assert outcomes == [within, within, over]
    assert (within, over) == (OPEN, FILTERED)
    assert fresh_source == within


def test_enforce_without_root_says_so_in_one_line(netns: Netns) -> None:
    """As an unprivileged user, enforce exits 1 with one line naming root, diverting nothing."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop root")
    drop = list(AS_NOBODY)
    policy = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    done = netns.run([*drop, *portguard_argv("enforce", str(policy))], check=False, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "enforce needs root (CAP_BPF and CAP_NET_ADMIN); run as root"
    ]


def test_replies_to_the_hosts_own_udp_pass(net_lab: Lab, tmp_path: Path) -> None:
    """With no UDP allowed, the answer to the host's own datagram is established and passes."""
    # No second scanner address here: the echo's source must be the address the host asked.
    path = tmp_path / "no-udp.yaml"
    path.write_text("version: 1\nallow:\n  - port: 22\n")
    outbound = [Probe("udp", SCANNER_V4, 5353, HOST_V4), Probe("udp", SCANNER_V6, 5353, HOST_V6)]
    inbound = [Probe("udp", HOST_V4, 5353, SCANNER_V4)]
    with (
        listeners(net_lab.scanner, udp=[5353]),
        listeners(net_lab.host, udp=[5353]),
        enforcer(net_lab.host, path),
    ):
        replies = scan(net_lab.host, outbound, PROBE_TIMEOUT)
        unsolicited = scan(net_lab.scanner, inbound, PROBE_TIMEOUT)
    assert [r.outcome for r in replies] == [OPEN, OPEN]
    assert [r.outcome for r in unsolicited] == [FILTERED]
