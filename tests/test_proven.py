"""The generation proof (facts/proven.py): an apply is recorded without listing the table, and
later commands trust the record only while nothing else has committed, in a real namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from portguard.facts.reference import reference_listing
from portguard.state import StateDir
from tests.netns import Netns, portguard_argv

pytestmark = pytest.mark.netns

POLICY = (
    "version: 1\nsets:\n  office: {file: office.txt}\nallow:\n  - port: 22\n    from: ['@office']\n"
)
# Prints how often gather_facts listed the table, and the state it classified.
FACTS_SPY = """
import sys
from dataclasses import dataclass, field
from pathlib import Path
from portguard.apply import gather_facts
from portguard.backends.nftables import NftKernel, open_nftables
from portguard.drift import classify
from portguard.state import StateDir

@dataclass(frozen=True)
class CountingKernel(NftKernel):
    listings: list[int] = field(default_factory=list)

    def listing(self):
        self.listings.append(1)
        return super().listing()

kernel = CountingKernel(open_nftables())
facts = gather_facts(kernel, StateDir(Path(sys.argv[1])))
print(len(kernel.listings), classify(None, facts.records, facts.live).value)
"""


def _setup(tmp_path: Path, sources: int = 200) -> tuple[Path, Path]:
    """A policy allowing ssh from `sources` /30s (own address set), and its state dir."""
    lines = "".join(f"10.{n // 250}.{n % 250}.0/30\n" for n in range(sources))
    (tmp_path / "office.txt").write_text(lines)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return policy, tmp_path / "state"


def _apply(netns: Netns, policy: Path, state: Path, *extra: str) -> None:
    argv = portguard_argv("apply", str(policy), "--yes", "--state-dir", str(state), *extra)
    done = netns.run(argv, check=False, timeout=300)
    assert done.returncode == 0, done.stderr


def _facts(netns: Netns, state: Path) -> tuple[int, str]:
    """(listings made, drift state) of gather_facts inside the namespace."""
    done = netns.run([sys.executable, "-c", FACTS_SPY, str(state)], timeout=300)
    count, verdict = done.stdout.split()
    return int(count), verdict


def _status(netns: Netns, state: Path) -> int:
    argv = portguard_argv("status", "--check", "--state-dir", str(state))
    return netns.run(argv, check=False, timeout=300).returncode


def test_apply_is_recorded_by_generation_and_reproduces_the_live_listing(
    netns: Netns, tmp_path: Path
) -> None:
    """The record holds no listing but a generation; nft lists its rendering, loaded in a
    private namespace, exactly as it lists the live table."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    record = StateDir(state).read_applied()
    assert record is not None and record.listing is None and record.generation is not None
    live = netns.run(["nft", "-s", "list", "table", "inet", "portguard"]).stdout
    assert reference_listing(record.table, record.suffix) == live
    assert _facts(netns, state) == (0, "in-sync")  # proven: the table is not listed


def test_a_commit_elsewhere_is_listed_and_still_in_sync(netns: Netns, tmp_path: Path) -> None:
    """Another table's commit breaks the proof: the table is listed, compared with the
    reproduced listing, and found in sync; an apply over it still goes through."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    netns.run(["nft", "add", "table", "ip", "someone_else"])
    assert _facts(netns, state) == (1, "in-sync")
    assert _status(netns, state) == 0
    policy.write_text(POLICY.replace("port: 22", "port: 2222"))
    _apply(netns, policy, state)  # planned over a listed table: not "changed since the plan"
    assert "tcp dport 2222" in netns.ruleset()
    assert _facts(netns, state) == (0, "in-sync")


def test_an_unchanged_apply_after_a_commit_elsewhere_proves_the_table_again(
    netns: Netns, tmp_path: Path
) -> None:
    """The listing an unchanged apply had to make (and the reproduced one it matched) is
    recorded with the generation it was read at: the next commands list nothing."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    netns.run(["nft", "add", "table", "ip", "someone_else"])
    _apply(netns, policy, state)
    record = StateDir(state).read_applied()
    assert record is not None and record.listing is not None
    assert _facts(netns, state) == (0, "in-sync")
    netns.run(["nft", "add", "element", "inet", "portguard", "from4_tcp_1_g0", "{ 192.0.2.0/24 }"])
    assert _facts(netns, state) == (1, "drifted")


@pytest.mark.parametrize(
    "edit",
    [
        ["nft", "add", "element", "inet", "portguard", "from4_tcp_1_g0", "{ 192.0.2.0/24 }"],
        ["nft", "insert", "rule", "inet", "portguard", "input", "tcp", "dport", "8080", "accept"],
    ],
    ids=["element", "rule"],
)
def test_an_edit_behind_portguards_back_is_drift(
    netns: Netns, tmp_path: Path, edit: list[str]
) -> None:
    """An element or a rule added by hand moves the generation and shows as drift (exit 3)."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    netns.run(edit)
    assert _facts(netns, state) == (1, "drifted")
    assert _status(netns, state) == 3


def test_a_ban_carries_the_proof(netns: Netns, tmp_path: Path) -> None:
    """A ban commits only to the ban sets, which no record compares: the records' proofs move
    to its generation (no listing after it, the re-apply is the no-op fast path); after an
    edit elsewhere a ban carries nothing, and the table is listed and found in sync."""
    policy, state = _setup(tmp_path)
    _apply(netns, policy, state)
    for target in ("198.51.100.7", "198.51.100.0/24"):  # the second folds the first: 2 commits
        argv = portguard_argv("ban", target, "--state-dir", str(state))
        ban = netns.run(argv, check=False, timeout=300)
        assert ban.returncode == 0, ban.stderr
        assert _facts(netns, state) == (0, "in-sync")
    again = netns.run(
        portguard_argv("apply", str(policy), "--yes", "--state-dir", str(state)), timeout=300
    )
    assert again.stdout.endswith("unchanged, nothing to do\n"), again.stdout
    netns.run(["nft", "add", "table", "ip", "someone_else"])
    argv = portguard_argv("unban", "198.51.100.0/24", "--state-dir", str(state))
    assert netns.run(argv, check=False, timeout=300).returncode == 0
    assert _facts(netns, state) == (1, "in-sync")


def test_without_a_private_namespace_the_apply_lists(netns: Netns, tmp_path: Path) -> None:
    """Where no namespace can be made to reproduce a listing (no `unshare`), the apply
    records the kernel's listing as before."""
    policy, state = _setup(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    argv = portguard_argv("apply", str(policy), "--yes", "--state-dir", str(state))
    done = subprocess.run(
        ["ip", "netns", "exec", netns.name, "env", f"PATH={empty}", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((state / "applied.json").read_text())
    live = netns.run(["nft", "-s", "list", "table", "inet", "portguard"]).stdout
    assert record["listing"] == live and record["generation"] is not None
