"""Re-applying on real packets: nothing blocked leaks and no flow stalls over 31 applies.

Two policies alternate. Both allow tcp/22 and udp/53 and block tcp/31337 and udp/5353 (all
four listen); they differ in tcp/80 and in unrelated entries, so every apply really replaces
the table. Meanwhile the scanner probes continuously and keeps one TCP flow exchanging a
message every 5 ms. Allowed ports must always answer, blocked ports never, and the flow must never
retransmit. Until apply loaded the sets before swapping the rules (backends/nft_swap.py),
about one replace in 150 dropped a new packet to an allowed port here.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab
from tests.probe import (
    FILTERED,
    OPEN,
    Probe,
    apply_in_host,
    finish_flow,
    finish_watch,
    listeners,
    prepare_lab,
    scan,
    start_flow,
    start_watch,
)

pytestmark = pytest.mark.netns

APPLIES = 31  # odd: the loop starts and ends on policy B, the first apply was A
MAX_SECONDS = 120.0
WATCH_TIMEOUT = 1.0  # generous: a busy listener must not pass for a firewall drop
# A blocked probe waits out its timeout, so several watchers per blocked probe keep new
# packets arriving at every instant of the apply loop, as the allowed probes do.
BLOCKED_WATCHERS = 6
POLICY_A = """\
version: 1
allow:
  - port: [22, 80]
  - port: 53
    proto: udp
"""
POLICY_B = """\
version: 1
default: drop
allow:
  - port: 22
  - port: [53, 443]
    proto: [udp]
  - port: 8000-8100
    from: [192.0.2.0/24, "2001:db8:7::/64"]
    comment: the lab's own subnet
"""


def _watchers(outcome: str) -> int:
    return BLOCKED_WATCHERS if outcome == FILTERED else 1


def test_reapply_keeps_answers_and_flow(net_lab: Lab, tmp_path: Path) -> None:
    """31 alternating applies: blocked stays silent, allowed stays open, the flow never stalls."""
    prepare_lab(net_lab)
    files = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for path, text in zip(files, (POLICY_A, POLICY_B), strict=True):
        path.write_text(text, encoding="utf-8")
    state = tmp_path / "state"
    expected = {
        Probe("tcp", HOST_V4, 22, SCANNER_V4): OPEN,
        Probe("tcp", HOST_V6, 22, SCANNER_V6): OPEN,
        Probe("udp", HOST_V4, 53, SCANNER_V4): OPEN,
        Probe("udp", HOST_V6, 53, SCANNER_V6): OPEN,
        Probe("tcp", HOST_V4, 31337, SCANNER_V4): FILTERED,
        Probe("tcp", HOST_V6, 31337, SCANNER_V6): FILTERED,
        Probe("udp", HOST_V4, 5353, SCANNER_V4): FILTERED,
        Probe("udp", HOST_V6, 5353, SCANNER_V6): FILTERED,
    }
    watched = [p for p, want in expected.items() for _ in range(_watchers(want))]
    port_80 = [Probe("tcp", HOST_V4, 80, SCANNER_V4), Probe("tcp", HOST_V6, 80, SCANNER_V6)]
    with listeners(net_lab.host, tcp=(22, 80, 31337), udp=(53, 5353)):
        apply_in_host(net_lab, files[0], state)
        assert {r.outcome for r in scan(net_lab.scanner, port_80)} == {OPEN}
        started = time.monotonic()
        with (
            start_flow(net_lab.scanner, HOST_V4, 22) as flow,
            start_watch(net_lab.scanner, watched, WATCH_TIMEOUT) as watch,
        ):
            for number in range(1, APPLIES + 1):
                apply_in_host(net_lab, files[number % 2], state)
                assert time.monotonic() - started < MAX_SECONDS, "re-applies took too long"
            time.sleep(WATCH_TIMEOUT)  # let every watcher finish at least one probe after the last
            seen = finish_watch(watch)
            flow_result = finish_flow(flow)
        assert {r.outcome for r in scan(net_lab.scanner, port_80)} == {FILTERED}
    totals: dict[Probe, Counter[str]] = {probe: Counter() for probe in expected}
    for probe, counts in zip(watched, seen, strict=True):
        totals[probe].update(counts)
    wrong = {str(p): dict(c) for p, c in totals.items() if set(c) != {expected[p]}}
    assert wrong == {}, f"wrong answers while re-applying: {wrong}"
    assert min(c.total() for c in totals.values()) >= 10, f"too few probes: {totals}"
    assert flow_result.error is None
    assert flow_result.exchanges >= 100, flow_result
    assert flow_result.retransmits == 0, f"a flow segment was dropped: {flow_result}"
