"""Issue 13: `parse_policy` + `render_table` of a big set file, against same-run baselines.

The policy allows port 22 from one set file of N non-adjacent /30s (bench/apply_cli.py's
`_write`), at 100,000 and 1,000,000 lines. Each timed run is a fresh child process (its peak
RSS, its VmHWM, is its own; imports happen before the clock starts): it loads the
policy (`parse_policy`, validation and lint included) and renders it (`render_table` and the
table's text). Two baselines run in the same interleaved rounds, so machine load hits all
alike: "read+split", a child that reads the set file and partitions each line at "/" in plain
Python (the floor of any line-by-line Python parser), and "nft -f", the kernel's own load of
the rendered replace transaction in a throwaway namespace (skipped without root, ip and nft).
`--root PATH` (repeatable) times other checkouts in the same rounds, e.g. an export of main
for the "before" column. Prints a table of seconds, ratios (median, min-max) and peak RSS;
never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from bench.apply_cli import _dotted, _timed
from tests.netns import Netns, can_make_netns, throwaway_netns

__all__ = ["Run", "main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100_000, 1_000_000)
ROUNDS = 3
CHUNK = 10_000

# The child that is timed: imports first, then the clock around load and render only.
LOAD_RENDER = """
import json, re, sys, time
from pathlib import Path
from portguard.policy.load import parse_policy
from portguard.render.nftables import render_table
path = Path(sys.argv[1])
data = path.read_bytes()
started = time.perf_counter()
loaded = parse_policy(data, str(path))
loaded_at = time.perf_counter()
text = render_table(loaded.policy).text()
done = time.perf_counter()
if len(sys.argv) > 2:
    Path(sys.argv[2]).write_text(text)
rss = int(re.search(r"VmHWM:\\s*(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024
print(json.dumps({"load": loaded_at - started, "render": done - loaded_at, "rss": rss}))
"""

# The plain-Python floor: read the same set file and split every line.
READ_SPLIT = """
import json, re, sys, time
started = time.perf_counter()
count = 0
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        address, _, prefix = line.strip().partition("/")
        count += bool(address)
seconds = time.perf_counter() - started
with open("/proc/self/status", encoding="utf-8") as status:
    rss = int(re.search(r"VmHWM:\\s*(\\d+)", status.read())[1]) / 1024
print(json.dumps({"load": seconds, "render": 0.0, "rss": rss}))
"""


@dataclass(frozen=True)
class Run:
    """One timed child: load and render seconds and peak RSS in MiB."""

    load: float
    render: float
    rss_mib: float

    @property
    def total(self) -> float:
        """Load and render together."""
        return self.load + self.render


def _child(code: str, root: Path, *args: str) -> Run:
    """Run `code` with `root` first on the import path; its own report."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.load_render: child in {root} failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return Run(float(report["load"]), float(report["render"]), float(report["rss"]))


def _nft(netns: Netns, batch: Path) -> Run:
    """`nft -f` of the replace transaction in the namespace (the table deleted first)."""
    netns.run(["nft", "delete", "table", "inet", "portguard"], check=False)
    sample = _timed(netns, ["nft", "-f", str(batch)], batch.parent)
    return Run(sample.seconds, 0.0, sample.rss_mib)


def _write(directory: Path, size: int) -> Path:
    """apply_cli's policy A over `size` non-adjacent /30s, the file written in chunks: this
    process stays small, so that no child's peak RSS (ru_maxrss survives a vfork's exec)
    and no nft -f figure carries it."""
    base = 10 << 24
    with (directory / "big.txt").open("w") as out:
        for first in range(0, size, CHUNK):
            stop = min(size, first + CHUNK)
            out.write("".join(f"{_dotted(base + 8 * n)}/30\n" for n in range(first, stop)))
    policy = directory / "a.yaml"
    policy.write_text(
        "version: 1\nsets:\n  big: {file: big.txt}\nallow:\n  - port: 22\n    from: ['@big']\n"
    )
    return policy


def measure(roots: list[Path], size: int, rounds: int, *, nft: bool) -> dict[str, list[Run]]:
    """Per column ("read+split", "nft -f", then each root), one Run per round, interleaved."""
    columns: dict[str, list[Run]] = {"read+split": []}
    if nft:
        columns["nft -f"] = []
    for root in roots:
        columns[str(root)] = []
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        policy = _write(directory, size)
        rendered = directory / "rendered.nft"
        _child(LOAD_RENDER, roots[0], str(policy), str(rendered))  # also warms the page cache
        batch = directory / "batch.nft"
        with batch.open("w") as out, rendered.open() as table:
            out.write("add table inet portguard\ndelete table inet portguard\n")
            shutil.copyfileobj(table, out)
        spaces: AbstractContextManager[Netns | None] = (
            throwaway_netns("pglr") if nft else nullcontext(None)
        )
        with spaces as netns:
            for _ in range(rounds):
                columns["read+split"].append(
                    _child(READ_SPLIT, roots[0], str(directory / "big.txt"))
                )
                if netns is not None:
                    columns["nft -f"].append(_nft(netns, batch))
                for root in roots:
                    columns[str(root)].append(_child(LOAD_RENDER, root, str(policy)))
            if netns is not None:
                netns.run(["nft", "delete", "table", "inet", "portguard"], check=False)
    return columns


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def _rows(size: int, columns: dict[str, list[Run]]) -> list[str]:
    """One table row per column; ratios are per round against that round's baselines."""
    floor = columns["read+split"]
    kernel = columns.get("nft -f")
    rows = []
    for name, runs in columns.items():
        load = statistics.median(r.load for r in runs)
        render = statistics.median(r.render for r in runs)
        total = statistics.median(r.total for r in runs)
        vs_floor = _spread([r.total / f.total for r, f in zip(runs, floor, strict=True)])
        vs_nft = (
            _spread([r.total / k.total for r, k in zip(runs, kernel, strict=True)])
            if kernel
            else "-"
        )
        rss = max(r.rss_mib for r in runs)
        rows.append(
            f"| {size:,} | {name} | {load:.3f} s | {render:.3f} s | {total:.3f} s"
            f" | {vs_floor} | {vs_nft} | {rss:.0f} MiB |"
        )
    return rows


def main() -> None:
    """Run the load+render benchmark at each size and print the table; never asserts."""
    parser = argparse.ArgumentParser(prog="python -m bench load_render")
    parser.add_argument(
        "--root", type=Path, action="append", help="checkout to time (repeatable; default: this)"
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--no-nft", action="store_true", help="skip the nft -f baseline")
    args, _ = parser.parse_known_args()
    roots = [r.resolve() for r in (args.root or [ROOT])]
    nft = not args.no_nft and can_make_netns()
    if not nft:
        print("bench.load_render: no nft -f baseline (needs root, ip and nft, or --no-nft)")
    print("| N CIDRs | what | load | render | load+render | vs read+split | vs nft -f | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for row in _rows(size, measure(roots, size, args.rounds, nft=nft)):
            print(row, flush=True)


if __name__ == "__main__":
    main()
