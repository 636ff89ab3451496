"""New TCP connections and UDP round trips per second through `portguard enforce`, vs none.

Runs in throwaway host + scanner namespaces (tests/netns.py `lab()`), never in the machine's
own namespace. The port measured is open only `from` the scanner, so every SYN and every
datagram (both ways, for UDP) goes through the enforcer's user-space verdict. Prints the
rates and the ratio to the same run's baseline without an enforcer; never asserts.
"""

from __future__ import annotations

import json
import selectors
import signal
import sys
import tempfile
from pathlib import Path

from tests.netns import HOST_V4, SCANNER_V4, Lab, can_make_netns, lab, portguard_argv
from tests.probe import listeners

__all__ = ["main"]

PORT = 9000
COUNT = 400
POLICY = f"version: 1\nallow:\n  - port: {PORT}\n    proto: [tcp, udp]\n    from: [{SCANNER_V4}]\n"
CLIENT = """
import json, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
for _ in range(count):
    with socket.create_connection((host, port), timeout=2):
        pass
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


def main() -> None:
    """Measure with and without the enforcer in the same run and print the ratios."""
    if not can_make_netns():
        print("skipped: needs root to make throwaway namespaces")
        return
    with tempfile.TemporaryDirectory() as tmp, lab("pgde") as pair:
        policy = Path(tmp) / "bench.yaml"
        policy.write_text(POLICY)
        with listeners(pair.host, tcp=[PORT], udp=[PORT]):
            baseline = _measure(pair)
            proc = pair.host.popen(portguard_argv("enforce", str(policy)))
            try:
                assert proc.stderr is not None
                with selectors.DefaultSelector() as sel:
                    sel.register(proc.stderr, selectors.EVENT_READ)
                    sel.select(20)
                proc.stderr.readline()
                enforced = _measure(pair)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
    for key in ("tcp_per_s", "udp_rtt_per_s"):
        ratio = enforced[key] / baseline[key]
        print(
            f"{key}: baseline {baseline[key]:.0f}, enforced {enforced[key]:.0f}, ratio {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
