"""P2: the whole CLI `apply` (first load, replace, unchanged re-apply) against `nft -f`.

In a throwaway namespace: a policy allowing port 22 from N non-adjacent /30s (a set file),
and a second one that differs in one port. Each round times, interleaved so that machine
load hits both alike: `nft -f` of portguard's own rendered transaction (the baseline), then
`portguard apply` as a first load (no table, empty state dir), as a replace (the other
policy live), and unchanged (the same policy again). Ratios are against the round's
`nft -f`; peak RSS is the apply child's. `--root PATH` runs the CLI of another checkout
(e.g. an export of main, for the "before" column), rendered by that checkout too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.netns import Netns, can_make_netns, throwaway_netns

__all__ = ["Sample", "main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100_000,)
BIG = 1_000_000
ROUNDS = 3


@dataclass(frozen=True)
class Sample:
    """One timed child: seconds and peak RSS in MiB."""

    seconds: float
    rss_mib: float


def _dotted(address: int) -> str:
    return ".".join(str((address >> shift) & 255) for shift in (24, 16, 8, 0))


def _write(directory: Path, size: int) -> tuple[Path, Path]:
    """Policies A and B over one set file of `size` non-adjacent /30s (B adds port 2222)."""
    base = 10 << 24
    lines = (f"{_dotted(base + 8 * n)}/30\n" for n in range(size))
    (directory / "big.txt").write_text("".join(lines))
    head = "version: 1\nsets:\n  big: {file: big.txt}\nallow:\n"
    a, b = directory / "a.yaml", directory / "b.yaml"
    a.write_text(head + "  - port: 22\n    from: ['@big']\n")
    b.write_text(head + "  - port: [22, 2222]\n    from: ['@big']\n")
    return a, b


def _timed(netns: Netns, argv: list[str], cwd: Path) -> Sample:
    """Run `argv` in the namespace from `cwd`; its wall time and peak RSS (wait4)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    started = time.perf_counter()
    child = subprocess.Popen(
        ["ip", "netns", "exec", netns.name, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        errors = child.stderr.read() if child.stderr else b""
        raise SystemExit(f"bench.apply_cli: {argv} failed: {errors!r}")
    return Sample(seconds, usage.ru_maxrss / 1024)


def _apply(netns: Netns, root: Path, state: Path, policy: Path) -> Sample:
    argv = [sys.executable, "-m", "portguard", "apply", "--yes", "--state-dir", str(state)]
    return _timed(netns, [*argv, str(policy)], root)


def _transaction(root: Path, policy: Path, directory: Path) -> Path:
    """`root`'s rendering of `policy` as the replace transaction `nft -f` loads."""
    rendered = subprocess.run(
        [sys.executable, "-m", "portguard", "render", str(policy)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = directory / f"{policy.stem}.nft"
    path.write_text("add table inet portguard\ndelete table inet portguard\n" + rendered)
    return path


def measure(root: Path, size: int, rounds: int) -> dict[str, list[tuple[Sample, Sample]]]:
    """Per step, (apply sample, nft -f sample of the same round) for each round."""
    steps: dict[str, list[tuple[Sample, Sample]]] = {"first": [], "replace": [], "unchanged": []}
    with throwaway_netns("pgba") as netns, tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        a, b = _write(directory, size)
        batch_a = _transaction(root, a, directory)
        batch_b = _transaction(root, b, directory)
        for number in range(rounds):
            state = directory / f"state{number}"
            netns.run(["nft", "delete", "table", "inet", "portguard"], check=False)
            nft = _timed(netns, ["nft", "-f", str(batch_a)], root)
            nft_replace = _timed(netns, ["nft", "-f", str(batch_b)], root)  # over A's table
            netns.run(["nft", "delete", "table", "inet", "portguard"])
            steps["first"].append((_apply(netns, root, state, a), nft))
            steps["replace"].append((_apply(netns, root, state, b), nft_replace))
            steps["unchanged"].append((_apply(netns, root, state, b), nft))
        netns.run(["nft", "delete", "table", "inet", "portguard"], check=False)
    return steps


def _row(name: str, pairs: list[tuple[Sample, Sample]]) -> str:
    ratios = [apply.seconds / nft.seconds for apply, nft in pairs]
    seconds = statistics.median(a.seconds for a, _ in pairs)
    nft = statistics.median(n.seconds for _, n in pairs)
    rss = max(a.rss_mib for a, _ in pairs)
    return (
        f"| {name} | {seconds:.2f} s | {nft:.2f} s | {statistics.median(ratios):.2f}x"
        f" ({min(ratios):.2f}-{max(ratios):.2f}) | {rss:.0f} MiB |"
    )


def main() -> None:
    """Run P2 (and the 1M scale point) and print the table; never asserts."""
    parser = argparse.ArgumentParser(prog="python -m bench.apply_cli")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose CLI to time")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--big", type=int, default=BIG, help="the scale point (0: skip)")
    args, _ = parser.parse_known_args()
    if not can_make_netns():
        print("bench.apply_cli: skipped (needs root with ip and nft for a throwaway namespace)")
        return
    print("| apply of N CIDRs | portguard | nft -f same text | ratio (min-max) | peak RSS |")
    print("|---|---|---|---|---|")
    plan = [(size, args.rounds) for size in SIZES] + ([(args.big, 1)] if args.big else [])
    for size, rounds in plan:
        for step, pairs in measure(args.root.resolve(), size, rounds).items():
            print(_row(f"{size:,} {step}", pairs), flush=True)


if __name__ == "__main__":
    main()
