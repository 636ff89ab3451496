"""New TCP connections and UDP round trips per second through `portguard enforce`, vs none.

Runs in throwaway host + scanner namespaces (tests/netns.py `lab()`), never in the machine's
own namespace. The port measured is open only `from` the scanner, so every SYN and every
datagram from another source is dropped in the kernel, while the scanner's own connections
and datagrams (allowed, no `limit`) never leave the kernel. Runs alternate without and with
the enforcer (the machine is shared and its load moves); prints every ratio and the median
ratio; never asserts. Target: >= 0.9 for policies without `limit`.
"""

from __future__ import annotations

import json
import selectors
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from tests.netns import HOST_V4, SCANNER_V4, Lab, can_make_netns, lab, portguard_argv
from tests.probe import listeners

__all__ = ["main"]

PORT = 9000
COUNT = 3000
POLICY = f"version: 1\nallow:\n  - port: {PORT}\n    proto: [tcp, udp]\n    from: [{SCANNER_V4}]\n"
CLIENT = """
import json, socket, struct, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT, no ephemeral port exhaustion
start = time.perf_counter()
for _ in range(count):
    with socket.create_connection((host, port), timeout=2) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
tcp = time.perf_counter() - start
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
start = time.perf_counter()
for _ in range(count):
    u.sendto(b"x", (host, port))
    u.recv(64)
udp = time.perf_counter() - start
print(json.dumps({"tcp_per_s": count / tcp, "udp_rtt_per_s": count / udp}))
"""


def _measure(pair: Lab) -> dict[str, float]:
    done = pair.scanner.run([sys.executable, "-c", CLIENT, HOST_V4, str(PORT), str(COUNT)])
    result: dict[str, float] = json.loads(done.stdout)
    return result


ROUNDS = 9


def _enforced(pair: Lab, policy: Path) -> dict[str, float]:
    proc = pair.host.popen(portguard_argv("enforce", str(policy)))
    try:
        assert proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            sel.select(20)
        ready = proc.stderr.readline()
        if "enforcing" not in ready:
            raise RuntimeError(f"enforcer did not start: {ready}")
        return _measure(pair)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main() -> None:
    """Alternate runs without and with the enforcer; print each ratio and the median ratio."""
    if not can_make_netns():
        print("skipped: needs root to make throwaway namespaces")
        return
    ratios: dict[str, list[float]] = {"tcp_per_s": [], "udp_rtt_per_s": []}
    with tempfile.TemporaryDirectory() as tmp, lab("pgde") as pair:
        policy = Path(tmp) / "bench.yaml"
        policy.write_text(POLICY)
        with listeners(pair.host, tcp=[PORT], udp=[PORT]):
            for _ in range(ROUNDS):
                baseline = _measure(pair)
                enforced = _enforced(pair, policy)
                for key, values in ratios.items():
                    values.append(enforced[key] / baseline[key])
                    print(
                        f"{key}: baseline {baseline[key]:.0f}, enforced {enforced[key]:.0f},"
                        f" ratio {values[-1]:.2f}"
                    )
    for key, values in ratios.items():
        print(f"{key}: median ratio {statistics.median(values):.2f} over {ROUNDS} rounds")


if __name__ == "__main__":
    main()
