"""P1: per-packet cost of rendered rulesets: a UDP flood over veth, against an empty ruleset.

A host and a scanner namespace joined by veth (tests/netns.py's lab, removed afterwards).
The scanner floods 64-byte UDP datagrams at the host for a fixed time from one process;
veth delivers each datagram through the host's input hook in the sender's own context, so
the datagrams it sends per second of its own CPU time fall as the ruleset costs more per
packet (CPU time, not wall time: being descheduled on a busy machine is not counted). Each
configuration is measured right after an empty-ruleset baseline in the same round, and
reported as the ratio of the two rates (median and min-max over the rounds).

Configurations: 3 open ports; one entry `from` 10k and 100k CIDRs; 50 entries each `from`
1k CIDRs -- each rendered by this portguard (`new`) and with every `from` list kept in the
one concatenated `saddr . dport` set (`concat`, the shape before issue 13). The scanner's
address is in every list (allow path); "drop" configurations leave it out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from portguard.policy import load_policy
from portguard.render.nftables import PIECE_SOURCES_MAX, render_table, transaction
from tests.netns import HOST_V4, SCANNER_V4, Lab, can_make_netns, lab

__all__ = ["CONFIGS", "Config", "flood_rate", "main"]

PORT = 22
SECONDS = 1.5
ROUNDS = 3
FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
payload = bytes(18)  # 14 + 20 + 8 + 18 = 60 bytes on the wire, 64 with the FCS
end = time.perf_counter() + float(sys.argv[3])
cpu = time.process_time()
sent = 0
while time.perf_counter() < end:
    for _ in range(1000):
        try:
            s.send(payload)
        except OSError:
            pass
    sent += 1000
print(sent / (time.process_time() - cpu))
"""
SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
time.sleep(3600)
"""


@dataclass(frozen=True)
class Config:
    """One ruleset to measure: a name and how to write its policy in a directory."""

    name: str
    write: Callable[[Path], Path]
    concat: bool = False  # render every `from` list into the one concatenated set


def _cidrs(count: int, base: int, include_scanner: bool) -> str:
    """`count` non-adjacent /30s from `base` (an int), and the scanner's /32 when asked."""
    lines = [f"{_dotted(base + 8 * n)}/30" for n in range(count)]  # gaps: nothing merges
    if include_scanner:
        lines.append(f"{SCANNER_V4}/32")
    return "\n".join(lines) + "\n"


def _dotted(address: int) -> str:
    return ".".join(str((address >> shift) & 255) for shift in (24, 16, 8, 0))


def _open_ports(directory: Path) -> Path:
    path = directory / "open.yaml"
    path.write_text("version: 1\nallow:\n  - port: [22, 80, 443]\n    proto: [tcp, udp]\n")
    return path


def _one_entry(count: int, allow: bool = True) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        (directory / "big.txt").write_text(_cidrs(count, 10 << 24, allow))
        path = directory / "big.yaml"
        path.write_text(
            "version: 1\nsets:\n  big: {file: big.txt}\n"
            f"allow:\n  - port: {PORT}\n    proto: udp\n    from: ['@big']\n"
        )
        return path

    return write


def _many_entries(entries: int, count: int) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        lines = ["version: 1", "sets:"]
        allow = ["allow:"]
        for n in range(entries):
            base = (10 << 24) + n * 8 * count
            (directory / f"s{n}.txt").write_text(_cidrs(count, base, True))
            lines.append(f"  s{n}: {{file: s{n}.txt}}")
            port = PORT if n == entries - 1 else 1000 + n  # the flood's port is the last
            allow.append(f"  - port: {port}\n    proto: udp\n    from: ['@s{n}']")
        path = directory / "many.yaml"
        path.write_text("\n".join(lines + allow) + "\n")
        return path

    return write


CONFIGS = (
    Config("3 open ports", _open_ports),
    Config("from 10k, new", _one_entry(10_000)),
    Config("from 10k, concat", _one_entry(10_000), concat=True),
    Config("from 100k, new", _one_entry(100_000)),
    Config("from 100k, concat", _one_entry(100_000), concat=True),
    Config("from 100k, drop path, new", _one_entry(100_000, allow=False)),
    Config("from 100k, drop path, concat", _one_entry(100_000, allow=False), concat=True),
    Config("50 x from 1k, new", _many_entries(50, 1000)),
    Config("50 x from 1k, concat", _many_entries(50, 1000), concat=True),
)


def _render(config: Config, directory: Path) -> str:
    """The config's table as an `nft -f` transaction, in the shape the config names."""
    policy = load_policy(config.write(directory)).policy
    most = sys.maxsize if config.concat else PIECE_SOURCES_MAX  # concat: all in one set
    return transaction(render_table(policy, piece_sources_max=most).text())


def flood_rate(pair: Lab, seconds: float) -> float:
    """Datagrams one scanner process sends to the host's PORT per second of its CPU time.

    CPU time, not wall time: on a machine shared with other work the sender is often
    descheduled, and that must not count as per-packet cost.
    """
    result = pair.scanner.run(
        [sys.executable, "-c", FLOOD, HOST_V4, str(PORT), str(seconds)], timeout=seconds + 60
    )
    return float(result.stdout.strip())


@contextmanager
def _sink(pair: Lab) -> Iterator[None]:
    """A UDP socket on the host's PORT that never reads (the allow path ends there)."""
    process = pair.host.popen([sys.executable, "-c", SINK, str(PORT)])
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield
    finally:
        process.kill()
        process.wait()


def _load(pair: Lab, text: str | None, directory: Path) -> None:
    """Load `text` in the host namespace (None: delete portguard's table)."""
    if text is None:
        pair.host.run(["nft", "delete", "table", "inet", "portguard"], check=False)
        return
    batch = directory / "batch.nft"
    batch.write_text(text)
    pair.host.run(["nft", "-f", str(batch)], timeout=300)


def measure(rounds: int, seconds: float) -> list[tuple[str, list[float]]]:
    """Per config, the ratios (config pps / empty-ruleset pps right before it) per round."""
    results: list[tuple[str, list[float]]] = []
    with lab("pgpp") as pair, _sink(pair), tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        texts = [(c.name, _render(c, directory)) for c in CONFIGS]
        for name, text in texts:
            ratios = []
            for _ in range(rounds):
                _load(pair, None, directory)
                baseline = flood_rate(pair, seconds)
                _load(pair, text, directory)
                ratios.append(flood_rate(pair, seconds) / baseline)
            _load(pair, None, directory)
            results.append((name, ratios))
            print(f"  {name}: {_span(ratios)}", flush=True)
    return results


def _span(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    """Run P1 and print the table of ratios (never asserts)."""
    parser = argparse.ArgumentParser(prog="python -m bench.per_packet")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args, _ = parser.parse_known_args()
    if not can_make_netns():
        print("bench.per_packet: skipped (needs root with ip and nft for throwaway namespaces)")
        return
    started = time.perf_counter()
    results = measure(args.rounds, args.seconds)
    print("| ruleset | pps vs empty ruleset, median (min-max) |")
    print("|---|---|")
    for name, ratios in results:
        print(f"| {name} | {_span(ratios)} |")
    print(f"(P1 took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
