"""Apply 100k `from` CIDRs in one set: python-nftables transaction vs `nft -f`, same run.

Runs only inside a throwaway network namespace it creates (and deletes): the parent makes
the namespace and re-runs this module inside it with `--inside`, which refuses to run in the
machine's own namespace. Prints medians of a few repetitions and the ratios; never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portguard.apply import Target, execute, gather_facts, plan_change
from portguard.backends.nft_swap import load_table
from portguard.backends.nftables import open_kernel
from portguard.facts.ruleset import LiveTable, read_live_table
from portguard.policy import load_policy
from portguard.render.nftables import render_table, transaction
from portguard.state import StateDir

__all__ = ["main", "make_policy", "run_inside"]

DEFAULT_ELEMENTS = 100_000
DEFAULT_REPEAT = 5
TARGET_RATIO = 1.25
PORT = 22


@dataclass(frozen=True)
class Timing:
    """The median and every sample, in seconds, of one measured step."""

    name: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median of the samples."""
        return statistics.median(self.samples)


def make_policy(directory: Path, elements: int) -> Path:
    """Write a policy whose one entry allows port 22 from `elements` disjoint IPv4 /30s."""
    base = 10 << 24
    lines = (
        f"{(base + 8 * n) >> 24}.{((base + 8 * n) >> 16) & 255}.{((base + 8 * n) >> 8) & 255}."
        f"{(base + 8 * n) & 255}/30"
        for n in range(elements)
    )
    (directory / "big.txt").write_text("\n".join(lines) + "\n")
    policy = directory / "big.yaml"
    policy.write_text(
        "version: 1\nsets:\n  big: {file: big.txt}\n"
        f"allow:\n  - port: {PORT}\n    from: ['@big']\n    comment: bench\n"
    )
    return policy


def _time(name: str, repeat: int, step: Callable[[], object], reset: Callable[[], None]) -> Timing:
    samples = []
    for _ in range(repeat):
        reset()
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return Timing(name, tuple(samples))


def _time_pair(
    kind: str,
    repeat: int,
    baseline: Callable[[], object],
    candidate: Callable[[], object],
    reset: Callable[[], None],
) -> tuple[Timing, Timing]:
    """Interleave baseline and candidate runs so that machine noise hits both alike."""
    pairs = [
        (_time("", 1, baseline, reset).samples[0], _time("", 1, candidate, reset).samples[0])
        for _ in range(repeat)
    ]
    return (
        Timing(f"nft -f ({kind})", tuple(b for b, _ in pairs)),
        Timing(f"load_table, two cmd() batches ({kind})", tuple(c for _, c in pairs)),
    )


def _netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def run_inside(elements: int, repeat: int, outer_netns: int) -> list[Timing]:
    """Measure inside the current namespace (never `outer_netns`); return the timings."""
    if _netns_inode() == outer_netns:
        raise SystemExit("bench.apply_big: refusing to touch nftables in the host namespace")
    with tempfile.TemporaryDirectory(prefix="pgbench-") as temp:
        directory = Path(temp)
        policy_path = make_policy(directory, elements)
        started = time.perf_counter()
        table = render_table(load_policy(policy_path).policy)
        render_time = Timing("load + render the policy", (time.perf_counter() - started,))
        batch = directory / "batch.nft"
        batch.write_text(transaction(table.text()))
        target = Target(table, str(policy_path), policy_path.read_text())
        kernel = open_kernel()

        def nft_f() -> None:
            subprocess.run(["nft", "-f", str(batch)], check=True)

        live_now: list[LiveTable | None] = [None]  # the live table load_table is told of

        def fresh_state() -> None:
            kernel.delete_table()
            live_now[0] = None
            for record in directory.glob("state/*.json"):
                record.unlink()

        def load_once() -> None:
            kernel.delete_table()
            load_table(kernel, table, None)
            live_now[0] = read_live_table(kernel)

        state = StateDir(directory / "state")

        def portguard_apply() -> None:
            execute(plan_change(target, gather_facts(kernel, state)), kernel, state)

        def python_nftables() -> None:
            load_table(kernel, table, live_now[0])

        def list_live() -> None:
            read_live_table(kernel)

        timings = [
            render_time,
            *_time_pair("new table", repeat, nft_f, python_nftables, fresh_state),
            *_time_pair("replace table", repeat, nft_f, python_nftables, load_once),
            _time(
                "portguard facts + plan + execute (new table, list + record)",
                repeat,
                portguard_apply,
                fresh_state,
            ),
            _time(
                "live table facts (terse JSON + stateless list)", repeat, list_live, lambda: None
            ),
            _time("portguard re-apply, unchanged (no-op)", repeat, portguard_apply, lambda: None),
        ]
        live_table = read_live_table(kernel)
        live = (live_table.listing or "") if live_table is not None else ""
        count = sum(1 for line in live.splitlines() if f". {PORT}" in line)
        print(f"elements in the live set after the runs: ~{count} lines with '. {PORT}'")
        return timings


def _report(timings: list[Timing], elements: int) -> None:
    print(f"{elements} CIDRs in one concatenated interval set; median of the samples")
    for timing in timings:
        samples = ", ".join(f"{s:.3f}" for s in timing.samples)
        print(f"  {timing.name:55s} {timing.median:8.3f} s   [{samples}]")
    by_name = {t.name: t.median for t in timings}
    for kind in ("new table", "replace table"):
        ratio = by_name[f"load_table, two cmd() batches ({kind})"] / by_name[f"nft -f ({kind})"]
        verdict = "within" if ratio <= TARGET_RATIO else "OVER"
        print(
            f"  ratio load_table / nft -f ({kind}): {ratio:.2f}x"
            f" ({verdict} the {TARGET_RATIO}x target)"
        )
    full = by_name["portguard facts + plan + execute (new table, list + record)"]
    full_ratio = full / by_name["nft -f (new table)"]
    print(f"  ratio full portguard apply / nft -f (new table): {full_ratio:.2f}x")
    noop = by_name["portguard re-apply, unchanged (no-op)"]
    print(f"  ratio no-op re-apply / full apply: {noop / full:.3f}x")


def main(argv: list[str] | None = None) -> None:
    """Make a throwaway namespace, run the measurements in it, delete it, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.apply_big")
    parser.add_argument("--elements", type=int, default=DEFAULT_ELEMENTS)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--inside", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.inside:
        _report(run_inside(args.elements, args.repeat, args.inside), args.elements)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench.apply_big: needs root to make a network namespace")
    name = f"pgbench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                sys.executable,
                "-m",
                "bench.apply_big",
                "--inside",
                str(_netns_inode()),
                "--elements",
                str(args.elements),
                "--repeat",
                str(args.repeat),
            ],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    main(sys.argv[1:])
