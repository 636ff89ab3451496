"""history, show and status --format json on the real kernel, in throwaway namespaces."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from portguard.history import HISTORY_FILE
from tests.netns import AS_NOBODY, HOST_V4, Lab, Netns, portguard_argv
from tests.probe import FILTERED, OPEN, Probe, listeners, scan
from tests.test_apply import OWNED_TABLE_SCRIPT

pytestmark = pytest.mark.netns

SSH = "version: 1\nallow:\n  - port: 22\n"
WEB = """\
version: 1
description: web with an admin port
sets:
  office: [192.0.2.0/24, "2001:db8:7::/64"]
allow:
  - port: 8080
    from: ["@office", 198.51.100.7]
    limit: 6/minute
    comment: admins
  - port: [80, 443]
    proto: [tcp, udp]
    interface: pg-host0
"""
BROKEN = "version: 1\nallow:\n  - port: 70000\n"


def _pg(ns: Netns, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run(portguard_argv(*args, "--state-dir", str(state)), check=False)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _rows(ns: Netns, state: Path, *extra: str) -> list[dict[str, object]]:
    done = _pg(ns, state, "history", "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def _summary(rows: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(row["action"], row["outcome"]) for row in reversed(rows)]


def test_history_of_apply_reapply_replace_remove(netns: Netns, tmp_path: Path) -> None:
    """One row per executed change, newest first; a no-op re-apply adds none."""
    state = tmp_path / "state"
    ssh, web = _write(tmp_path / "ssh.yaml", SSH), _write(tmp_path / "web.yaml", WEB)
    for argv in (("apply", ssh, "--yes"), ("apply", ssh, "--yes"), ("apply", web, "--yes")):
        assert _pg(netns, state, *argv).returncode == 0
    assert _pg(netns, state, "remove", "--yes").returncode == 0
    rows = _rows(netns, state)
    assert _summary(rows) == [("apply", "applied"), ("apply", "applied"), ("remove", "applied")]
    assert [row["policy_path"] for row in rows] == ["", web, ssh]
    assert rows[1]["policy_sha256"] == hashlib.sha256(WEB.encode()).hexdigest()
    assert [row["id"] for row in _rows(netns, state, "--limit", "1")] == [rows[0]["id"]]
    table = _pg(netns, state, "history").stdout.splitlines()
    assert table[1].split() == ["id", "at", "action", "policy", "sha256", "outcome"]
    assert table[2].split()[2:] == ["remove", "-", "-", "applied"]
    assert table[3].split()[2:] == ["apply", web, str(rows[1]["policy_sha256"])[:12], "applied"]


def test_kernel_refused_apply_is_a_failed_row(netns: Netns, tmp_path: Path) -> None:
    """The kernel refuses (another process owns the table): exit 1 and a "failed: ..." row."""
    state = tmp_path / "state"
    owner = subprocess.Popen(
        ["ip", "netns", "exec", netns.name, "/usr/bin/python3", "-c", OWNED_TABLE_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
        done = _pg(netns, state, "apply", _write(tmp_path / "ssh.yaml", SSH), "--yes")
        assert done.returncode == 1
        assert done.stderr.startswith("nftables refused the ruleset"), done.stderr
    finally:
        owner.kill()
        owner.communicate(timeout=10)
    (row,) = _rows(netns, state)
    assert row["action"] == "apply"
    assert str(row["outcome"]).startswith("failed: nftables refused the ruleset: ")
    assert "\n" not in str(row["outcome"])


def test_damaged_history_never_stops_an_apply(netns: Netns, tmp_path: Path) -> None:
    """A history file that is not a database: apply succeeds, warns once, the rules are in."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / HISTORY_FILE).write_bytes(b"garbage " * 512)
    done = _pg(netns, state, "apply", _write(tmp_path / "ssh.yaml", SSH), "--yes")
    assert done.returncode == 0 and "applied" in done.stdout, done.stderr
    (warning,) = done.stderr.splitlines()
    assert warning.startswith("portguard: warning: history not recorded: "), warning
    assert "file is not a database" in warning
    assert "tcp dport @open_tcp" in netns.ruleset()
    assert _pg(netns, state, "status", "--check").returncode == 0
    failed = _pg(netns, state, "history")
    assert failed.returncode == 1 and "file is not a database" in failed.stderr


def test_history_keeps_the_newest_rows(netns: Netns, tmp_path: Path) -> None:
    """PORTGUARD_HISTORY_KEEP=2: after four changes only the newest two rows remain."""
    state = tmp_path / "state"
    policies = [
        _write(tmp_path / f"p{n}.yaml", f"version: 1\nallow:\n  - port: {n + 1}\n")
        for n in range(4)
    ]
    env = {"PORTGUARD_HISTORY_KEEP": "2", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for policy in policies:
        done = netns.run(
            portguard_argv("apply", policy, "--yes", "--state-dir", str(state)), env=env
        )
        assert done.returncode == 0
    rows = _rows(netns, state)
    assert [row["policy_path"] for row in rows] == [policies[3], policies[2]]


def test_boot_fallback_history_status_and_check(net_lab: Lab, tmp_path: Path) -> None:
    """Boot, then a broken file at boot: rows boot + boot-fallback, status says so, --check 3."""
    host, state = net_lab.host, tmp_path / "state"
    policy = tmp_path / "policy.yaml"
    _write(policy, "version: 1\nallow:\n  - port: 8080\n")
    assert _pg(host, state, "apply", "--boot", str(policy)).returncode == 0
    _write(policy, BROKEN)
    fell_back = _pg(host, state, "apply", "--boot", str(policy))
    assert fell_back.returncode == 1 and "kept in force instead" in fell_back.stderr
    with listeners(host, tcp=[8080, 8081]):
        probes = scan(net_lab.scanner, [Probe("tcp", HOST_V4, p) for p in (8080, 8081)])
    assert [p.outcome for p in probes] == [OPEN, FILTERED]
    assert _summary(_rows(host, state)) == [("boot", "applied"), ("boot-fallback", "recorded")]
    text = _pg(host, state, "status", "--check")
    assert text.returncode == 3
    assert text.stdout.splitlines()[0] == "table inet portguard: in-sync"
    assert (
        "last-known-good is in force after a boot fallback: the policy file at"
        f" {policy} could not be used"
    ) in text.stdout
    status = json.loads(_pg(host, state, "status", "--format", "json").stdout)
    assert {k: status[k] for k in ("state", "policy_path", "source", "pending_confirm")} == {
        "state": "in-sync",
        "policy_path": str(policy),
        "source": "boot-fallback",
        "pending_confirm": None,
    }
    assert status["warnings"] == [] and status["applied_at"]
    _write(policy, "version: 1\nallow:\n  - port: 8080\n")  # fixed: the same table again
    assert _pg(host, state, "apply", str(policy), "--yes").returncode == 0
    assert _pg(host, state, "status", "--check").returncode == 0
    assert _summary(_rows(host, state))[-1] == ("apply", "recorded")


def test_boot_fallback_over_no_table_is_applied(net_lab: Lab, tmp_path: Path) -> None:
    """A fresh boot with a broken file puts last-known-good in: a boot-fallback "applied" row."""
    host, state = net_lab.host, tmp_path / "state"
    policy = tmp_path / "policy.yaml"
    _write(policy, "version: 1\nallow:\n  - port: 8080\n")
    assert _pg(host, state, "apply", "--boot", str(policy)).returncode == 0
    host.run(["nft", "delete", "table", "inet", "portguard"])  # as after a reboot
    _write(policy, BROKEN)
    assert _pg(host, state, "apply", "--boot", str(policy)).returncode == 1
    assert _summary(_rows(host, state))[-1] == ("boot-fallback", "applied")
    assert _pg(host, state, "status", "--check").returncode == 3


def test_status_json_fields(netns: Netns, tmp_path: Path) -> None:
    """status --format json: absent before any apply, then in-sync with the record's fields."""
    state = tmp_path / "state"
    absent = json.loads(_pg(netns, state, "status", "--format", "json").stdout)
    assert absent["state"] == "absent" and absent["policy_path"] is None
    assert absent["source"] is None and absent["pending_confirm"] is None
    ssh = _write(tmp_path / "ssh.yaml", SSH)
    assert _pg(netns, state, "apply", ssh, "--yes").returncode == 0
    done = _pg(netns, state, "status", "--format", "json", "--check")
    assert done.returncode == 0
    status = json.loads(done.stdout)
    assert (status["state"], status["policy_path"], status["source"]) == ("in-sync", ssh, "apply")
    assert set(status) >= {"applied_at", "pending_confirm", "warnings"}
    netns.run(
        ["nft", "insert", "rule", "inet", "portguard", "input", "tcp", "dport", "9", "accept"]
    )
    drifted = _pg(netns, state, "status", "--format", "json", "--check")
    assert drifted.returncode == 3 and json.loads(drifted.stdout)["state"] == "drifted"


def test_show_text_and_json(netns: Netns, tmp_path: Path) -> None:
    """show names each allow entry as written and says whether the live table matches."""
    state, web = tmp_path / "state", _write(tmp_path / "web.yaml", WEB)
    assert _pg(netns, state, "apply", web, "--yes").returncode == 0
    text = _pg(netns, state, "show")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"in force: {web} (applied ") and lines[0].endswith(" by apply)")
    assert lines[1:] == [
        "description: web with an admin port",
        "default: drop, icmp: essential, log: off",
        "set @office: 2 address(es)",
        "allow:",
        '  tcp 8080 from @office, 198.51.100.7, limit 6/minute per source "admins" [line 6]',
        "  tcp,udp 80,443 from anywhere on pg-host0 [line 10]",
        "live table: in-sync (matches what was applied)",
    ]
    shown = json.loads(_pg(netns, state, "show", "--format", "json").stdout)
    assert (shown["policy_path"], shown["source"], shown["state"]) == (web, "apply", "in-sync")
    assert (shown["default"], shown["icmp"]) == ("drop", "essential")
    admin, public = shown["allow"]
    assert admin == {
        "proto": "tcp",
        "ports": "8080",
        "from": ["@office", "198.51.100.7"],
        "interface": None,
        "limit": "6/minute",
        "comment": "admins",
        "service": None,
        "line": 6,
    }
    assert (public["proto"], public["ports"], public["from"]) == ("tcp,udp", "80,443", None)
    assert public["interface"] == "pg-host0"
    netns.run(
        ["nft", "insert", "rule", "inet", "portguard", "input", "tcp", "dport", "9", "accept"]
    )
    assert "live table: drifted" in _pg(netns, state, "show").stdout


def test_show_without_root_and_with_nothing_applied(netns: Netns, tmp_path: Path) -> None:
    """Not root: the policy is shown, the live table is not checked; nothing applied: said so."""
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:  # pytest's tmp is root's alone
        os.chmod(shared, 0o755)
        state = Path(shared) / "state"
        assert _pg(netns, state, "show").stdout == (
            "nothing applied yet\nlive table: absent (not loaded; nothing is enforced)\n"
        )
        ssh = _write(Path(shared) / "ssh.yaml", SSH)
        assert _pg(netns, state, "apply", ssh, "--yes").returncode == 0
        subprocess.run(["chown", "-R", "nobody", str(state)], check=True)
        as_nobody = netns.run(
            [*AS_NOBODY, *portguard_argv("show", "--state-dir", str(state))], check=False
        )
        assert as_nobody.returncode == 0, as_nobody.stderr
        assert as_nobody.stdout.splitlines()[-2:] == [
            "  tcp 22 from anywhere [line 3]",
            "live table not checked: needs root",
        ]
        argv = portguard_argv("history", "--format", "json", "--state-dir", str(state))
        nobody_history = netns.run([*AS_NOBODY, *argv], check=False)
        assert nobody_history.returncode == 0, nobody_history.stderr
        assert len(json.loads(nobody_history.stdout)) == 1
