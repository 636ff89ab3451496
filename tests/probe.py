"""Probing tools for tests and the demo: listeners on the host, probes from a scanner.

Each helper starts `tests/probe_agent.py` inside a namespace (`Netns.popen` / `Netns.run`)
and reads back what it saw; the agent holds the real sockets. See probe_agent for what
"open", "refused" and "filtered" mean.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.netns import Lab, Netns, portguard_argv
from tests.probe_agent import (
    DEFAULT_TIMEOUT,
    FILTERED,
    LATE,
    MAX_WORKERS,
    OPEN,
    REFUSED,
    Probe,
    expected_outcome,
    firewall_outcome,
)

__all__ = [
    "FILTERED",
    "OPEN",
    "REFUSED",
    "SCANNER_V4_EXTRA",
    "SCANNER_V6_EXTRA",
    "FlowResult",
    "Probe",
    "ProbeResult",
    "add_address",
    "apply_in_host",
    "expected_outcome",
    "finish_flow",
    "finish_watch",
    "listeners",
    "prepare_lab",
    "quiet_icmp_ratelimit",
    "scan",
    "start_flow",
    "start_watch",
]

AGENT_SCRIPT = Path(__file__).resolve().with_name("probe_agent.py")
READY_TIMEOUT = 10.0
# A second scanner address on each side of a `from` line (documentation ranges, veth only).
SCANNER_V4_EXTRA = "192.0.2.3"
SCANNER_V6_EXTRA = "2001:db8:7::3"


@dataclass(frozen=True)
class ProbeResult:
    """A probe and what came back: "open", "refused", "filtered", or an error name."""

    probe: Probe
    outcome: str
    late: bool = False  # a UDP echo that came only after the timeout; outcome is then "open"


@dataclass(frozen=True)
class FlowResult:
    """How a long-lived TCP flow went: round trips, retransmitted segments, longest round trip."""

    exchanges: int
    retransmits: int  # the client's tcpi_total_retrans: a dropped segment shows up here
    longest_round_trip: float  # seconds, for the record
    error: str | None


def _script_argv(*args: str) -> list[str]:
    return [sys.executable, str(AGENT_SCRIPT), *args]


def add_address(ns: Netns, ifname: str, cidr: str) -> None:
    """Add a second address to `ifname` in `ns` (IPv6 without duplicate detection)."""
    extra = ["nodad"] if ":" in cidr else []
    ns.run(["ip", "addr", "add", cidr, "dev", ifname, *extra])


def quiet_icmp_ratelimit(ns: Netns) -> None:
    """Turn off ICMP error rate limiting in `ns`, so every closed UDP port answers."""
    for setting in (
        "net.ipv4.icmp_ratemask=0",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv6.icmp.ratemask=",
        "net.ipv6.icmp.ratelimit=0",
    ):
        ns.run(["sysctl", "-q", "-w", setting])


def prepare_lab(lab: Lab) -> None:
    """Quiet the host's ICMP rate limit and give the scanner its second v4 and v6 address."""
    quiet_icmp_ratelimit(lab.host)
    add_address(lab.scanner, lab.scanner_if, f"{SCANNER_V4_EXTRA}/24")
    add_address(lab.scanner, lab.scanner_if, f"{SCANNER_V6_EXTRA}/64")


def apply_in_host(lab: Lab, policy_file: Path, state_dir: Path) -> None:
    """Run the real `portguard apply POLICY --yes --state-dir DIR` in the lab's host namespace."""
    argv = portguard_argv("apply", str(policy_file), "--yes", "--state-dir", str(state_dir))
    done = lab.host.run(argv, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"portguard apply failed ({done.returncode}): {done.stderr.strip()}")


@contextlib.contextmanager
def listeners(ns: Netns, tcp: Sequence[int] = (), udp: Sequence[int] = ()) -> Iterator[None]:
    """Dual-stack TCP listeners (echoing) and UDP echoes in `ns`, stopped on exit."""
    args = ["serve", "--tcp", _ports_arg(tcp), "--udp", _ports_arg(udp)]
    proc = ns.popen(_script_argv(*args))
    try:
        _wait_ready(proc)
        yield
    finally:
        _stop(proc)


def scan(ns: Netns, probes: Sequence[Probe], timeout: float = DEFAULT_TIMEOUT) -> list[ProbeResult]:
    """Run `probes` concurrently from `ns`; results in the same order as `probes`."""
    request = json.dumps([asdict(p) for p in probes])
    budget = timeout * (len(probes) // MAX_WORKERS + 2) + 30
    done = ns.run(
        _script_argv("scan", "--timeout", str(timeout)), input_text=request, timeout=budget
    )
    outcomes = json.loads(done.stdout)
    return [
        ProbeResult(p, firewall_outcome(o), late=o == LATE)
        for p, o in zip(probes, outcomes, strict=True)
    ]


@contextlib.contextmanager
def start_flow(
    ns: Netns, dst: str, port: int, interval: float = 0.005
) -> Iterator[subprocess.Popen[str]]:
    """A TCP connection from `ns` exchanging a message every `interval` s until stdin closes.

    Yields the process; `finish_flow` ends it and returns its FlowResult.
    """
    proc = ns.popen(_script_argv("flow", dst, str(port), "--interval", str(interval)))
    try:
        _wait_ready(proc)
        yield proc
    finally:
        _stop(proc)


def finish_flow(proc: subprocess.Popen[str]) -> FlowResult:
    """Ask a flow started by `start_flow` to stop, and return how it went."""
    report = _interrupt_for_report(proc)
    if not isinstance(report, dict):
        return FlowResult(0, -1, 0.0, f"no report from the flow process: {report}")
    return FlowResult(
        int(report["exchanges"]),
        int(report["retransmits"]),
        float(report["longest"]),
        report["error"],
    )


@contextlib.contextmanager
def start_watch(
    ns: Netns, probes: Sequence[Probe], timeout: float = DEFAULT_TIMEOUT
) -> Iterator[subprocess.Popen[str]]:
    """Probe each of `probes` over and over from `ns`, one thread each, until finish_watch."""
    request = json.dumps([asdict(p) for p in probes])
    proc = ns.popen(_script_argv("watch", "--timeout", str(timeout), request))
    try:
        _wait_ready(proc)
        yield proc
    finally:
        _stop(proc)


def finish_watch(proc: subprocess.Popen[str]) -> list[dict[str, int]]:
    """Stop a watch; for each probe, how often each outcome was seen (late echoes as open)."""
    report = _interrupt_for_report(proc)
    if not isinstance(report, list):
        raise RuntimeError(f"no report from the watch process: {report}")
    tallies: list[dict[str, int]] = []
    for counts in report:
        tally: dict[str, int] = {}
        for raw, count in counts.items():
            outcome = firewall_outcome(str(raw))
            tally[outcome] = tally.get(outcome, 0) + int(count)
        tallies.append(tally)
    return tallies


def _interrupt_for_report(proc: subprocess.Popen[str]) -> object:
    proc.send_signal(signal.SIGINT)  # the helper stops its loop and prints a JSON report
    out, err = proc.communicate(timeout=15)
    lines = [ln for ln in out.splitlines() if ln.startswith(("{", "["))]
    return json.loads(lines[-1]) if lines else err.strip()


def _ports_arg(ports: Sequence[int]) -> str:
    return ",".join(str(p) for p in ports)


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(READY_TIMEOUT):
            _stop(proc)
            raise RuntimeError("probe helper did not become ready")
    line = proc.stdout.readline()
    if line.strip() != "ready":
        err = proc.stderr.read() if proc.stderr else ""
        _stop(proc)
        raise RuntimeError(f"probe helper failed to start: {line.strip()} {err.strip()}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
