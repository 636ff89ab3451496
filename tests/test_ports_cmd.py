"""`ports` and `plan` against real listeners in a throwaway namespace, then apply and re-plan."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns import HOST_V4, SCANNER_V4, Lab, Netns, portguard_argv

pytestmark = pytest.mark.netns

# Each listener is its own process, named (via /proc/self/comm) like the daemon it stands for.
LISTENER = """
import socket, sys
proto, address, port, name = sys.argv[1:5]
with open("/proc/self/comm", "w") as comm:
    comm.write(name)
family = socket.AF_INET6 if ":" in address else socket.AF_INET
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
sock = socket.socket(family, kind)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((address, int(port)))
if proto == "tcp":
    sock.listen()
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class Listener:
    """A socket to hold open: protocol, bound address, port, and the process name."""

    proto: str
    address: str
    port: int
    name: str


HOST_LISTENERS = (
    Listener("tcp", "0.0.0.0", 22, "sshd"),
    Listener("tcp", "0.0.0.0", 80, "nginx"),
    Listener("tcp", "0.0.0.0", 31337, "backdoor"),
    Listener("udp", "0.0.0.0", 5353, "avahi-daemon"),
    Listener("tcp", "127.0.0.1", 631, "cupsd"),
    Listener("tcp", "0.0.0.0", 2222, "sshd"),
    Listener("tcp", "::", 443, "caddy"),
)

POLICY = """\
version: 1
allow:
  - service: ssh
  - port: 443
  - port: 2222
    from: [192.0.2.0/24]
    comment: admins' SSH
  - port: 5353
    proto: udp
    from: [198.51.100.0/24, "2001:db8:7::/64"]
    comment: mDNS from the lab
  - port: 8000-8100
    comment: metrics
"""


@contextmanager
def listening(ns: Netns, listeners: tuple[Listener, ...]) -> Iterator[dict[int, int]]:
    """Start every listener inside `ns`; yield {port: pid}; stop them all on exit."""
    procs: list[tuple[Listener, subprocess.Popen[str]]] = []
    try:
        for item in listeners:
            proc = subprocess.Popen(
                [
                    *("ip", "netns", "exec", ns.name, "/usr/bin/python3", "-c", LISTENER),
                    *(item.proto, item.address, str(item.port), item.name),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((item, proc))
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr
        yield {item.port: proc.pid for item, proc in procs}
    finally:
        for _, proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without SSH_CONNECTION, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    env.update(extra)
    return env


def write_policy(tmp_path: Path, text: str = POLICY, name: str = "policy.yaml") -> Path:
    """Write a policy file and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


def by_port(sockets: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Index JSON sockets by (proto, port)."""
    return {(s["proto"], s["port"]): s for s in sockets}


def test_ports_json_lists_listeners_with_pids_and_names(netns: Netns) -> None:
    """`ports --format json` shows each listener's address, pid (ip netns exec execs) and name."""
    with listening(netns, HOST_LISTENERS) as pids:
        result = netns.run(portguard_argv("ports", "--format", "json"), env=clean_env())
    data = json.loads(result.stdout)
    assert data["published"] == []
    found = by_port(data["sockets"])
    assert set(found) == {(item.proto, item.port) for item in HOST_LISTENERS}
    for item in HOST_LISTENERS:
        sock = found[(item.proto, item.port)]
        assert sock["address"] == item.address
        assert sock["process"] == item.name
        assert sock["pid"] == pids[item.port]
        assert sock["exposed"] is (item.address != "127.0.0.1")
        assert "verdict" not in sock
    assert found[("tcp", 31337)]["trojan"] == "Back Orifice"
    assert found[("tcp", 22)]["trojan"] is None


def test_ports_table_is_plain_when_piped(netns: Netns, tmp_path: Path) -> None:
    """Piped output is a plain aligned table with the verdicts and the trojan flag."""
    policy = write_policy(tmp_path)
    with listening(netns, HOST_LISTENERS[:3]):
        result = netns.run(portguard_argv("ports", "--policy", str(policy)), env=clean_env())
    lines = result.stdout.splitlines()
    assert lines[0] == "3 listening sockets"
    assert lines[1].split() == [
        "proto", "address", "port", "pid", "process", "exposed", "verdict", "note"
    ]  # fmt: skip
    row = next(line for line in lines if " 31337 " in line)
    assert "backdoor" in row and "blocked" in row and "trojan port (Back Orifice)" in row
    assert "\x1b[" not in result.stdout


def test_plan_json_verdicts_then_apply_makes_it_in_sync(netns: Netns, tmp_path: Path) -> None:
    """plan judges every socket; --detailed-exitcode is 2 before apply and 0 after it."""
    policy = write_policy(tmp_path)
    state = str(tmp_path / "state")
    plan_argv = portguard_argv("plan", str(policy), "--state-dir", state, "--detailed-exitcode")
    with listening(netns, HOST_LISTENERS) as pids:
        before = netns.run([*plan_argv, "--format", "json"], check=False, env=clean_env())
        assert before.returncode == 2, before.stderr
        plan = json.loads(before.stdout)
        applied = netns.run(
            portguard_argv("apply", str(policy), "--yes", "--state-dir", state), env=clean_env()
        )
        assert "applied" in applied.stdout
        after = netns.run([*plan_argv, "--format", "json"], check=False, env=clean_env())
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["ruleset"] == {"state": "in-sync", "diff": "", "reason": None}
    assert json.loads(after.stdout)["changes"] is False
    assert plan["policy"] == str(policy)
    assert plan["changes"] is True
    assert plan["ruleset"]["state"] == "absent"
    assert "+table inet portguard {" in plan["ruleset"]["diff"]
    sockets = by_port(plan["sockets"])
    verdicts = {key: s["verdict"] for key, s in sockets.items()}
    assert verdicts == {
        ("tcp", 22): "allowed",
        ("tcp", 80): "blocked",
        ("tcp", 31337): "blocked",
        ("udp", 5353): "allowed",
        ("tcp", 631): "loopback",
        ("tcp", 2222): "allowed",
        ("tcp", 443): "allowed",
    }
    assert sockets[("tcp", 22)]["from_anywhere"] is True
    assert sockets[("tcp", 2222)]["from_anywhere"] is False
    assert sockets[("tcp", 2222)]["allowed_by"] == ["192.0.2.0/24"]
    assert sockets[("udp", 5353)]["allowed_by"] == ["198.51.100.0/24, 2001:db8:7::/64"]
    assert sockets[("tcp", 80)]["process"] == "nginx"
    assert sockets[("tcp", 80)]["pid"] == pids[80]
    assert plan["idle_allows"] == [
        {"proto": "tcp", "ports": "8000-8100", "line": 12, "comment": "metrics"}
    ]


def test_plan_markdown_lists_unreachable_sockets(netns: Netns, tmp_path: Path) -> None:
    """Markdown output names the unreachable programs and carries the diff in a diff block."""
    policy = write_policy(tmp_path)
    state = str(tmp_path / "state")
    with listening(netns, HOST_LISTENERS[:3]):
        result = netns.run(
            portguard_argv("plan", str(policy), "--state-dir", state, "--format", "markdown"),
            env=clean_env(),
        )
    text = result.stdout
    unreachable = text.split("### Listening sockets this policy makes unreachable")[1]
    unreachable = unreachable.split("###")[0]
    assert "| tcp | 0.0.0.0 | 80 |" in unreachable and "nginx" in unreachable
    assert "| tcp | 0.0.0.0 | 31337 |" in unreachable and "trojan port" in unreachable
    assert "sshd" not in unreachable
    assert "**absent: apply will create table inet portguard**" in text
    assert "```diff\n--- live (no portguard rules)\n+++ " in text


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    print("open")
except OSError:
    print("closed")
"""
LAB_POLICY = """\
version: 1
allow:
  - service: ssh
  - port: 2222
    from: [192.0.2.0/24]
  - port: 8080
    from: [198.51.100.0/24]
  - port: 9100
    interface: pg-host0
"""
LAB_LISTENERS = (
    Listener("tcp", "0.0.0.0", 22, "sshd"),
    Listener("tcp", "0.0.0.0", 80, "nginx"),
    Listener("tcp", "0.0.0.0", 2222, "sshd"),
    Listener("tcp", "0.0.0.0", 8080, "proxy"),
    Listener("tcp", "0.0.0.0", 9100, "node_exporter"),
)


def test_plan_verdicts_match_real_packets(net_lab: Lab, tmp_path: Path) -> None:
    """After apply, a scanner reaches what plan calls allowed for it, and nothing it blocks."""
    policy = write_policy(tmp_path, LAB_POLICY)
    state = str(tmp_path / "state")
    host = net_lab.host
    with listening(host, LAB_LISTENERS):
        plan = json.loads(
            host.run(
                portguard_argv("plan", str(policy), "--state-dir", state, "--format", "json"),
                env=clean_env(),
            ).stdout
        )
        # The session arrives on pg-host0, which holds 192.0.2.1: the 9100 entry counts.
        session = clean_env(SSH_CONNECTION=f"{SCANNER_V4} 50000 {HOST_V4} 9100")
        host.run(portguard_argv("apply", str(policy), "--yes", "--state-dir", state), env=session)
        reached = {
            item.port: net_lab.scanner.run(
                ["/usr/bin/python3", "-c", PROBE, HOST_V4, str(item.port)]
            ).stdout.strip()
            for item in LAB_LISTENERS
        }
    judged = {s["port"]: (s["verdict"], s["from_anywhere"]) for s in plan["sockets"]}
    assert judged == {
        22: ("allowed", True),
        80: ("blocked", False),
        2222: ("allowed", False),
        8080: ("allowed", False),
        9100: ("allowed", False),
    }
    assert reached == {22: "open", 80: "closed", 2222: "open", 8080: "closed", 9100: "open"}
