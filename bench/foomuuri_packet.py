"""Per-packet part of the Foomuuri baseline: bench/per_packet's UDP flood, both tools' rulesets.

The same 100k non-adjacent /30s (plus the scanner's /32 on the allow path) open UDP 22,
the port per_packet floods: portguard's rendering of per_packet's one-entry policy, loaded
with `nft -f`, and Foomuuri's own generated ruleset, loaded by `foomuuri start` in the
host namespace (its cache filled once by `reload`) -- as shipped (rpfilter on) and with
`--set=rpfilter=no`, since portguard does no reverse-path check. Rounds are the outer
loop; within a round every configuration is measured right after an empty-ruleset
baseline. Derived rows divide two configurations' ratios round by round.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.foomuuri_run import Foomuuri, foomuuri_config
from bench.per_packet import CONFIGS, _load, _render, _sink, flood_rate
from tests.netns import Lab, lab

__all__ = ["measure_packets"]

RPFILTER_OFF = "--set=rpfilter=no"
# derived rows: (name, numerator config, denominator config)
DERIVED = (
    ("portguard from 100k / Foomuuri from 100k", "portguard from 100k", "Foomuuri from 100k"),
    (
        "portguard from 100k / Foomuuri from 100k, rpfilter no",
        "portguard from 100k",
        "Foomuuri from 100k, rpfilter no",
    ),
    ("portguard from 100k / portguard 3 open ports", "portguard from 100k", "portguard 3 ports"),
    (
        "portguard drop path / Foomuuri drop path",
        "portguard from 100k, drop path",
        "Foomuuri from 100k, drop path",
    ),
)


@dataclass(frozen=True)
class Ruleset:
    """One configuration: a name, how to load it in the host namespace, how to remove it."""

    name: str
    load: Callable[[], None]
    unload: Callable[[], None]


def _portguard(pair: Lab, directory: Path, name: str, config: str) -> Ruleset:
    """per_packet's CONFIGS entry `config`, rendered by this portguard."""
    (found,) = [c for c in CONFIGS if c.name == config]
    work = directory / name.replace(" ", "-").replace(",", "")
    work.mkdir()
    text = _render(found, work)
    return Ruleset(name, lambda: _load(pair, text, work), lambda: _load(pair, None, work))


def _foomuuri(pair: Lab, tool: Foomuuri, work: Path, name: str, *options: str) -> Ruleset:
    """Foomuuri's ruleset for work/big.txt, loaded by `foomuuri start` (cache already warm)."""

    def load() -> None:
        pair.host.run(tool.argv(work, "start", *options), timeout=300)

    def unload() -> None:
        pair.host.run(["nft", "delete", "table", "inet", "foomuuri"], check=False)

    return Ruleset(name, load, unload)


def _foomuuri_work(pair: Lab, tool: Foomuuri, directory: Path, allow: bool) -> Path:
    """A Foomuuri work dir allowing UDP 22 from per_packet's 100k list; cache filled."""
    wanted = "from 100k, new" if allow else "from 100k, drop path, new"
    (config,) = [c for c in CONFIGS if c.name == wanted]
    work = directory / ("foomuuri-allow" if allow else "foomuuri-drop")
    work.mkdir()
    config.write(work)  # writes work/big.txt (and a portguard policy beside it, unused)
    foomuuri_config(work, work / "big.txt", ["udp 22 saddr @big"])
    pair.host.run(tool.argv(work, "reload"), timeout=300)
    pair.host.run(["nft", "delete", "table", "inet", "foomuuri"])
    return work


def _rulesets(pair: Lab, tool: Foomuuri, directory: Path) -> list[Ruleset]:
    """Every configuration this benchmark measures."""
    allow = _foomuuri_work(pair, tool, directory, allow=True)
    drop = _foomuuri_work(pair, tool, directory, allow=False)
    return [
        _portguard(pair, directory, "portguard 3 ports", "3 open ports"),
        _portguard(pair, directory, "portguard from 100k", "from 100k, new"),
        _foomuuri(pair, tool, allow, "Foomuuri from 100k"),
        _foomuuri(pair, tool, allow, "Foomuuri from 100k, rpfilter no", RPFILTER_OFF),
        _portguard(pair, directory, "portguard from 100k, drop path", "from 100k, drop path, new"),
        _foomuuri(pair, tool, drop, "Foomuuri from 100k, drop path"),
    ]


def measure_packets(tool: Foomuuri, rounds: int, seconds: float) -> list[tuple[str, list[float]]]:
    """Per configuration (and derived row), its ratios to the empty-ruleset rate, per round."""
    with lab("pgfo") as pair, _sink(pair), tempfile.TemporaryDirectory() as temp:
        rulesets = _rulesets(pair, tool, Path(temp))
        ratios: dict[str, list[float]] = {r.name: [] for r in rulesets}
        for number in range(rounds):
            for ruleset in rulesets:
                baseline = flood_rate(pair, seconds)
                ruleset.load()
                ratios[ruleset.name].append(flood_rate(pair, seconds) / baseline)
                ruleset.unload()
            print(f"  round {number + 1}: " + _latest(ratios), flush=True)
    for name, over, under in DERIVED:
        ratios[name] = [a / b for a, b in zip(ratios[over], ratios[under], strict=True)]
    return list(ratios.items())


def _latest(ratios: dict[str, list[float]]) -> str:
    return ", ".join(f"{name} {values[-1]:.2f}x" for name, values in ratios.items())
