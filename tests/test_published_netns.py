"""Docker's nat rules written with iptables-nft in a throwaway namespace, read by ports and plan."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.netns import AS_NOBODY, Netns, portguard_argv

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        shutil.which("iptables-nft") is None or shutil.which("ip6tables-nft") is None,
        reason="needs iptables-nft (Debian package iptables)",
    ),
]

# As Docker 20.10 writes them for `-p 8080:80 -p 9090:90 -p 5353:53/udp` (and one IPv6 port).
DOCKER_RULES = (
    ("iptables-nft", "-t", "nat", "-N", "DOCKER"),
    ("iptables-nft", "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL",
     "-j", "DOCKER"),
    ("iptables-nft", "-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype",
     "--dst-type", "LOCAL", "-j", "DOCKER"),
    ("iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o",
     "docker0", "-j", "MASQUERADE"),
    ("iptables-nft", "-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"),
    ("iptables-nft", "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "-m", "tcp",
     "--dport", "8080", "-j", "DNAT", "--to-destination", "172.17.0.2:80"),
    ("iptables-nft", "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "-m", "tcp",
     "--dport", "9090", "-j", "DNAT", "--to-destination", "172.17.0.3:90"),
    ("iptables-nft", "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "udp", "-m", "udp",
     "--dport", "5353", "-j", "DNAT", "--to-destination", "172.17.0.2:53"),
    ("ip6tables-nft", "-t", "nat", "-N", "DOCKER"),
    ("ip6tables-nft", "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "-m", "tcp",
     "--dport", "9090", "-j", "DNAT", "--to-destination", "[fd00::3]:90"),
    ("iptables-nft", "-N", "DOCKER-USER"),
    ("iptables-nft", "-A", "DOCKER-USER", "-j", "RETURN"),
    ("iptables-nft", "-P", "FORWARD", "DROP"),
)  # fmt: skip
PUBLISHED = [
    {"proto": "tcp", "port": 8080, "to": "172.17.0.2:80", "table": "ip nat"},
    {"proto": "tcp", "port": 9090, "to": "172.17.0.3:90", "table": "ip nat"},
    {"proto": "udp", "port": 5353, "to": "172.17.0.2:53", "table": "ip nat"},
    {"proto": "tcp", "port": 9090, "to": "[fd00::3]:90", "table": "ip6 nat"},
]


def write_docker_rules(ns: Netns) -> None:
    """Docker's nat and filter rules, through iptables-nft, inside `ns`."""
    for argv in DOCKER_RULES:
        ns.run(argv)


def env() -> dict[str, str]:
    """This process's environment without SSH_CONNECTION."""
    return {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}


def test_ports_json_shows_docker_published_ports(netns: Netns) -> None:
    """`ports --format json` is an object whose `published` lists Docker's DNAT ports."""
    write_docker_rules(netns)
    result = netns.run(portguard_argv("ports", "--format", "json"), env=env())
    data = json.loads(result.stdout)
    assert set(data) == {"sockets", "published"}
    assert data["published"] == PUBLISHED
    assert "XT target" not in result.stderr


def test_ports_table_has_a_published_section(netns: Netns) -> None:
    """The table format prints a second section with the published ports."""
    write_docker_rules(netns)
    lines = netns.run(portguard_argv("ports"), env=env()).stdout.splitlines()
    start = lines.index("Published ports (DNAT)")
    assert lines[start + 1].split() == ["proto", "port", "to", "table"]
    assert lines[start + 2].split() == ["tcp", "8080", "172.17.0.2:80", "ip", "nat"]


def test_plan_json_judges_published_ports(netns: Netns, tmp_path: Path) -> None:
    """A policy allowing 8080 (and udp 5353 from one net) blocks 9090 on both families."""
    write_docker_rules(netns)
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nallow:\n  - port: 8080\n"
        "  - port: 5353\n    proto: udp\n    from: [198.51.100.0/24]\n"
    )
    argv = portguard_argv("plan", str(policy), "--format", "json", "--state-dir", str(tmp_path))
    data = json.loads(netns.run(argv, env=env()).stdout)
    verdicts = [(p["proto"], p["port"], p["to"], p["verdict"]) for p in data["published"]]
    assert verdicts == [
        ("tcp", 8080, "172.17.0.2:80", "allowed"),
        ("tcp", 9090, "172.17.0.3:90", "blocked"),
        ("udp", 5353, "172.17.0.2:53", "allowed"),
        ("tcp", 9090, "[fd00::3]:90", "blocked"),
    ]
    text = netns.run([*argv[:-4], "--state-dir", str(tmp_path)], env=env()).stdout
    section = text.split("Published ports this policy makes unreachable:\n")[1].split("\n\n")[0]
    assert "172.17.0.3:90" in section and "172.17.0.2:80" not in section


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop to nobody")
def test_ports_without_root_notes_and_lists_sockets(netns: Netns) -> None:
    """Without root, `published` is empty, one note goes to stderr, and sockets still work."""
    write_docker_rules(netns)
    result = netns.run([*AS_NOBODY, *portguard_argv("ports", "--format", "json")], env=env())
    data = json.loads(result.stdout)
    assert data["published"] == [] and isinstance(data["sockets"], list)
    notes = [line for line in result.stderr.splitlines() if "published ports" in line]
    assert len(notes) == 1 and "root" in notes[0]
