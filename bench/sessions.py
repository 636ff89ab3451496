"""The lockout guard's cost on a busy namespace: 100k established TCP connections.

Runs only inside a throwaway network namespace it creates (and deletes). Helper processes
hold 100k established connections (both ends) from 250 client addresses (10.0.0.0/24 on lo)
to ports 30000-30019, and one process named `sshd` listens on 22 with a few sessions. Two
policies are timed (median of 5): one that opens 30000-30019 to everyone (the kernel filter
leaves those connections in the kernel), and one that allows them from 192.0.2.0/24 only
(every connection crosses into Python and is judged). Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from portguard.facts.sessions import live_sessions
from portguard.facts.sockets import TCP_ESTABLISHED, _dump
from portguard.lockout import SessionsCut, sessions_cut
from portguard.model import Policy
from portguard.policy import parse_policy
from tests.netns import can_make_netns, throwaway_netns

__all__ = ["hold", "main", "run_inside"]

ROOT = Path(__file__).resolve().parent.parent
HELPERS = 20
PER_HELPER = 5_000  # 10k descriptors each; the hard RLIMIT_NOFILE here is 20000
BASE_PORT = 30000
REPEATS = 5
OPEN_TO_ALL = f"version: 1\nallow:\n  - port: 22\n  - port: {BASE_PORT}-{BASE_PORT + 19}\n"
SOURCE_LIMITED = (
    "version: 1\nallow:\n  - port: 22\n"
    f"  - port: {BASE_PORT}-{BASE_PORT + 19}\n    from: [192.0.2.0/24]\n"
)


def main() -> None:
    """Make a namespace, run the measurement inside it, print its report, delete it."""
    if not can_make_netns():
        print("bench.sessions: skipped (needs root with ip and nft for a throwaway namespace)")
        return
    with throwaway_netns("pgbe") as ns:
        argv = [sys.executable, "-m", "bench.sessions", "--inside"]
        done = ns.run(argv, timeout=900, check=False)
        print(done.stdout, end="")
        if done.returncode != 0:
            print(f"bench.sessions failed: {done.stderr.strip()}")


def hold(port: int, count: int, name: str) -> None:
    """Listen on `port` (process named `name`), make and accept `count` connections, hold them."""
    import resource  # noqa: PLC0415

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * count + 100), hard))
    with open("/proc/self/comm", "w", encoding="utf-8") as comm:
        comm.write(name)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(4096)
    held: list[socket.socket] = []
    for index in range(count):
        client = socket.socket()
        client.bind((f"10.0.0.{index % 250 + 1}", 0))
        client.connect(("10.0.0.254", port))
        held += [client, server.accept()[0]]
    print("ready", flush=True)
    sys.stdin.read()


def _spawn(port: int, count: int, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sessions", "--hold", str(port), str(count), name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"helper on port {port} did not start")
    return proc


def _median_ms(action: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def _guard(policy: Policy) -> SessionsCut:
    return sessions_cut(policy, live_sessions(policy))


def run_inside() -> None:
    """Build the busy namespace, time the guard for both policies, print the figures."""
    name = subprocess.run(
        ["ip", "netns", "identify", str(os.getpid())], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not name.startswith("pgbe-"):
        raise SystemExit("bench.sessions --inside runs only in a namespace made by bench.sessions")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.0.0.254/24", "dev", "lo"], check=True)
    helpers = [_spawn(22, 5, "sshd")]
    helpers += [_spawn(BASE_PORT + i % 20, PER_HELPER, "bench-web") for i in range(HELPERS)]
    try:
        everything = len(_dump(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_ESTABLISHED, b""))
        print(f"namespace: {everything} established TCP sockets; median of {REPEATS}")
        dump_ms = _median_ms(
            lambda: _dump(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_ESTABLISHED, b"")
        )
        print(f"unfiltered ESTABLISHED dump (kernel + recv): {dump_ms:8.1f} ms")
        ss_argv = ["ss", "-Htn", "state", "established"]
        ss_ms = _median_ms(lambda: subprocess.run(ss_argv, check=True, capture_output=True))
        print(f"ss -Htn state established:                 {ss_ms:8.1f} ms")
        for label, text in (("open to all", OPEN_TO_ALL), ("source-limited", SOURCE_LIMITED)):
            policy = parse_policy(text.encode(), f"{label}.yaml").policy
            found = live_sessions(policy)
            cut = sessions_cut(policy, found)
            total = _median_ms(partial(_guard, policy))
            print(
                f"guard, {label:15} {total:8.1f} ms  ({len(found)} sessions to judge,"
                f" {len(cut.other)} would be cut)"
            )
    finally:
        for proc in helpers:
            proc.kill()
            proc.wait(timeout=60)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inside", action="store_true")
    parser.add_argument("--hold", nargs=3, metavar=("PORT", "COUNT", "NAME"))
    options = parser.parse_args()
    if options.inside:
        run_inside()
    elif options.hold:
        hold(int(options.hold[0]), int(options.hold[1]), options.hold[2])
    else:
        main()
