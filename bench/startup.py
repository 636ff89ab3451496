"""P4: start-up of short commands against the least any Python / typer CLI pays.

Interleaved runs of `portguard render POLICY` and `portguard check --no-kernel POLICY`
(a bundled policy) and two baselines measured in the same rounds: a bare interpreter
(`python -c pass`) and `python -c "import typer"` (ufw is not installed here; like ufw,
portguard is a Python program, so a Python start-up is the floor). `--root PATH` times
another checkout's CLI (an export of main, for the "before" column). Never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "default.yaml"
ROUNDS = 15


def _once(argv: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    started = time.perf_counter()
    subprocess.run(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


def measure(root: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each command and baseline, interleaved."""
    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import typer'": [python, "-c", "import typer"],
        "portguard render": [python, "-m", "portguard", "render", str(POLICY)],
        "portguard check --no-kernel": [
            python, "-m", "portguard", "check", "--no-kernel", str(POLICY)
        ],
    }  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            samples[name].append(_once(argv, root if name.startswith("portguard") else ROOT))
    return samples


def main() -> None:
    """Run P4 and print its table of medians and ratios (min-max over rounds)."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose CLI to time")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args, _ = parser.parse_known_args()
    samples = measure(args.root.resolve(), args.rounds)
    base = samples["python -c 'import typer'"]
    print("| start-up | median | vs python -c 'import typer', median (min-max) |")
    print("|---|---|---|")
    for name, times in samples.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        print(
            f"| {name} | {statistics.median(times) * 1000:.0f} ms |"
            f" {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
