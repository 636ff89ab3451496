"""The probing agent: what runs inside a namespace, as `python tests/probe_agent.py COMMAND`.

`serve` holds dual-stack TCP echo listeners and UDP echoes; `scan` probes a JSON list of
probes concurrently and prints the outcomes as JSON; `flow` keeps one TCP connection
exchanging messages; `watch` probes a list over and over until SIGINT; `compare` prints the
demo's before/after table. Outcomes are "open" (connected, or the UDP echo answered),
"refused" (TCP reset, or ICMP port unreachable) and "filtered" (no answer within the
timeout). A UDP echo that comes back within a grace period after the timeout is "late": the
datagram passed the firewall and only the listener was slow, so it counts as "open" (see
firewall_outcome), and a late echo from a blocked port is a leak. Any other error is
reported by its name, so a surprise shows up as a mismatch rather than being folded into
one of these. The agent imports nothing from `tests`, only the standard library and
portguard, so it runs as a plain script wherever the venv's Python runs.
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
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Literal

from portguard.model import Policy
from portguard.verdict import Packet, PacketProto, Verdict, verdict

__all__ = [
    "DEFAULT_TIMEOUT",
    "FILTERED",
    "LATE",
    "MAX_WORKERS",
    "OPEN",
    "REFUSED",
    "Probe",
    "expected_outcome",
    "firewall_outcome",
    "main",
]

OPEN = "open"
REFUSED = "refused"
FILTERED = "filtered"
# The UDP echo did come back, only after the timeout: the firewall let the datagram through
# and the listener was slow to answer (a loaded machine). Not a firewall verdict of its own.
LATE = "late"
LATE_GRACE = 2.0
PAYLOAD = b"portguard-probe"
DEFAULT_TIMEOUT = 2.0  # generous: on a loaded core an open port must not look filtered
MAX_WORKERS = 64
LISTEN_BACKLOG = 4096
DEMO_INTERFACE = "pg-host0"  # the host side of scripts/demo.sh's veth, as in tests.netns.lab
TCP_INFO_SIZE = 104
TCP_INFO_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans: 8 + 23 * 4
WATCH_INTERVAL = 0.01  # pause between a watcher's probes: the listener must keep up

Proto = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Probe:
    """One probe: protocol, destination address and port, and the source address to bind."""

    proto: Proto
    dst: str
    port: int
    src: str | None = None


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
            return _late_echo(sock) if probe.proto == "udp" else FILTERED
        except OSError as error:
            return errno.errorcode.get(error.errno or 0, type(error).__name__)


def firewall_outcome(raw: str) -> str:
    """The firewall's answer in an outcome: a late echo is "open" (the datagram got through)."""
    return OPEN if raw == LATE else raw


def _late_echo(sock: socket.socket) -> str:
    """After a UDP timeout, wait a little longer: a late echo passed the firewall."""
    sock.settimeout(LATE_GRACE)
    try:
        return LATE if sock.recv(2048) == PAYLOAD else "wrong-echo"
    except TimeoutError:
        return FILTERED
    except ConnectionRefusedError:
        return REFUSED
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
    for item, was_raw, now_raw in zip(probes, before, after, strict=True):
        probe = Probe(**item)
        was, now = firewall_outcome(was_raw), firewall_outcome(now_raw)
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
        {
            f"{p['proto']} {p['port']}"
            for p, o in zip(probes, after, strict=True)
            if firewall_outcome(o) == OPEN
        }
    )
    print(f"\nanswering after: {', '.join(answering) or 'nothing'}; {mismatches} mismatches")
    return 1 if mismatches else 0


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def main(argv: Sequence[str]) -> None:
    """Run one subcommand: serve, scan, flow, watch or compare."""
    parser = argparse.ArgumentParser(prog="probe_agent.py", description=__doc__)
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
    # flow and watch stop on SIGINT. A shell's background job starts with SIGINT ignored, and
    # then Python installs no handler of its own, so install it explicitly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
    main(sys.argv[1:])
