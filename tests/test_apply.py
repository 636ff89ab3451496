"""`portguard apply` in throwaway namespaces: atomic replace, no-op re-apply, failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from portguard.facts.reference import reference_listing
from portguard.state import AppliedState, StateDir
from tests.netns import AS_NOBODY, Netns, portguard_argv

pytestmark = pytest.mark.netns

POLICY_SSH = "version: 1\nallow:\n  - port: 22\n"
POLICY_WEB = "version: 1\nallow:\n  - port: [80, 443]\n  - port: 53\n    proto: udp\n"
LEGACY_TABLE = """table ip legacy {
\tchain input {
\t\ttype filter hook input priority 10; policy accept;
\t\ttcp dport 8080 accept
\t}
}
"""
# A table another process owns (`flags owner`): the kernel refuses to let anyone else
# delete or replace it, so portguard's transaction fails in the kernel itself.
OWNED_TABLE_SCRIPT = """
import sys, nftables
handle = nftables.Nftables()
rc, _, error = handle.cmd(
    "table inet portguard {\\n flags owner\\n chain input {\\n"
    " type filter hook input priority filter; policy accept;\\n }\\n}\\n"
)
print("ready" if rc == 0 else error, flush=True)
sys.stdin.readline()
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _apply(ns: Netns, policy: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return ns.run(
        portguard_argv("apply", str(policy), "--yes", "--state-dir", str(state)), check=False
    )


def _live_table(ns: Netns) -> str:
    return ns.run(["nft", "-s", "list", "table", "inet", "portguard"]).stdout


def test_apply_then_reapply_then_replace(netns: Netns, tmp_path: Path) -> None:
    """Apply loads the table, the same policy again is a no-op, another policy replaces it."""
    ssh, web = _write(tmp_path / "ssh.yaml", POLICY_SSH), _write(tmp_path / "web.yaml", POLICY_WEB)
    state = tmp_path / "state"
    first = _apply(netns, ssh, state)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.startswith(f"{ssh}: applied")
    assert (
        "set open_tcp_g0 {\n\t\ttype inet_service\n\t\tflags interval\n\t\telements = { 22 }"
        in (netns.ruleset())
    )
    again = _apply(netns, ssh, state)
    assert (again.returncode, again.stdout) == (0, f"{ssh}: unchanged, nothing to do\n")
    replaced = _apply(netns, web, state)
    assert replaced.returncode == 0 and "applied" in replaced.stdout
    ruleset = netns.ruleset()
    assert ruleset.count("table inet portguard") == 1
    assert "{ 22 }" not in ruleset
    assert "_g0" not in ruleset and "set open_tcp_g1 {" in ruleset  # old sets deleted
    assert "elements = { 80, 443 }" in ruleset and "elements = { 53 }" in ruleset
    record = StateDir(state).read_applied()
    assert record is not None
    assert record.policy_text == POLICY_WEB and record.policy_path == str(web)
    assert record.listing is None and record.generation is not None  # proven, not listed
    assert _recorded_listing(record) == _live_table(netns)
    assert StateDir(state).read_last_known_good() == record


def test_other_tables_stay_byte_identical(netns: Netns, tmp_path: Path) -> None:
    """A foreign table is identical after apply, re-apply, replace and remove."""
    netns.run(["nft", "-f", "-"], input_text=LEGACY_TABLE)
    before = netns.run(["nft", "list", "table", "ip", "legacy"]).stdout
    ssh, web = _write(tmp_path / "ssh.yaml", POLICY_SSH), _write(tmp_path / "web.yaml", POLICY_WEB)
    state = tmp_path / "state"
    for argv in (
        ["apply", str(ssh)],
        ["apply", str(ssh)],
        ["apply", str(web)],
        ["remove"],
    ):
        result = netns.run(portguard_argv(*argv, "--yes", "--state-dir", str(state)))
        assert result.returncode == 0
        assert netns.run(["nft", "list", "table", "ip", "legacy"]).stdout == before
    assert "portguard" not in netns.ruleset()


def test_invalid_policy_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    """Invalid YAML: exit 1, one located stderr line, ruleset and state dir unchanged."""
    state = tmp_path / "state"
    assert _apply(netns, _write(tmp_path / "ok.yaml", POLICY_SSH), state).returncode == 0
    before, record = netns.ruleset(), StateDir(state).read_applied()
    bad = _write(tmp_path / "bad.yaml", "version: 1\nallow:\n  - port: [22\n")
    result = _apply(netns, bad, state)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"{bad}:")
    assert netns.ruleset() == before
    assert StateDir(state).read_applied() == record


def test_over_long_interface_pattern_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    """A 16-character interface pattern (nft would refuse it): exit 1, one line, no change."""
    state = tmp_path / "state"
    assert _apply(netns, _write(tmp_path / "ok.yaml", POLICY_WEB), state).returncode == 0
    before, record = netns.ruleset(), StateDir(state).read_applied()
    policy = "version: 1\nallow:\n  - port: 22\n    interface: abcdefghijklmno*\n"
    result = _apply(netns, _write(tmp_path / "long-if.yaml", policy), state)
    assert result.returncode == 1 and result.stdout == ""
    assert "is not a Linux interface name" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert netns.ruleset() == before
    assert StateDir(state).read_applied() == record


def test_kernel_refusal_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    """The kernel refuses the transaction (table owned by another process): exit 1, no change."""
    owner = subprocess.Popen(
        ["ip", "netns", "exec", netns.name, "/usr/bin/python3", "-c", OWNED_TABLE_SCRIPT],
        stdin=subprocess.PIPE,  # the owner holds its table until this pipe closes
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
        before = netns.ruleset()
        result = _apply(netns, _write(tmp_path / "ssh.yaml", POLICY_SSH), tmp_path / "state")
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [
            "nftables refused the ruleset: Could not process rule: Operation not permitted"
            " at rendered line 1: add table inet portguard"
        ]
        assert netns.ruleset() == before
        assert StateDir(tmp_path / "state").read_applied() is None
    finally:
        owner.kill()
        owner.communicate(timeout=10)


def test_parallel_applies_end_in_one_whole_policy(netns: Netns, tmp_path: Path) -> None:
    """Concurrent applies of different policies leave exactly one of them, as recorded."""
    policies = [
        _write(tmp_path / f"p{n}.yaml", f"version: 1\nallow:\n  - port: [{1000 + n}, {2000 + n}]\n")
        for n in range(6)
    ]
    expected: dict[str, str] = {}
    for policy in policies:  # each policy's own listing, applied alone
        assert _apply(netns, policy, tmp_path / "solo").returncode == 0
        expected[str(policy)] = _live_table(netns)
    netns.run(["nft", "delete", "table", "inet", "portguard"])
    state = tmp_path / "shared"
    exec_in_ns = ["ip", "netns", "exec", netns.name]
    argv = [
        [*exec_in_ns, *portguard_argv("apply", str(p), "--yes", "--state-dir", str(state))]
        for p in policies
    ]
    running = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in argv]
    for process in running:
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    live = _live_table(netns)
    canonical = [_without_generation(listing) for listing in expected.values()]
    assert canonical.count(_without_generation(live)) == 1
    record = StateDir(state).read_applied()
    assert record is not None
    assert _recorded_listing(record) == live
    assert _without_generation(live) == _without_generation(expected[record.policy_path])


def _recorded_listing(record: AppliedState) -> str | None:
    """The record's listing, or, for a record proven by generation, nft's own listing of its
    rendering in a private namespace (what a later comparison uses)."""
    if record.listing is not None:
        return record.listing
    return reference_listing(record.table, record.suffix)


def _without_generation(listing: str) -> str:
    """A listing with the alternating set-name suffixes (_g0 / _g1) taken off."""
    return re.sub(r"_g[01]\b", "", listing)


def test_not_root_is_one_line(netns: Netns, tmp_path: Path) -> None:
    """Run as nobody: exit 1 and a single line saying nftables needs root."""
    policy = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    before = netns.ruleset()
    result = netns.run(
        [
            *AS_NOBODY,
            *portguard_argv("apply", str(policy), "--yes", "--state-dir", "/nonexistent/pg"),
        ],
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == "portguard: nftables needs root (CAP_NET_ADMIN); run as root\n"
    assert netns.ruleset() == before


def test_python_nftables_missing_is_one_line(netns: Netns, tmp_path: Path) -> None:
    """With python-nftables unimportable: exit 1 and a line naming the Debian package."""
    shadow = tmp_path / "shadow" / "nftables"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    result = netns.run(
        portguard_argv(
            "apply",
            str(_write(tmp_path / "p.yaml", POLICY_SSH)),
            "--yes",
            "--state-dir",
            str(tmp_path / "state"),
        ),
        check=False,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "portguard: python-nftables is not installed (Debian: apt install python3-nftables)"
    ]
    assert "portguard" not in netns.ruleset()


def test_big_source_set_has_every_element(netns: Netns, tmp_path: Path) -> None:
    """A 5,000-address set file lands in the kernel whole, in one apply."""
    addresses = [f"10.{n // 250}.{n % 250}.1" for n in range(5000)]  # none adjacent: no merging
    (tmp_path / "many.txt").write_text("\n".join(addresses) + "\n")
    policy = (
        "version: 1\nsets:\n  many: {file: many.txt}\nallow:\n  - port: 22\n    from: ['@many']\n"
    )
    result = _apply(netns, _write(tmp_path / "big.yaml", policy), tmp_path / "state")
    assert result.returncode == 0, result.stderr
    # Over PIECE_SOURCES_MAX sources: port 22 has its own plain address set (issue 13).
    listing = netns.run(["nft", "-j", "list", "set", "inet", "portguard", "from4_tcp_1_g0"]).stdout
    (element_set,) = [i["set"] for i in json.loads(listing)["nftables"] if "set" in i]
    sources = {e["prefix"]["addr"] if isinstance(e, dict) else e for e in element_set["elem"]}
    assert sources == set(addresses)


def test_comment_naming_set_references_applies(netns: Netns, tmp_path: Path) -> None:
    """A comment repeating `@e1_ports` (issue 9) applies whole; no chainless table is left."""
    policy = tmp_path / "c.yaml"
    comment = "@e1_ports " * 12
    policy.write_text(
        f"version: 1\nallow:\n  - port: 22\n    interface: eth1\n    comment: '{comment}'\n"
    )
    done = _apply(netns, policy, tmp_path / "state")
    assert done.returncode == 0, done.stderr
    listing = _live_table(netns)
    assert "chain input {" in listing
    assert f'comment "{comment.strip()}"' in listing or f'comment "{comment}"' in listing
