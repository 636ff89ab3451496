"""Enforcement on real packets: a scanner namespace probes the host, verdict.py says what to see.

Every probe's expected outcome comes from portguard.verdict.verdict() (accept: open, or
refused when nothing listens; drop: filtered; reject: refused), so the semantics are stated
once. Before the policy is applied every probe must answer (open or refused): that control
shows the probes can tell a blocked port from an idle one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from portguard.model import Policy
from portguard.policy import load_policy
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab
from tests.probe import (
    FILTERED,
    OPEN,
    REFUSED,
    SCANNER_V4_EXTRA,
    SCANNER_V6_EXTRA,
    Probe,
    ProbeResult,
    apply_in_host,
    expected_outcome,
    listeners,
    prepare_lab,
    scan,
)

pytestmark = pytest.mark.netns

SOURCES = (SCANNER_V4, SCANNER_V4_EXTRA, SCANNER_V6, SCANNER_V6_EXTRA)


def _dst(source: str) -> str:
    return HOST_V6 if ":" in source else HOST_V4


def _probes(tcp: Sequence[int], udp: Sequence[int]) -> list[Probe]:
    return [Probe("tcp", _dst(src), port, src) for port in tcp for src in SOURCES] + [
        Probe("udp", _dst(src), port, src) for port in udp for src in SOURCES
    ]


def _write_policy(tmp_path: Path, text: str) -> tuple[Path, Policy]:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path, load_policy(path).policy


def _listening(result: ProbeResult, tcp: Sequence[int], udp: Sequence[int]) -> bool:
    return result.probe.port in (tcp if result.probe.proto == "tcp" else udp)


def _mismatches(
    policy: Policy,
    results: Sequence[ProbeResult],
    lab: Lab,
    tcp_listen: Sequence[int],
    udp_listen: Sequence[int],
) -> list[str]:
    wrong = []
    for result in results:
        listening = _listening(result, tcp_listen, udp_listen)
        want = expected_outcome(policy, result.probe, listening=listening, interface=lab.host_if)
        if result.outcome != want:
            wrong.append(f"{result.probe}: saw {result.outcome}, verdict.py says {want}")
    return wrong


def _enforce_and_compare(
    lab: Lab,
    tmp_path: Path,
    policy_text: str,
    tcp: tuple[Sequence[int], Sequence[int]],
    udp: tuple[Sequence[int], Sequence[int]],
) -> tuple[list[ProbeResult], list[ProbeResult]]:
    """Listen, probe (control), apply, probe again; assert both rounds; return both rounds."""
    (tcp_listen, tcp_probe), (udp_listen, udp_probe) = tcp, udp
    policy_file, policy = _write_policy(tmp_path, policy_text)
    prepare_lab(lab)
    probes = _probes(tcp_probe, udp_probe)
    with listeners(lab.host, tcp=tcp_listen, udp=udp_listen):
        before = scan(lab.scanner, probes)
        control = [
            f"{r.probe}: {r.outcome}"
            for r in before
            if r.outcome != (OPEN if _listening(r, tcp_listen, udp_listen) else REFUSED)
        ]
        assert control == [], "without rules every probe must answer:\n" + "\n".join(control)
        apply_in_host(lab, policy_file, tmp_path / "state")
        after = scan(lab.scanner, probes)
    wrong = _mismatches(policy, after, lab, tcp_listen, udp_listen)
    assert wrong == [], "\n".join(wrong)
    return before, after


def test_drop_policy_tcp_udp_both_families_from_and_range(net_lab: Lab, tmp_path: Path) -> None:
    """Allowed ports connect or refuse, blocked ones go silent; `from` and ranges are honoured."""
    policy = """\
version: 1
default: drop
allow:
  - port: 22
  - port: 80
    from: [192.0.2.3, "2001:db8:7::3"]
    comment: second scanner address only
  - port: [5353, 5360]
    proto: udp
  - port: 5354
    proto: udp
    from: [192.0.2.3/32, "2001:db8:7::3/128"]
    comment: second scanner address only
  - port: 8000-8010
  - port: 443
    proto: [tcp, udp]
"""
    tcp_listen = (22, 80, 443, 8000, 8010, 31337)
    tcp_probe = (*tcp_listen, 23, 7999, 8005, 8011)
    udp_listen = (443, 5353, 5354, 5355)
    udp_probe = (*udp_listen, 53, 5360)
    _, after = _enforce_and_compare(
        net_lab, tmp_path, policy, (tcp_listen, tcp_probe), (udp_listen, udp_probe)
    )
    seen = {(r.probe.proto, r.outcome) for r in after}
    assert seen == {(p, o) for p in ("tcp", "udp") for o in (OPEN, REFUSED, FILTERED)}
    by_source = {(r.probe.port, r.probe.src): r.outcome for r in after if r.probe.proto == "tcp"}
    assert by_source[80, SCANNER_V4] == FILTERED and by_source[80, SCANNER_V4_EXTRA] == OPEN


def test_interface_entries(net_lab: Lab, tmp_path: Path) -> None:
    """An entry naming the veth (exactly or by prefix) passes; one naming another does not."""
    policy = f"""\
version: 1
allow:
  - port: 9000
    interface: {net_lab.host_if}
  - port: 9001
    interface: eth9
  - port: 9002
    interface: "pg-*"
  - port: 9003
    proto: [tcp, udp]
    interface: "eth*"
  - port: 9004
    proto: udp
    interface: {net_lab.host_if}
"""
    ports = (9000, 9001, 9002, 9003, 9004)
    _, after = _enforce_and_compare(net_lab, tmp_path, policy, (ports, ports), (ports, ports))
    opened = sorted({(r.probe.proto, r.probe.port) for r in after if r.outcome == OPEN})
    assert opened == [("tcp", 9000), ("tcp", 9002), ("udp", 9004)]


def test_default_reject_answers_blocked_ports(net_lab: Lab, tmp_path: Path) -> None:
    """With `default: reject`, blocked TCP gets a reset and blocked UDP an ICMP unreachable."""
    policy = """\
version: 1
default: reject
allow:
  - port: 22
  - port: 53
    proto: udp
"""
    before, after = _enforce_and_compare(
        net_lab, tmp_path, policy, ((22, 80), (22, 80, 81)), ((53, 5353), (53, 5353, 5354))
    )
    turned = {
        (b.probe.proto, b.probe.port)
        for b, a in zip(before, after, strict=True)
        if (b.outcome, a.outcome) == (OPEN, REFUSED)
    }
    assert turned == {("tcp", 80), ("udp", 5353)}
    assert FILTERED not in {r.outcome for r in after}


def test_limit_per_source(net_lab: Lab, tmp_path: Path) -> None:
    """`limit: 3/hour`: three new connections per source connect, the fourth is filtered.

    Per hour rather than per minute, so that no token can come back however slow the
    machine is (3/minute refills one every 20 s).
    """
    policy_file, policy = _write_policy(
        tmp_path,
        "version: 1\nallow:\n  - port: 22\n    limit: 3/hour\n    comment: rate limited\n",
    )
    limit = policy.allow[0].limit
    assert limit is not None
    prepare_lab(net_lab)
    attempts = limit.count + 1
    probes = [Probe("tcp", _dst(src), 22, src) for src in SOURCES]
    with listeners(net_lab.host, tcp=(22,)):
        assert {r.outcome for r in scan(net_lab.scanner, probes)} == {OPEN}, "control"
        apply_in_host(net_lab, policy_file, tmp_path / "state")
        # Round by round, one new connection from every source at once: each source's
        # attempts stay in order, and the meters are per source, so rounds do not interfere.
        rounds = [scan(net_lab.scanner, probes) for _ in range(attempts)]
    wrong = []
    for number, results in enumerate(rounds, start=1):
        for result in results:
            want = expected_outcome(
                policy,
                result.probe,
                listening=True,
                interface=net_lab.host_if,
                over_limit=number > limit.count,
            )
            if result.outcome != want:
                wrong.append(f"attempt {number} {result.probe}: saw {result.outcome}, want {want}")
    assert wrong == [], "\n".join(wrong)
    assert [{r.outcome for r in results} for results in rounds] == [{OPEN}] * 3 + [{FILTERED}]
