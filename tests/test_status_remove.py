"""`portguard status --check` exit codes and `portguard remove`, in throwaway namespaces."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from portguard.state import StateDir
from tests.netns import AS_NOBODY, Netns, portguard_argv

pytestmark = pytest.mark.netns

POLICY_SSH = "version: 1\nallow:\n  - port: 22\n    limit: 6/minute\n"
POLICY_WEB = "version: 1\nallow:\n  - port: 443\n"
LEGACY_TABLE = (
    "table ip legacy {\n\tchain input {\n\t\ttype filter hook input priority 10;"
    " policy accept;\n\t\ttcp dport 8080 accept\n\t}\n}\n"
)


def _pg(ns: Netns, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run(portguard_argv(*args, "--state-dir", str(state)), check=False)


def _policy(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_status_check_exit_codes(netns: Netns, tmp_path: Path) -> None:
    """3 when absent, 0 after apply, 3 for another policy, 3 after a rule inserted by hand."""
    state, ssh = tmp_path / "state", _policy(tmp_path, "ssh.yaml", POLICY_SSH)
    web = _policy(tmp_path, "web.yaml", POLICY_WEB)
    absent = _pg(netns, state, "status", "--check")
    assert (absent.returncode, absent.stdout.splitlines()[0]) == (3, "table inet portguard: absent")
    assert _pg(netns, state, "apply", ssh, "--yes").returncode == 0
    synced = _pg(netns, state, "status", "--check")
    assert (synced.returncode, synced.stdout.splitlines()[0]) == (
        0,
        "table inet portguard: in-sync",
    )
    assert _pg(netns, state, "status", "--check", "--policy", ssh).returncode == 0
    differs = _pg(netns, state, "status", "--check", "--policy", web)
    assert differs.returncode == 3
    assert differs.stdout.splitlines()[0] == "table inet portguard: differs"
    assert "+\t\ttcp dport @open_tcp counter accept" in differs.stdout.splitlines()
    netns.run(
        ["nft", "insert", "rule", "inet", "portguard", "input", "tcp", "dport", "9999", "accept"]
    )
    drifted = _pg(netns, state, "status", "--check")
    assert drifted.returncode == 3
    assert drifted.stdout.splitlines()[0] == "table inet portguard: drifted"
    assert "+\t\ttcp dport 9999 accept" in drifted.stdout.splitlines()
    assert _pg(netns, state, "status").returncode == 0  # without --check, status informs only


def test_reapply_repairs_drift(netns: Netns, tmp_path: Path) -> None:
    """After a hand-made change, apply of the same policy reloads it and status is in sync."""
    state, ssh = tmp_path / "state", _policy(tmp_path, "ssh.yaml", POLICY_SSH)
    assert _pg(netns, state, "apply", ssh, "--yes").returncode == 0
    netns.run(["nft", "add", "rule", "inet", "portguard", "input", "udp", "dport", "7", "accept"])
    repaired = _pg(netns, state, "apply", ssh, "--yes")
    assert repaired.returncode == 0
    assert "drifted" in repaired.stdout
    assert "dport 7 " not in netns.ruleset()
    assert _pg(netns, state, "status", "--check").returncode == 0


def test_meter_entries_are_not_drift(netns: Netns, tmp_path: Path) -> None:
    """Sources that a `limit` meter learns from traffic do not count as drift."""
    state, ssh = tmp_path / "state", _policy(tmp_path, "ssh.yaml", POLICY_SSH)
    assert _pg(netns, state, "apply", ssh, "--yes").returncode == 0
    netns.run(["nft", "add", "element", "inet", "portguard", "e1_meter4_g0", "{ 198.51.100.9 }"])
    assert "198.51.100.9" in netns.ruleset()
    assert _pg(netns, state, "status", "--check").returncode == 0
    again = _pg(netns, state, "apply", ssh, "--yes")
    assert again.stdout.endswith("unchanged, nothing to do\n")


def test_table_without_record_is_drift(netns: Netns, tmp_path: Path) -> None:
    """A portguard table that this state dir never recorded is drifted, not in sync."""
    ssh = _policy(tmp_path, "ssh.yaml", POLICY_SSH)
    assert _pg(netns, tmp_path / "one", "apply", ssh, "--yes").returncode == 0
    other = _pg(netns, tmp_path / "other", "status", "--check")
    assert other.returncode == 3
    assert "no record" in other.stdout


def test_status_check_errors_exit_one(netns: Netns, tmp_path: Path) -> None:
    """A missing policy: exit 1, one line; a damaged record: a warning and drift (exit 3)."""
    state = tmp_path / "state"
    missing = _pg(netns, state, "status", "--check", "--policy", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    assert (
        _pg(netns, state, "apply", _policy(tmp_path, "s.yaml", POLICY_SSH), "--yes").returncode == 0
    )
    (state / "applied.json").write_text("{damaged")
    damaged = _pg(netns, state, "status", "--check")
    assert damaged.returncode == 3
    assert damaged.stderr.splitlines() == [
        f"portguard: warning: {state / 'applied.json'}: damaged record: Expecting property name"
        " enclosed in double quotes: line 1 column 2 (char 1) (ignored)"
    ]
    assert damaged.stdout.startswith("table inet portguard: drifted\n")


def test_status_not_root_exits_one(netns: Netns) -> None:
    """status as an unprivileged user says it needs root, exit 1."""
    result = netns.run(
        [*AS_NOBODY, *portguard_argv("status", "--check")],
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == "nftables needs root (CAP_NET_ADMIN); run as root\n"


def test_remove_deletes_only_our_table(netns: Netns, tmp_path: Path) -> None:
    """remove deletes inet portguard, leaves the legacy table byte-identical, records it."""
    netns.run(["nft", "-f", "-"], input_text=LEGACY_TABLE)
    state = tmp_path / "state"
    assert (
        _pg(netns, state, "apply", _policy(tmp_path, "s.yaml", POLICY_SSH), "--yes").returncode == 0
    )
    with_legacy = netns.run(["nft", "list", "table", "ip", "legacy"]).stdout
    removed = _pg(netns, state, "remove", "--yes")
    assert (removed.returncode, removed.stdout) == (0, "removed table inet portguard\n")
    assert "inet portguard" not in netns.ruleset()
    assert netns.run(["nft", "list", "table", "ip", "legacy"]).stdout == with_legacy
    assert StateDir(state).read_applied() is None
    assert StateDir(state).read_last_known_good() is not None
    status = _pg(netns, state, "status", "--check")
    assert status.returncode == 3 and "removed by portguard at " in status.stdout
    again = _pg(netns, state, "remove", "--yes")
    assert again.stdout == "table inet portguard was not loaded; nothing to do\n"
