"""Socket judging (the lockout guard, `plan`, `ports --policy`) against `from` list sizes.

Two entries, each `from` its own set file of N non-adjacent /30s, and one UDP listener on
0.0.0.0: the time of `build_plan` for N = 1,000 and 10,000, in a child process of the
checkout named by `--root` (default this one; an export of main gives the "before").
Judging should not grow with N beyond the one-time index. Never asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1_000, 10_000)
CHILD = """
import sys, tempfile, time
from ipaddress import IPv4Network, ip_address
from pathlib import Path
from portguard.model import ListeningSocket, Proto
from portguard.plan import build_plan
from portguard.policy import parse_policy
size = int(sys.argv[1])
directory = Path(tempfile.mkdtemp())
for name, base in (("a", 10 << 24), ("b", (10 << 24) + 4)):
    lines = (f"{IPv4Network((base + 8 * n, 30))}" for n in range(size))
    (directory / f"{name}.txt").write_text("\\n".join(lines) + "\\n")
text = (
    "version: 1\\nsets:\\n  a: {file: a.txt}\\n  b: {file: b.txt}\\nallow:\\n"
    "  - port: 22\\n    from: ['@a']\\n  - port: 53\\n    proto: udp\\n    from: ['@b']\\n"
)
policy = parse_policy(text.encode(), str(directory / "p.yaml")).policy
sockets = [ListeningSocket(Proto.UDP, ip_address("0.0.0.0"), 53, None, None)]
started = time.perf_counter()
build_plan(policy, sockets, None, "")
print(time.perf_counter() - started)
"""


def judge_seconds(root: Path, size: int) -> float:
    """build_plan's seconds for the 2-entry policy of `size` CIDRs each, in `root`'s code."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(size)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return float(result.stdout.strip())


def main() -> None:
    """Print build_plan's time per list size (and the ratio to the smallest)."""
    parser = argparse.ArgumentParser(prog="python -m bench.judge")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code to time")
    args, _ = parser.parse_known_args()
    print("| judge 1 UDP listener, 2 entries x N sources | build_plan | vs N = 1,000 |")
    print("|---|---|---|")
    first = None
    for size in SIZES:
        seconds = judge_seconds(args.root.resolve(), size)
        first = first or seconds
        print(f"| N = {size:,} | {seconds:.3f} s | {seconds / first:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
