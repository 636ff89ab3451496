"""The lockout guard against live sessions: pure decisions, and real sessions in namespaces.

The kernel tests start a listener named `sshd` (its comm) in the lab's host namespace and
hold an ESTABLISHED connection to it from the scanner, with no SSH_CONNECTION anywhere.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from types import SimpleNamespace

import pytest

from portguard.facts.sockets import port_filter_bytecode
from portguard.facts.windows import sessions_from_connections
from portguard.lockout import (
    LiveSession,
    could_refuse,
    open_to_everyone,
    refusal_reason,
    session_warnings,
    sessions_cut,
)
from portguard.model import Policy
from portguard.policy import parse_policy
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab, Netns, portguard_argv
from tests.test_ports_cmd import clean_env

# Held sockets: the listener accepts and keeps every connection, the client keeps its one.
SERVER = """
import socket, sys, threading
name, address, port = sys.argv[1:4]
with open("/proc/self/comm", "w") as comm:
    comm.write(name)
family = socket.AF_INET6 if ":" in address else socket.AF_INET
server = socket.socket(family, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, int(port)))
server.listen()
held = []
def accept():
    while True:
        held.append(server.accept()[0])
threading.Thread(target=accept, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
sys.stdin.read()
"""
WEB_ONLY = "version: 1\nallow:\n  - port: [80, 443]\n"
EVERYTHING_SSH = "version: 1\nallow:\n  - port: [22, 2222, 3389, 8080]\n"


def policy_of(text: str) -> Policy:
    """A policy parsed from YAML text."""
    return parse_policy(text.encode(), "p.yaml").policy


def session(
    peer: str, port: int, interface: str | None = "eth0", admin: bool = True
) -> LiveSession:
    """A LiveSession value for the pure tests."""
    return LiveSession(ip_address(peer), port, interface, admin)


# --- pure decisions -------------------------------------------------------------------------

ADMINS_ON_ETH1 = """\
version: 1
allow:
  - port: 22
    from: [192.0.2.0/24]
  - port: 2222
    interface: eth1
  - port: 80
"""


@pytest.mark.parametrize(
    ("live", "refused"),
    [
        (session("192.0.2.9", 22), False),  # an allowed source
        (session("203.0.113.5", 22), True),  # another source, sshd port
        (session("203.0.113.5", 2222, "eth1"), False),  # the interface-bound entry saves it
        (session("203.0.113.5", 2222, "eth0"), True),  # ... only on that interface
        (session("203.0.113.5", 2222, None), True),  # unknown interface: no entry names it
        (session("203.0.113.5", 2222, "lo"), False),  # arriving on loopback is accepted
        (session("2001:db8::5", 22), True),  # IPv6 peer outside the IPv4 list
        (session("127.0.0.1", 22), False),  # a loopback peer is never refused
        (session("203.0.113.5", 8080, admin=False), False),  # not admin: never a refusal
    ],
)
def test_refusal_decision_per_session(live: LiveSession, refused: bool) -> None:
    """A policy is refused exactly when it would refuse a NEW connection of an admin session."""
    policy = policy_of(ADMINS_ON_ETH1)
    reason = refusal_reason(policy, None, sessions_cut(policy, [live]))
    assert (reason is not None) is refused
    if reason is not None:
        assert f"from {live.peer} to port {live.port}" in reason
        assert "\n" not in reason


def test_refusal_names_the_first_session_and_counts_the_rest() -> None:
    """Several cut admin sessions make one line: the first named, the others counted."""
    policy = policy_of(WEB_ONLY)
    cut = sessions_cut(policy, [session("203.0.113.5", 22), session("203.0.113.6", 2222)])
    reason = refusal_reason(policy, None, cut)
    assert reason is not None
    assert "203.0.113.5 to port 22" in reason
    assert "arrives on eth0" in reason
    assert "(and 1 more admin session)" in reason
    assert refusal_reason(policy, "ssh says so", cut) == "ssh says so"


def test_other_services_are_warnings_capped() -> None:
    """Non-admin sessions that would be cut are warnings, at most five and a count."""
    policy = policy_of(WEB_ONLY)
    live = [session(f"203.0.113.{i}", 8080, admin=False) for i in range(1, 9)]
    cut = sessions_cut(policy, live)
    assert cut.admin == () and len(cut.other) == 8
    assert refusal_reason(policy, None, cut) is None
    lines = session_warnings(cut)
    assert len(lines) == 6
    assert "203.0.113.1 to port 8080" in lines[0]
    assert lines[-1] == "... and 3 more such sessions"


def test_prefilter_is_interface_agnostic() -> None:
    """could_refuse ignores interface-bound entries; open_to_everyone needs an unbound one."""
    policy = policy_of(ADMINS_ON_ETH1)
    peer = IPv4Address("203.0.113.5")
    assert could_refuse(policy, peer, 2222)  # needs the route lookup to decide
    assert not could_refuse(policy, peer, 80)
    assert not could_refuse(policy, IPv4Address("192.0.2.9"), 22)
    assert open_to_everyone(policy, 80)
    assert not open_to_everyone(policy, 22)
    assert not open_to_everyone(policy, 2222)


def test_port_filter_bytecode_layout() -> None:
    """Each range is S_GE, S_LE, JMP; misses go to the next range, the last one past the end."""
    code = port_filter_bytecode([(22, 22), (2222, 2223)])
    assert len(code) == 40
    ops = [tuple(code[i : i + 4]) for i in range(0, 40, 4)]
    assert ops[0][:2] == (2, 8) and int.from_bytes(bytes(ops[0][2:]), "little") == 20
    assert ops[5][:2] == (2, 8) and int.from_bytes(bytes(ops[5][2:]), "little") == 24
    assert int.from_bytes(bytes(ops[8][2:]), "little") == 2223


def _conn(
    status: str, laddr: tuple[str, int], raddr: tuple[str, int] | tuple[()], pid: int
) -> object:
    """A fake psutil connection (sconn)."""
    address = SimpleNamespace
    return SimpleNamespace(
        type=socket.SOCK_STREAM,
        status=status,
        laddr=address(ip=laddr[0], port=laddr[1]),
        raddr=address(ip=raddr[0], port=raddr[1]) if raddr else (),
        pid=pid,
    )


def test_windows_rdp_sessions_from_fake_psutil() -> None:
    """On Windows, established connections to TermService's port are admin sessions."""
    connections = [
        _conn("LISTEN", ("0.0.0.0", 3389), (), 1200),
        _conn("ESTABLISHED", ("192.0.2.1", 3389), ("203.0.113.5", 50000), 1200),
        _conn("ESTABLISHED", ("::ffff:192.0.2.1", 3389), ("::ffff:203.0.113.5", 50001), 1200),
        _conn("LISTEN", ("0.0.0.0", 8080), (), 900),
        _conn("ESTABLISHED", ("192.0.2.1", 8080), ("203.0.113.6", 50002), 900),
        _conn("LISTEN", ("0.0.0.0", 80), (), 901),
        _conn("ESTABLISHED", ("192.0.2.1", 80), ("203.0.113.7", 50003), 901),  # open to all
        _conn("ESTABLISHED", ("192.0.2.1", 50004), ("198.51.100.1", 443), 77),  # outbound
    ]
    policy = policy_of(WEB_ONLY)
    live = sessions_from_connections(policy, connections, frozenset({1200}))
    assert sorted((str(s.peer), s.port, s.admin, s.interface) for s in live) == [
        ("203.0.113.5", 3389, True, None),
        ("203.0.113.6", 8080, False, None),
    ]
    reason = refusal_reason(policy, None, sessions_cut(policy, live))
    assert reason is not None and "203.0.113.5 to port 3389" in reason


# --- real sessions in throwaway namespaces --------------------------------------------------


@contextmanager
def _helper(ns: Netns, script: str, ready: str, *args: str) -> Iterator[None]:
    """Run a Python `script` with `args` in `ns` until the block ends; wait for its `ready` line."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "/usr/bin/python3", "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == ready, proc.stderr
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def server(ns: Netns, name: str, address: str, port: int) -> AbstractContextManager[None]:
    """A TCP listener whose process is named `name`, accepting and holding connections."""
    return _helper(ns, SERVER, "ready", name, address, str(port))


def session_from(ns: Netns, address: str, port: int) -> AbstractContextManager[None]:
    """An ESTABLISHED connection from `ns` to address:port, held until the block ends."""
    return _helper(ns, CLIENT, "connected", address, str(port))


def _connects(ns: Netns, address: str, port: int) -> bool:
    """Whether a NEW connection from `ns` to address:port is established within 3 s."""
    script = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    done = ns.run(["/usr/bin/python3", "-c", script, address, str(port)], check=False)
    return done.returncode == 0


def _table(ns: Netns) -> str:
    """`nft -s list table inet portguard` in `ns` (rules without counter values), or ""."""
    return ns.run(["nft", "-s", "list", "table", "inet", "portguard"], check=False).stdout


def _apply(ns: Netns, policy: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `portguard apply POLICY --yes` in `ns` without SSH_CONNECTION."""
    argv = portguard_argv("apply", str(policy), "--yes", "--state-dir", str(state), *extra)
    return ns.run(argv, check=False, env=clean_env())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a policy file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _baseline(pair: Lab, tmp_path: Path) -> tuple[Path, str]:
    """Apply a policy that keeps every test port open; return the state dir and the table."""
    state = tmp_path / "state"
    done = _apply(pair.host, _write(tmp_path, "open.yaml", EVERYTHING_SSH), state)
    assert done.returncode == 0, done.stderr
    return state, _table(pair.host)


def _assert_refused(
    pair: Lab, tmp_path: Path, policy_text: str, target: tuple[str, int], peer: str
) -> None:
    """With a live admin session, apply is refused with one line; --force then applies."""
    server_address, port = target
    state, before = _baseline(pair, tmp_path)
    policy = _write(tmp_path, "cutting.yaml", policy_text)
    refused = _apply(pair.host, policy, state)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "refusing to apply" in refused.stderr
    assert f"from {peer} to port {port}" in refused.stderr
    assert _table(pair.host) == before
    assert _connects(pair.scanner, server_address, port)
    forced = _apply(pair.host, policy, state, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "warning: --force:" in forced.stderr
    assert _table(pair.host) != before


@pytest.mark.netns
@pytest.mark.parametrize("port", [22, 2222])
def test_live_sshd_session_refuses_a_cutting_policy(
    net_lab: Lab, tmp_path: Path, port: int
) -> None:
    """A session to sshd on 22 or 2222, without SSH_CONNECTION, refuses a policy that cuts it."""
    with (
        server(net_lab.host, "sshd", "0.0.0.0", port),
        session_from(net_lab.scanner, HOST_V4, port),
    ):
        _assert_refused(net_lab, tmp_path, WEB_ONLY, (HOST_V4, port), SCANNER_V4)


@pytest.mark.netns
def test_live_xrdp_session_refuses_a_cutting_policy(net_lab: Lab, tmp_path: Path) -> None:
    """An RDP session to xrdp on 3389 is an admin session too: a policy cutting it is refused."""
    with (
        server(net_lab.host, "xrdp", "0.0.0.0", 3389),
        session_from(net_lab.scanner, HOST_V4, 3389),
    ):
        _assert_refused(net_lab, tmp_path, WEB_ONLY, (HOST_V4, 3389), SCANNER_V4)


@pytest.mark.netns
def test_live_ipv6_session_is_seen(net_lab: Lab, tmp_path: Path) -> None:
    """An IPv6 session to sshd refuses a policy that allows SSH from an IPv4 network only."""
    text = "version: 1\nallow:\n  - port: 22\n    from: [192.0.2.0/24]\n"
    with server(net_lab.host, "sshd", "::", 22), session_from(net_lab.scanner, HOST_V6, 22):
        _assert_refused(net_lab, tmp_path, text, (HOST_V6, 22), SCANNER_V6)


@pytest.mark.netns
def test_server_address_on_lo_uses_the_routed_interface(net_lab: Lab, tmp_path: Path) -> None:
    """With the server address on lo, the session arrives on the veth: lo is not assumed."""
    service = "10.77.0.1"
    net_lab.host.run(["ip", "addr", "add", f"{service}/32", "dev", "lo"])
    net_lab.scanner.run(["ip", "route", "add", f"{service}/32", "via", HOST_V4])
    on_veth = f"version: 1\nallow:\n  - port: 22\n    interface: {net_lab.host_if}\n"
    with server(net_lab.host, "sshd", service, 22), session_from(net_lab.scanner, service, 22):
        _assert_refused(net_lab, tmp_path, WEB_ONLY, (service, 22), SCANNER_V4)
        kept = _apply(net_lab.host, _write(tmp_path, "veth.yaml", on_veth), tmp_path / "s2")
        assert kept.returncode == 0, kept.stderr
    # SSH_CONNECTION naming the lo address is routed the same way (it once counted as lo).
    env = clean_env(SSH_CONNECTION=f"{SCANNER_V4} 50000 {service} 22")
    argv = portguard_argv("apply", str(tmp_path / "cutting.yaml"), "--yes", "--state-dir")
    done = net_lab.host.run([*argv, str(tmp_path / "s3")], check=False, env=env)
    assert done.returncode == 1, done.stderr
    assert f"from {SCANNER_V4} to port 22" in done.stderr


@pytest.mark.netns
def test_server_address_on_a_second_interface(net_lab: Lab, tmp_path: Path) -> None:
    """Address on a second interface, packets through the first: its entry is no help."""
    service = "198.51.100.1"
    host = net_lab.host
    host.run(["ip", "link", "add", "pg-second", "type", "veth", "peer", "name", "pg-second-p"])
    host.run(["ip", "addr", "add", f"{service}/32", "dev", "pg-second"])
    for ifname in ("pg-second", "pg-second-p"):
        host.run(["ip", "link", "set", ifname, "up"])
    net_lab.scanner.run(["ip", "route", "add", f"{service}/32", "via", HOST_V4])
    on_second = "version: 1\nallow:\n  - port: 2222\n    interface: pg-second\n"
    on_veth = f"version: 1\nallow:\n  - port: 2222\n    interface: {net_lab.host_if}\n"
    with server(host, "sshd", service, 2222), session_from(net_lab.scanner, service, 2222):
        _assert_refused(net_lab, tmp_path, on_second, (service, 2222), SCANNER_V4)
        kept = _apply(host, _write(tmp_path, "veth.yaml", on_veth), tmp_path / "state")
        assert kept.returncode == 0, kept.stderr


@pytest.mark.netns
def test_other_service_session_is_a_warning(net_lab: Lab, tmp_path: Path) -> None:
    """A live session to a non-sshd listener the policy cuts is one warning; apply goes on."""
    with (
        server(net_lab.host, "nginx", "0.0.0.0", 8080),
        session_from(net_lab.scanner, HOST_V4, 8080),
    ):
        done = _apply(net_lab.host, _write(tmp_path, "web.yaml", WEB_ONLY), tmp_path / "state")
    assert done.returncode == 0, done.stderr
    assert f"warning: new connections from {SCANNER_V4} to port 8080 would be refused" in (
        done.stderr
    )
    assert "table inet portguard" in _table(net_lab.host)


@pytest.mark.netns
def test_boot_reapply_keeps_the_rules_while_a_session_is_live(net_lab: Lab, tmp_path: Path) -> None:
    """apply --boot of a cutting edit: exit 1, one log line, rules and records unchanged."""
    state, before = _baseline(net_lab, tmp_path)
    records = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    policy = _write(tmp_path, "edited.yaml", WEB_ONLY)
    argv = portguard_argv("apply", "--boot", "--state-dir", str(state), str(policy))
    with server(net_lab.host, "sshd", "0.0.0.0", 22), session_from(net_lab.scanner, HOST_V4, 22):
        refused = net_lab.host.run(argv, check=False, env=clean_env())
        assert _connects(net_lab.scanner, HOST_V4, 22)
    assert refused.returncode == 1
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"portguard: {policy}: not applied: lockout guard:")
    assert f"from {SCANNER_V4} to port 22" in lines[0]
    assert lines[0].endswith("rules in force left as they are")
    assert _table(net_lab.host) == before
    assert {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()} == records
    applied = json.loads((state / "applied.json").read_text())
    assert "edited.yaml" not in json.dumps(applied)
    # No session (as at early boot): the same edit goes in.
    again = net_lab.host.run(argv, check=False, env=clean_env())
    assert again.returncode == 0, again.stderr
    assert _table(net_lab.host) != before


FILTER_CHECK = """
import json, socket
from portguard.facts.sockets import TCP_ESTABLISHED, _dump, parse_connections, port_filter_bytecode
servers, held = [], []
for port in (22, 80, 81, 2222):
    s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen(); servers.append(s)
    for _ in range(3):
        held.append(socket.create_connection(("127.0.0.1", port))); held.append(s.accept()[0])
code = port_filter_bytecode([(22, 22), (80, 80)])
bodies = _dump(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_ESTABLISHED, code)
unfiltered = _dump(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_ESTABLISHED, b"")
print(json.dumps([sorted(c.local_port for c in parse_connections(bodies)), len(unfiltered)]))
"""


@pytest.mark.netns
def test_kernel_filters_established_by_port(netns: Netns) -> None:
    """The sock_diag bytecode makes the kernel send only connections to the wanted ports."""
    done = netns.run([sys.executable, "-c", FILTER_CHECK])
    filtered, everything = json.loads(done.stdout)
    assert filtered == [22, 22, 22, 80, 80, 80]
    assert everything == 24  # both ends of 12 connections


@pytest.mark.netns
@pytest.mark.parametrize("ptrace", [False, True])
def test_boot_guard_needs_sys_ptrace_to_see_sshd(
    net_lab: Lab, tmp_path: Path, ptrace: bool
) -> None:
    """In the unit's capability set without CAP_SYS_PTRACE the guard refuses, never guesses."""
    caps = "-all,+net_admin" + (",+sys_ptrace" if ptrace else "")
    policy = _write(tmp_path, "edited.yaml", WEB_ONLY)
    argv = portguard_argv("apply", "--boot", "--state-dir", str(tmp_path / "s"), str(policy))
    with server(net_lab.host, "sshd", "0.0.0.0", 22), session_from(net_lab.scanner, HOST_V4, 22):
        done = net_lab.host.run(
            ["setpriv", f"--bounding-set={caps}", *argv], check=False, env=clean_env()
        )
    assert done.returncode == 1
    expected = "lockout guard:" if ptrace else "cannot see the live sessions:"
    assert expected in done.stderr
    assert _table(net_lab.host) == ""
