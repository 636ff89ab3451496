"""Validate + lint at scale: the three cases of issue 9, each as ratios to a same-run baseline.

Cases: 10,000 one-port allow entries (each port twice); two entries on one port, each `from`
its own 20,000-CIDR set file (interleaved, disjoint); one entry `from` a 1,000,000-line set
file (half the lines with host bits set, so the warnings must be capped).

Each case runs in a fresh child process, so its peak RSS (getrusage ru_maxrss) is its own.
Two baselines, each in a child of its own: "read" is `yaml.safe_load` of the policy plus
reading the set files and splitting them into lines (`wc -l`); "parse" adds
`ipaddress.ip_network` of every set-file line, the least any validation must do. Prints
seconds, MiB and the ratios; never asserts. `--case NAME` runs one case in this process.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path

import yaml

from portguard.policy import load_policy

__all__ = ["CASES", "main", "make_case", "measure"]

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = 10_000
SET_CIDRS = 20_000
BIG_LINES = 1_000_000
CASES = ("entries-10k", "sets-2x20k", "setfile-1m")
SEED = 9


def _entries(directory: Path) -> tuple[Path, list[Path]]:
    lines = ["version: 1", "allow:"]
    lines += [f"  - port: {1 + n % (ENTRIES // 2)}" for n in range(ENTRIES)]  # each port twice
    policy = directory / "entries.yaml"
    policy.write_text("\n".join(lines) + "\n")
    return policy, []


def _sets(directory: Path) -> tuple[Path, list[Path]]:
    files = []
    for name, base in (("a", 10 << 24), ("b", (10 << 24) + 4)):  # interleaved, disjoint /30s
        path = directory / f"{name}.txt"
        path.write_text("".join(f"{_dotted(base + 8 * n)}/30\n" for n in range(SET_CIDRS)))
        files.append(path)
    policy = directory / "sets.yaml"
    policy.write_text(
        "version: 1\nsets:\n  a: {file: a.txt}\n  b: {file: b.txt}\nallow:\n"
        "  - port: 22\n    from: ['@a']\n  - port: 22\n    from: ['@b']\n"
    )
    return policy, files


def _big(directory: Path) -> tuple[Path, list[Path]]:
    rng = random.Random(SEED)
    path = directory / "big.txt"
    with path.open("w") as out:
        for n in range(BIG_LINES):
            address = _dotted(rng.getrandbits(32))
            out.write(f"{address}/24\n" if n % 2 else f"{address}\n")
    policy = directory / "big.yaml"
    policy.write_text("version: 1\nsets:\n  big: {file: big.txt}\nallow:\n")
    with policy.open("a") as out:
        out.write("  - port: 22\n    from: ['@big']\n")
    return policy, [path]


def _dotted(value: int) -> str:
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


MAKERS: dict[str, Callable[[Path], tuple[Path, list[Path]]]] = {
    "entries-10k": _entries,
    "sets-2x20k": _sets,
    "setfile-1m": _big,
}


def make_case(name: str, directory: Path) -> tuple[Path, list[Path]]:
    """Write case `name`'s policy (and set files) into `directory`."""
    return MAKERS[name](directory)


def _baseline(policy: Path, set_files: list[Path], *, parse: bool) -> int:
    """YAML-parse the policy and split the set files into lines; with `parse`, parse each."""
    yaml.safe_load(policy.read_text())
    count = 0
    for path in set_files:
        lines = path.read_text().splitlines()
        count += len(lines) if not parse else len([ip_network(x, strict=False) for x in lines])
    return count


def measure(name: str, directory: Path, *, baseline: str | None) -> dict[str, float]:
    """Run one case (or a baseline) in this process: seconds, peak RSS MiB, warnings."""
    policy, set_files = make_case(name, directory)
    started = time.perf_counter()
    if baseline is not None:
        _baseline(policy, set_files, parse=baseline == "parse")
        shown = omitted = 0
    else:
        loaded = load_policy(policy)
        shown, omitted = len(loaded.warnings), loaded.omitted_warnings
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "rss_mib": peak_mib, "shown": shown, "omitted": omitted}


def _child(name: str, *, baseline: str | None) -> dict[str, float]:
    args = [sys.executable, "-m", "bench.policy_scale", "--case", name]
    done = subprocess.run(
        [*args, "--baseline", baseline] if baseline else args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    """Each case and its baselines in fresh processes; print figures and ratios."""
    print("seconds and peak RSS (MiB) of load_policy (validate + lint) against two baselines")
    head = f"{'case':<12} {'load':>7} {'read':>6} {'parse':>6} {'x read':>7} {'x parse':>7}"
    print(f"{head} {'RSS':>5} {'read':>5} {'parse':>5} {'x parse':>7}  warnings shown/omitted")
    for name in CASES:
        case = _child(name, baseline=None)
        read = _child(name, baseline="read")
        parse = _child(name, baseline="parse")
        print(
            f"{name:<12} {case['seconds']:7.2f} {read['seconds']:6.2f} {parse['seconds']:6.2f}"
            f" {case['seconds'] / read['seconds']:6.1f}x {case['seconds'] / parse['seconds']:6.1f}x"
            f" {case['rss_mib']:5.0f} {read['rss_mib']:5.0f} {parse['rss_mib']:5.0f}"
            f" {case['rss_mib'] / parse['rss_mib']:6.1f}x"
            f"  {int(case['shown'])}/{int(case['omitted'])}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--baseline", choices=("read", "parse"))
    options = parser.parse_args()
    if options.case:
        with tempfile.TemporaryDirectory(prefix="pg-bench-") as scratch:
            figures = measure(options.case, Path(scratch), baseline=options.baseline)
        print(json.dumps(figures))
    else:
        main()
