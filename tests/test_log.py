"""`portguard log`: drops (`log: true`) and a logged entry's accepts, read over NFLOG.

The kernel log (nf_log) is off by default in a non-initial network namespace and host-wide
sysctls are not to be touched here, so the lab tests the NFLOG path (`log --follow`) with
real packets; the kernel-log path is tested on the kernel's own line format.
"""

from __future__ import annotations

import json
import subprocess
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from portguard.facts.nflog import parse_kernel_line, parse_packet, parse_prefix
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab, portguard_argv
from tests.probe import FILTERED, OPEN, Probe, apply_in_host, listeners, prepare_lab, scan

POLICY = """\
version: 1
log: true
allow:
  - port: 22
    log: true
  - port: 80
"""
BIND_WAIT = 2.0  # seconds for `log --follow` to bind its NFLOG group before probing
IDLE = 4.0
BLOCKED_PROBE_TIMEOUT = 0.5  # below the 1 s SYN retransmit: one logged SYN per probe


def test_prefixes_packets_and_kernel_lines() -> None:
    """portguard's prefixes, IPv4/IPv6 headers and an nf_log line parse; others are None."""
    assert parse_prefix("portguard: ") == ("drop", None)
    assert parse_prefix("portguard accept line 12: \0") == ("accept", 12)
    assert parse_prefix("ufw block: ") is None
    v4 = bytes.fromhex("450000280001000040060000c0000202c0000201") + bytes.fromhex("d4310017")
    assert parse_packet(v4) == ("tcp", ip_address(SCANNER_V4), ip_address(HOST_V4), 54321, 23)
    v6 = (
        bytes.fromhex("6000000000081140")
        + ip_address(SCANNER_V6).packed
        + ip_address(HOST_V6).packed
        + bytes.fromhex("d43114e9")
    )
    assert parse_packet(v6) == ("udp", ip_address(SCANNER_V6), ip_address(HOST_V6), 54321, 5353)
    line = (
        "portguard: IN=eth0 OUT= MAC=00:11 SRC=192.0.2.2 DST=192.0.2.1 LEN=60 TOS=0x00"
        " PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=23 WINDOW=64240 RES=0x00 SYN URGP=0"
    )
    event = parse_kernel_line(line, 1.0)
    assert event is not None
    assert (event.action, event.proto, str(event.source), event.dport, event.interface) == (
        "drop",
        "tcp",
        SCANNER_V4,
        23,
        "eth0",
    )
    assert parse_kernel_line("audit: something else", 1.0) is None


@pytest.mark.netns
def test_log_follow_reports_drops_and_logged_accepts(net_lab: Lab, tmp_path: Path) -> None:
    """From the scanner: a logged entry's new connection and two drops, as JSON events."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    prepare_lab(net_lab)
    with listeners(net_lab.host, tcp=(22, 80)):
        apply_in_host(net_lab, policy, tmp_path / "state")
        follower = net_lab.host.popen(
            portguard_argv("log", "--follow", "--format", "json", "--idle", str(IDLE))
        )
        try:
            time.sleep(BIND_WAIT)
            allowed = [Probe("tcp", HOST_V4, 22, SCANNER_V4), Probe("tcp", HOST_V6, 80, SCANNER_V6)]
            assert [r.outcome for r in scan(net_lab.scanner, allowed)] == [OPEN, OPEN]
            blocked = [
                Probe("tcp", HOST_V4, 23, SCANNER_V4),
                Probe("udp", HOST_V6, 5353, SCANNER_V6),
            ]
            outcomes = scan(net_lab.scanner, blocked, timeout=BLOCKED_PROBE_TIMEOUT)
            assert [r.outcome for r in outcomes] == [FILTERED, FILTERED]
            stdout, stderr = follower.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            follower.kill()
            raise
    assert follower.returncode == 0, stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    seen = {
        (e["action"], e["line"], e["proto"], e["source"], e["dport"])
        for e in events
        if e["proto"] in ("tcp", "udp")
    }
    assert seen == {
        ("accept", 4, "tcp", SCANNER_V4, 22),
        ("drop", None, "tcp", SCANNER_V4, 23),
        ("drop", None, "udp", SCANNER_V6, 5353),
    }
    assert all(e["interface"] == net_lab.host_if for e in events if e["proto"] == "tcp")
