"""Real-socket probing between namespaces: listeners on the host, TCP/UDP probes from a scanner.

The controller side (tests, and scripts/demo.sh) runs this same file as a script inside a
namespace: `python tests/probe.py serve|scan|flow|watch|compare ...`. The script side needs
only the standard library and an importable portguard (the venv's Python has both). Outcomes
are "open" (connected, or the UDP echo answered), "refused" (TCP reset, or ICMP port
unreachable) and "filtered" (no answer within the timeout). Any other error is reported by
its name, so a surprise shows up as a mismatch rather than being folded into one of the three.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from portguard.model import Policy
from portguard.verdict import Packet, PacketProto, Verdict, verdict

if TYPE_CHECKING:
    from tests.netns import Lab, Netns

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

OPEN = "open"
REFUSED = "refused"
FILTERED = "filtered"
PROBE_SCRIPT = Path(__file__).resolve()
PAYLOAD = b"portguard-probe"
READY_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 0.8
MAX_WORKERS = 64
LISTEN_BACKLOG = 4096
DEMO_INTERFACE = "pg-host0"  # the host side of scripts/demo.sh's veth, as in tests.netns.lab
TCP_INFO_SIZE = 104
TCP_INFO_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans: 8 + 23 * 4
WATCH_INTERVAL = 0.01  # pause between a watcher's probes: the listener must keep up
# A second scanner address on each side of a `from` line (documentation ranges, veth only).
SCANNER_V4_EXTRA = "192.0.2.3"
SCANNER_V6_EXTRA = "2001:db8:7::3"

Proto = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Probe:
    """One probe: protocol, destination address and port, and the source address to bind."""

    proto: Proto
    dst: str
    port: int
    src: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """A probe and what came back: "open", "refused", "filtered", or an error name."""

    probe: Probe
    outcome: str


@dataclass(frozen=True)
class FlowResult:
    """How a long-lived TCP flow went: round trips, retransmitted segments, longest round trip."""

    exchanges: int
    retransmits: int  # the client's tcpi_total_retrans: a dropped segment shows up here
    longest_round_trip: float  # seconds, for the record
    error: str | None


# ---------------------------------------------------------------- controller side (tests, demo)


def _script_argv(*args: str) -> list[str]:
    return [sys.executable, str(PROBE_SCRIPT), *args]


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
    from tests.netns import portguard_argv  # noqa: PLC0415 - the script side has no `tests`

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
    return [ProbeResult(p, o) for p, o in zip(probes, outcomes, strict=True)]


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
    """Stop a watch; for each probe, how often each outcome was seen."""
    report = _interrupt_for_report(proc)
    if not isinstance(report, list):
        raise RuntimeError(f"no report from the watch process: {report}")
    return [{str(k): int(v) for k, v in counts.items()} for counts in report]


def _interrupt_for_report(proc: subprocess.Popen[str]) -> object:
    proc.send_signal(signal.SIGINT)  # the helper stops its loop and prints a JSON report
    out, err = proc.communicate(timeout=15)
    lines = [ln for ln in out.splitlines() if ln.startswith(("{", "["))]
    return json.loads(lines[-1]) if lines else err.strip()


def expected_outcome(
    policy: Policy, probe: Probe, *, listening: bool, interface: str, over_limit: bool = False
) -> str:
    """What `probe` should observe under `policy`, as portguard.verdict states it."""
    if probe.src is None:
        raise ValueError("the differential needs the probe's source address bound")
    packet = Packet(
        proto=PacketProto(probe.proto),
        source=ip_address(probe.src),
        interface=interface,
        dport=probe.port,
        over_limit=over_limit,
    )
    decided = verdict(policy, packet)
    if decided is Verdict.ACCEPT:
        return OPEN if listening else REFUSED
    return FILTERED if decided is Verdict.DROP else REFUSED


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


# ---------------------------------------------------------------- script side (in a namespace)


def _dual_stack(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.setblocking(False)
    return sock


def _serve(tcp: list[int], udp: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for port in tcp:
        server = _dual_stack(socket.SOCK_STREAM, port)
        server.listen(LISTEN_BACKLOG)
        sel.register(server, selectors.EVENT_READ, "accept")
    for port in udp:
        sel.register(_dual_stack(socket.SOCK_DGRAM, port), selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "accept":
                with contextlib.suppress(BlockingIOError):
                    conn, _ = sock.accept()
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "echo")
            elif key.data == "udp":
                with contextlib.suppress(BlockingIOError):
                    data, peer = sock.recvfrom(2048)
                    sock.sendto(data, peer)
            else:
                _echo(sel, sock)


def _echo(sel: selectors.BaseSelector, conn: socket.socket) -> None:
    try:
        data = conn.recv(4096)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        with contextlib.suppress(OSError):
            conn.sendall(data)
        return
    sel.unregister(conn)
    conn.close()


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _probe(probe: Probe, timeout: float) -> str:
    kind = socket.SOCK_STREAM if probe.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(_family(probe.dst), kind) as sock:
        sock.settimeout(timeout)
        if probe.src is not None:
            sock.bind((probe.src, 0))
        try:
            sock.connect((probe.dst, probe.port))
            if probe.proto == "udp":
                sock.send(PAYLOAD)
                return OPEN if sock.recv(2048) == PAYLOAD else "wrong-echo"
            return OPEN
        except ConnectionRefusedError:
            return REFUSED
        except TimeoutError:
            return FILTERED
        except OSError as error:
            return errno.errorcode.get(error.errno or 0, type(error).__name__)


def _scan(timeout: float) -> None:
    requested = [Probe(**item) for item in json.load(sys.stdin)]
    workers = max(1, min(MAX_WORKERS, len(requested)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda p: _probe(p, timeout), requested))
    json.dump(outcomes, sys.stdout)


def _flow(dst: str, port: int, interval: float) -> None:
    exchanges = 0
    retransmits = -1
    longest = 0.0
    error: str | None = None
    stop = threading.Event()
    ready_sent = False
    try:
        with socket.create_connection((dst, port), timeout=2.0) as conn:
            print("ready", flush=True)
            ready_sent = True
            try:
                while not stop.is_set():
                    message = f"ping {exchanges}\n".encode()
                    sent_at = time.monotonic()
                    conn.sendall(message)
                    received = b""
                    while len(received) < len(message):
                        chunk = conn.recv(len(message) - len(received))
                        if not chunk:
                            raise ConnectionResetError("peer closed the flow")
                        received += chunk
                    if received != message:
                        raise ValueError(f"echo mismatch after {exchanges} exchanges")
                    exchanges += 1
                    longest = max(longest, time.monotonic() - sent_at)
                    time.sleep(interval)
            except KeyboardInterrupt:
                pass
            retransmits = _total_retrans(conn)
    except (OSError, ValueError) as failure:
        if not ready_sent:
            print("ready", flush=True)  # let the controller go on; the report has the error
        error = f"{type(failure).__name__}: {failure}"
    report = {"exchanges": exchanges, "retransmits": retransmits, "longest": longest}
    print(json.dumps({**report, "error": error}), flush=True)


def _total_retrans(conn: socket.socket) -> int:
    """tcpi_total_retrans from Linux's struct tcp_info (8 bytes of u8 fields, then u32s)."""
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    (total,) = struct.unpack_from("I", info, TCP_INFO_TOTAL_RETRANS)
    return int(total)


def _watch(probes: list[Probe], timeout: float) -> None:
    stop = threading.Event()
    counts: list[dict[str, int]] = [{} for _ in probes]

    def repeat(index: int) -> None:
        while not stop.is_set():
            outcome = _probe(probes[index], timeout)
            counts[index][outcome] = counts[index].get(outcome, 0) + 1
            stop.wait(WATCH_INTERVAL)

    threads = [threading.Thread(target=repeat, args=(i,), daemon=True) for i in range(len(probes))]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout + 5)
    print(json.dumps(counts), flush=True)


def _compare(paths: list[str], tcp_listen: list[int], udp_listen: list[int], policy: str) -> int:
    from portguard.policy import load_policy  # noqa: PLC0415 - only this subcommand needs it

    loaded = load_policy(Path(policy)).policy
    probes, before, after = (json.loads(Path(path).read_text()) for path in paths)
    header = ("proto", "port", "address", "listening", "before", "after", "verdict.py says")
    rows: list[tuple[str, ...]] = [header]
    mismatches = 0
    for item, was, now in zip(probes, before, after, strict=True):
        probe = Probe(**item)
        listen = probe.port in (tcp_listen if probe.proto == "tcp" else udp_listen)
        want = expected_outcome(loaded, probe, listening=listen, interface=DEMO_INTERFACE)
        mismatches += now != want
        mark = want if now == want else f"{want}  <-- MISMATCH"
        rows.append((probe.proto, str(probe.port), probe.dst, "yes" if listen else "no", was, now))
        rows[-1] += (mark,)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    answering = sorted(
        {f"{p['proto']} {p['port']}" for p, o in zip(probes, after, strict=True) if o == OPEN}
    )
    print(f"\nanswering after: {', '.join(answering) or 'nothing'}; {mismatches} mismatches")
    return 1 if mismatches else 0


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def _main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="probe.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="dual-stack TCP echo listeners and UDP echoes")
    serve.add_argument("--tcp", type=_ports, default=[])
    serve.add_argument("--udp", type=_ports, default=[])
    scan_cmd = commands.add_parser("scan", help="probe a JSON list from stdin; JSON outcomes")
    scan_cmd.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    flow = commands.add_parser("flow", help="one TCP flow, a round trip every --interval s")
    flow.add_argument("dst")
    flow.add_argument("port", type=int)
    flow.add_argument("--interval", type=float, default=0.005)
    watch = commands.add_parser("watch", help="probe a JSON list repeatedly until SIGINT")
    watch.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    watch.add_argument("probes", type=json.loads)
    compare = commands.add_parser("compare", help="a before/after table of two scans")
    compare.add_argument("probes", help="the JSON probe list given to scan")
    compare.add_argument("before", help="scan's JSON output before")
    compare.add_argument("after", help="scan's JSON output after")
    compare.add_argument("--tcp", type=_ports, default=[], help="TCP ports with a listener")
    compare.add_argument("--udp", type=_ports, default=[], help="UDP ports with a listener")
    compare.add_argument("--policy", required=True, help="the applied policy, for verdict.py")
    args = parser.parse_args(argv)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            _serve(args.tcp, args.udp)
    elif args.command == "scan":
        _scan(args.timeout)
    elif args.command == "compare":
        sys.exit(_compare([args.probes, args.before, args.after], args.tcp, args.udp, args.policy))
    elif args.command == "watch":
        _watch([Probe(**item) for item in args.probes], args.timeout)
    else:
        _flow(args.dst, args.port, args.interval)


if __name__ == "__main__":
    _main(sys.argv[1:])
