"""P4: start-up of short commands against `ufw status` (ufw is also a Python program).

Interleaved rounds of `portguard render POLICY`, `check --no-kernel POLICY` (a bundled
policy), `--version` and `--help`, and the baselines measured in the same rounds: `ufw
status` when ufw is installed, `python -c "import typer"` (the least a typer CLI pays; the
baseline when ufw is missing) and a bare interpreter (`python -c pass`). As root, every
command runs through `ip netns exec` in one throwaway namespace, so that ufw's `iptables -L`
sees an empty namespace and never this machine's rules, and all rows pay the same
wrapper. `--root PATH` times another checkout's CLI (an export of main, for the "before"
column) and `--python PATH` another interpreter (a venv with other dependencies).
Never asserts. ufw from Debian (`apt-get install ufw`) is installed disabled
(ENABLED=no); see docs/benchmarks.md for installing it without starting anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.netns import can_make_netns, throwaway_netns

__all__ = ["commands", "main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "default.yaml"
ROUNDS = 15
UFW = "ufw status"
TYPER = "python -c 'import typer'"


def commands(python: str, ufw: str | None) -> dict[str, list[str]]:
    """Each timed command line by name, baselines first (ufw only when installed)."""
    portguard = [python, "-m", "portguard"]
    found = {"python -c pass": [python, "-c", "pass"], TYPER: [python, "-c", "import typer"]}
    if ufw is not None:
        found[UFW] = [ufw, "status"]
    found.update(
        {
            "portguard render": [*portguard, "render", str(POLICY)],
            "portguard check --no-kernel": [*portguard, "check", "--no-kernel", str(POLICY)],
            "portguard --version": [*portguard, "--version"],
            "portguard --help": [*portguard, "--help"],
        }
    )
    return found


def _once(argv: list[str], root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    subprocess.run(
        argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


@contextmanager
def _wrapper() -> Iterator[list[str]]:
    """`ip netns exec NS` of a throwaway namespace as root, else nothing."""
    if not can_make_netns():
        yield []
        return
    with throwaway_netns("pgst") as netns:
        yield ["ip", "netns", "exec", netns.name]


def measure(root: Path, python: str, rounds: int, ufw: str | None) -> dict[str, list[float]]:
    """Seconds per round for each command and baseline, interleaved."""
    lines = commands(python, ufw)
    samples: dict[str, list[float]] = {name: [] for name in lines}
    with _wrapper() as prefix:
        for _ in range(rounds):
            for name, argv in lines.items():
                samples[name].append(_once([*prefix, *argv], root))
    return samples


def main() -> None:
    """Run P4 and print its table of medians and ratios (min-max over rounds)."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose CLI to time")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run it with")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args, _ = parser.parse_known_args()
    ufw = shutil.which("ufw") if can_make_netns() else None  # only ever in a namespace
    if ufw is None:
        print("bench.startup: ufw not installed (or not root): baseline is " + TYPER)
    samples = measure(args.root.resolve(), args.python, args.rounds, ufw)
    baseline = UFW if ufw is not None else TYPER
    base = samples[baseline]
    print(f"| start-up | median | vs {baseline}, median (min-max) |")
    print("|---|---|---|")
    for name, times in samples.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        print(
            f"| {name} | {statistics.median(times) * 1000:.0f} ms |"
            f" {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
