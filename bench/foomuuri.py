"""Foomuuri baseline: whole loads and per-packet cost of the same 100k-CIDR allow-list.

Foomuuri (a Python nftables firewall manager, GPL-2, not vendored: `--foomuuri PATH` or
$PORTGUARD_BENCH_FOOMUURI names a checkout; "skipped" without one) is run only inside
throwaway namespaces with its config and state under a scratch directory (bench/foomuuri_run).

Loads, interleaved per round (the order of the two tools alternates between rounds):
portguard `apply` of bench/apply_cli's policies (TCP 22 from 100k non-adjacent /30s; then
the replace adding port 2222) against Foomuuri with the same list as a file iplist. A file
iplist enters Foomuuri's ruleset from its state cache, which `start` alone never fills:
from an empty state dir the first load is `reload` (`start`, then `iplist refresh` reading
the file); once the cache is warm, `start` loads the whole table with the list in one
`nft -f` (Foomuuri's boot path). Per-packet: bench/foomuuri_packet.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.apply_cli import ROOT, Sample, _apply, _timed, _write
from bench.foomuuri_packet import measure_packets
from bench.foomuuri_run import Foomuuri, find_foomuuri, foomuuri_config
from tests.netns import Netns, can_make_netns, throwaway_netns

__all__ = ["main", "measure_loads"]

SIZE = 100_000
ROUNDS = 3
# (row, portguard step, Foomuuri step) compared round by round
ROWS = (
    ("first load: pg apply, empty state / Foomuuri reload, empty state", "first", "reload"),
    ("first load: pg apply, empty state / Foomuuri start, warm cache", "first", "start"),
    ("replace, changed policy: pg apply / Foomuuri start", "replace", "start changed"),
    ("replace, changed policy: pg apply / Foomuuri reload", "replace", "reload changed"),
)


def _clear(netns: Netns) -> None:
    """Delete both tools' tables from the namespace."""
    for table in ("portguard", "foomuuri"):
        netns.run(["nft", "delete", "table", "inet", table], check=False)


def _elements(netns: Netns) -> int:
    """How many /30s Foomuuri's @big set holds (proof that the list was loaded)."""
    listing = netns.run(["nft", "list", "set", "inet", "foomuuri", "big_4"], timeout=300)
    return listing.stdout.count("/30")


def _foomuuri_round(netns: Netns, tool: Foomuuri, work: Path, big: Path) -> dict[str, Sample]:
    """Foomuuri's four loads in one round: first (empty state), two replaces, warm start."""
    port22, port2222 = ["tcp 22 saddr @big"], ["tcp 22 saddr @big", "tcp 2222 saddr @big"]
    samples: dict[str, Sample] = {}
    for step, command, rules, clear in (
        ("reload", "reload", port22, True),
        ("start changed", "start", port2222, False),
        ("reload changed", "reload", port22, False),
        ("start", "start", port22, True),
    ):
        foomuuri_config(work, big, rules)
        if clear:
            _clear(netns)
        samples[step] = _timed(netns, tool.argv(work, command), ROOT)
        if _elements(netns) < SIZE:
            raise SystemExit(f"bench.foomuuri: Foomuuri {command} left @big without the list")
    return samples


def measure_loads(tool: Foomuuri, rounds: int) -> list[dict[str, Sample]]:
    """Per round, each step's sample, keyed "first"/"replace" (portguard) or Foomuuri's."""
    results: list[dict[str, Sample]] = []
    with throwaway_netns("pgfoa") as netns, tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        a, b = _write(directory, SIZE)
        for number in range(rounds):
            samples: dict[str, Sample] = {}
            for turn in (0, 1) if number % 2 == 0 else (1, 0):
                if turn == 0:
                    _clear(netns)
                    state = directory / f"pg{number}"
                    samples["first"] = _apply(netns, ROOT, state, a)
                    samples["replace"] = _apply(netns, ROOT, state, b)
                else:
                    work = directory / f"foomuuri{number}"
                    samples.update(_foomuuri_round(netns, tool, work, directory / "big.txt"))
            _clear(netns)
            results.append(samples)
            print(f"  round {number + 1}: " + _seconds(samples), flush=True)
    return results


def _seconds(samples: dict[str, Sample]) -> str:
    return ", ".join(f"{step} {sample.seconds:.2f} s" for step, sample in samples.items())


def _span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def _load_table(results: list[dict[str, Sample]]) -> None:
    print(f"| {SIZE:,} CIDRs | portguard | Foomuuri | portguard / Foomuuri (min-max) |")
    print("|---|---|---|---|")
    for row, ours, theirs in ROWS:
        pg = [r[ours].seconds for r in results]
        foo = [r[theirs].seconds for r in results]
        ratios = [p / f for p, f in zip(pg, foo, strict=True)]
        print(
            f"| {row} | {statistics.median(pg):.2f} s | {statistics.median(foo):.2f} s"
            f" | {_span(ratios)} |"
        )


def main() -> None:
    """Run the Foomuuri baseline (loads, then per packet) and print its tables; never asserts."""
    parser = argparse.ArgumentParser(prog="python -m bench.foomuuri")
    parser.add_argument("--foomuuri", help="Foomuuri checkout or script (else the env var)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=1.5, help="per flood")
    parser.add_argument("--skip-loads", action="store_true")
    parser.add_argument("--skip-packets", action="store_true")
    args, _ = parser.parse_known_args()
    tool = find_foomuuri(args.foomuuri)
    if isinstance(tool, str):
        print(f"bench.foomuuri: skipped ({tool})")
        return
    if not can_make_netns():
        print("bench.foomuuri: skipped (needs root with ip and nft for throwaway namespaces)")
        return
    started = time.perf_counter()
    if not args.skip_loads:
        _load_table(measure_loads(tool, args.rounds))
    if not args.skip_packets:
        packets = measure_packets(tool, args.rounds, args.seconds)
        print("| ruleset (UDP flood, one port) | pps vs empty ruleset, median (min-max) |")
        print("|---|---|")
        for name, ratios in packets:
            print(f"| {name} | {_span(ratios)} |")
    print(f"(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
