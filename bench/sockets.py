"""listening_sockets() vs `ss -Hltnp` on a busy namespace: 5k listeners, 60k connections.

Runs only inside a throwaway network namespace it creates (and deletes): the parent makes
the namespace and re-runs this module inside it with `--inside`, which refuses to run in the
machine's own namespace. Helper processes (started first, so their pids come before the
listeners' and their 120k descriptors are scanned too) each hold 5k established loopback
connections, both ends. Prints medians and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from portguard.facts import listening_sockets
from portguard.facts.sockets import query_sock_diag
from portguard.model import Proto
from tests.netns import can_make_netns, throwaway_netns

__all__ = ["hold_connections", "hold_listeners", "main", "run_inside"]

ROOT = Path(__file__).resolve().parent.parent
TCP_LISTENERS = 4000
UDP_SOCKETS = 1000
LISTEN_BASE = 40000
HELPERS = 12  # the hard RLIMIT_NOFILE here is 20000, so 5k connections (10k fds) each
CONNECTIONS_PER_HELPER = 5_000
HELPER_BASE = 30000
EPHEMERAL_PORTS = "10000 29999"
REPEATS = 7


def main() -> None:
    """Make a namespace, run the measurement inside it, print its report, delete it."""
    if not can_make_netns():
        print("bench.sockets: skipped (needs root with ip and nft for a throwaway namespace)")
        return
    with throwaway_netns("pgbs") as ns:
        result = ns.run(
            [sys.executable, "-m", "bench.sockets", "--inside"], timeout=900, check=False
        )
        print(result.stdout, end="")
        if result.returncode != 0:
            print(f"bench.sockets failed: {result.stderr.strip()}")


def _raise_fd_limit(wanted: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and wanted > hard:
        raise SystemExit(f"needs {wanted} descriptors per process; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _spawn(role: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sockets", role, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"{role} did not start: {line!r}")
    return proc


def hold_connections(port: int, count: int) -> None:
    """Listen on `port`, connect and accept `count` loopback connections, hold them."""
    _raise_fd_limit(2 * count + 100)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1024)
    held: list[socket.socket] = []
    for _ in range(count):
        held.append(socket.create_connection(("127.0.0.1", port)))
        held.append(server.accept()[0])
    print("ready", flush=True)
    sys.stdin.read()


def hold_listeners() -> None:
    """Hold the TCP listeners (IPv4 and IPv6) and bound UDP sockets, as one daemon would."""
    _raise_fd_limit(TCP_LISTENERS + UDP_SOCKETS + 100)
    with open("/proc/self/comm", "w", encoding="utf-8") as comm:
        comm.write("bench-listen")
    held: list[socket.socket] = []
    for index in range(TCP_LISTENERS):
        family = socket.AF_INET if index % 2 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind(("0.0.0.0" if index % 2 else "::", LISTEN_BASE + index))
        sock.listen(8)
        held.append(sock)
    for index in range(UDP_SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", LISTEN_BASE + index))
        held.append(sock)
    print("ready", flush=True)
    sys.stdin.read()


def _median_seconds(action: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def _all_diag() -> int:
    families = (socket.AF_INET, socket.AF_INET6)
    return sum(len(query_sock_diag(proto, family)) for proto in Proto for family in families)


def _ss(args: str) -> Callable[[], int]:
    def run() -> int:
        done = subprocess.run(["ss", args], capture_output=True, text=True, check=True)
        return len(done.stdout.splitlines())

    return run


def run_inside() -> None:
    """Build the busy namespace, time both, print the figures and ratios."""
    name = subprocess.run(
        ["ip", "netns", "identify", str(os.getpid())], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not name.startswith("pgbs-"):
        raise SystemExit("bench.sockets --inside runs only in a namespace made by bench.sockets")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Ephemeral ports of this namespace only, below the helpers' and listeners' ports.
    subprocess.run(
        ["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={EPHEMERAL_PORTS}"], check=True
    )
    helpers = [
        _spawn("--helper", str(HELPER_BASE + i), str(CONNECTIONS_PER_HELPER))
        for i in range(HELPERS)
    ]
    listener = _spawn("--listeners")
    try:
        ours_count = len(listening_sockets())
        established = subprocess.run(
            ["ss", "-Htn", "state", "established"], capture_output=True, text=True, check=True
        ).stdout.count("\n")
        ours = _median_seconds(listening_sockets)
        diag_only = _median_seconds(_all_diag)
        ss_tcp = _median_seconds(_ss("-Hltnp"))
        ss_all = _median_seconds(_ss("-Hltunp"))
        print(
            f"namespace: {ours_count} listening sockets (TCP + UDP), {established} established"
            f" TCP sockets; median of {REPEATS}"
        )
        print(f"listening_sockets() (TCP+UDP, pids): {ours * 1000:8.1f} ms")
        print(f"  of which sock_diag (no owners):    {diag_only * 1000:8.1f} ms")
        print(f"ss -Hltnp  (TCP only, pids):         {ss_tcp * 1000:8.1f} ms")
        print(f"ss -Hltunp (TCP+UDP, pids):          {ss_all * 1000:8.1f} ms")
        print(f"ratio vs ss -Hltnp:  {ours / ss_tcp:.2f}x (target <= 1.0x)")
        print(f"ratio vs ss -Hltunp: {ours / ss_all:.2f}x")
    finally:
        for proc in [*helpers, listener]:
            proc.kill()
            proc.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inside", action="store_true")
    parser.add_argument("--listeners", action="store_true")
    parser.add_argument("--helper", nargs=2, type=int, metavar=("PORT", "COUNT"))
    options = parser.parse_args()
    if options.inside:
        run_inside()
    elif options.listeners:
        hold_listeners()
    elif options.helper:
        hold_connections(*options.helper)
    else:
        main()
