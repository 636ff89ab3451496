"""Windows Firewall apply/status/remove against a recording fake of PowerShell.

There is no Windows host here, so the runner is tests/windows_fake.py: it holds whole rules
and profiles and runs each script statement by statement as `powershell.exe -Command -` does
(errors do not stop the next statement; the exit code is the last statement's).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from portguard.backends.windows import (
    POWERSHELL_ARGV,
    SyncState,
    WindowsFirewallError,
    apply_windows,
    live_rule_names,
    remove_windows,
    windows_status,
)
from portguard.facts.windows import SYSTEM_PROCESS, sockets_from_connections
from portguard.model import Policy
from portguard.policy import load_policy
from tests.netns import Netns
from tests.probe import listeners
from tests.windows_fake import OTHER_RULE, RDP_RULE, FakeFirewall


def _policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path).policy


WEB = "version: 1\nallow:\n  - port: [80, 443]\n  - port: 22\n    from: [192.0.2.0/24]\n"
WEB_MORE = WEB + "  - port: 8443\n"


def test_apply_adds_every_rule_in_the_group_only(tmp_path: Path) -> None:
    """A first apply creates the rendered rules, all in one generation; other rules untouched."""
    fake = FakeFirewall()
    result = apply_windows(_policy(tmp_path, WEB), fake)
    assert result.changed and result.added == len(fake.group) > 3
    assert {n.split("-")[1] for n in fake.group} == {result.generation}
    assert fake.others == {OTHER_RULE, RDP_RULE}
    assert any("-block-tcp-" in n for n in fake.group)


def test_first_apply_on_a_clean_host_lists_an_empty_group(tmp_path: Path) -> None:
    """An empty group sets $? False (PowerShell #4613); the listing still succeeds by design."""
    fake = FakeFirewall()
    assert live_rule_names(fake) == ()
    old_shape = (
        "Get-NetFirewallRule -Group 'portguard' -ErrorAction SilentlyContinue"
        " | ForEach-Object { $_.Name }\n"
    )
    assert fake.run(POWERSHELL_ARGV, old_shape).returncode == 1  # what the old listing hit


def test_reapply_of_the_same_policy_changes_nothing(tmp_path: Path) -> None:
    """In sync: apply only lists, adds nothing and removes nothing."""
    fake = FakeFirewall()
    policy = _policy(tmp_path, WEB)
    apply_windows(policy, fake)
    before = len(fake.scripts)
    again = apply_windows(policy, fake)
    assert not again.changed
    assert [s for s in fake.scripts[before:] if "New-Net" in s or "Remove-Net" in s] == []
    assert windows_status(policy, fake).state is SyncState.IN_SYNC


def test_changed_policy_never_leaves_a_moment_without_block_rules(tmp_path: Path) -> None:
    """The new generation is added and read back before the old one is removed."""
    fake = FakeFirewall()
    first = apply_windows(_policy(tmp_path, WEB), fake)
    start = len(fake.states)
    calls = len(fake.calls)
    second = apply_windows(_policy(tmp_path, WEB_MORE), fake)
    assert second.generation != first.generation and second.removed > 0
    for state in fake.states[start:]:
        assert any("-block-tcp-" in r.name for r in state)
    later = fake.calls[calls:]
    first_remove = later.index("Remove-NetFirewallRule")
    last_add = len(later) - 1 - later[::-1].index("New-NetFirewallRule")
    assert last_add < later.index("Get-NetFirewallRule", last_add) < first_remove
    assert {n.split("-")[1] for n in fake.group} == {second.generation}


def test_drift_is_seen_and_repaired_without_a_gap(tmp_path: Path) -> None:
    """A deleted portguard rule makes status `differs`; apply re-adds under the other slot."""
    fake = FakeFirewall()
    policy = _policy(tmp_path, WEB)
    first = apply_windows(policy, fake)
    victim = sorted(n for n in fake.group if "allow" in n)[0]
    fake.delete(victim)
    status = windows_status(policy, fake)
    assert status.state is SyncState.DIFFERS and status.missing == (victim,)
    repaired = apply_windows(policy, fake)
    assert repaired.generation.split(".")[0] == first.generation.split(".")[0]
    assert repaired.generation != first.generation
    assert windows_status(policy, fake).state is SyncState.IN_SYNC


def test_failed_add_rolls_back_and_keeps_the_old_rules(tmp_path: Path) -> None:
    """When Windows refuses a rule, the partial new generation is deleted; the old one stays."""
    fake = FakeFirewall()
    apply_windows(_policy(tmp_path, WEB), fake)
    old = set(fake.group)
    listing = len(fake.calls)
    live_rule_names(fake)
    listing = len(fake.calls) - listing  # cmdlet calls one listing makes
    fake.fail_calls = {len(fake.calls) + listing + 3}  # the listing, then the third new rule
    with pytest.raises(WindowsFirewallError, match="The parameter is incorrect"):
        apply_windows(_policy(tmp_path, WEB_MORE), fake)
    assert fake.calls.count("New-NetFirewallRule") == len(old) + 3  # stopped at the failure
    assert fake.group == old
    assert fake.others == {OTHER_RULE, RDP_RULE}


def test_remove_deletes_the_group_only_and_status_says_absent(tmp_path: Path) -> None:
    """remove empties the portguard group and leaves every other rule."""
    fake = FakeFirewall()
    policy = _policy(tmp_path, WEB)
    apply_windows(policy, fake)
    assert remove_windows(fake) > 0
    assert fake.group == set() and fake.others == {OTHER_RULE, RDP_RULE}
    assert windows_status(policy, fake).state is SyncState.ABSENT
    assert remove_windows(fake) == 0


FACTS_SCRIPT = (
    "import json; from portguard.facts.windows import listening_sockets; "
    "print(json.dumps([[s.proto.value, str(s.address), s.port, s.pid, s.process]"
    " for s in listening_sockets()]))"
)


def test_psutil_facts_see_real_listeners_in_a_namespace(netns: Netns) -> None:
    """facts.windows on psutil, run inside a throwaway namespace, finds its real listeners."""
    with listeners(netns, tcp=[8081, 9443], udp=[5353]):
        done = netns.run([sys.executable, "-c", FACTS_SCRIPT], env=_env())
    found = {(proto, port): (address, pid, process) for proto, address, port, pid, process in
             json.loads(done.stdout)}  # fmt: skip
    assert set(found) == {("tcp", 8081), ("tcp", 9443), ("udp", 5353)}
    address, pid, process = found[("tcp", 8081)]
    assert address == "::" and isinstance(pid, int) and process and "python" in process


@dataclass(frozen=True)
class _Addr:
    ip: str
    port: int


@dataclass(frozen=True)
class _Conn:
    type: int
    status: str
    laddr: _Addr
    raddr: tuple[str, int] | tuple[()]
    pid: int | None


def test_psutil_rows_keep_listeners_and_name_the_system_process() -> None:
    """LISTEN TCP and unconnected UDP are kept; PID 4 is named as a kernel-mode listener."""
    rows = [
        _Conn(socket.SOCK_STREAM, "LISTEN", _Addr("0.0.0.0", 80), (), 4),
        _Conn(socket.SOCK_STREAM, "ESTABLISHED", _Addr("10.0.0.1", 80), ("10.0.0.2", 5), 4),
        _Conn(socket.SOCK_DGRAM, "NONE", _Addr("fe80::1%eth0", 546), (), 900),
        _Conn(socket.SOCK_DGRAM, "NONE", _Addr("10.0.0.1", 5000), ("10.0.0.9", 53), 900),
        _Conn(socket.SOCK_STREAM, "LISTEN", _Addr("127.0.0.1", 631), (), None),
    ]
    found = sockets_from_connections(rows, {900: "dhcpv6"}.get)
    assert [(s.proto.value, str(s.address), s.port, s.process) for s in found] == [
        ("tcp", "0.0.0.0", 80, SYSTEM_PROCESS),
        ("tcp", "127.0.0.1", 631, None),
        ("udp", "fe80::1", 546, "dhcpv6"),
    ]
    assert [s.exposed for s in found] == [True, False, True]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": root}
