"""Published ports obey the policy: Docker's own iptables-nft rules, a container namespace.

The host namespace publishes a "container" (a namespace behind a veth) exactly as Docker
20.10+ does with iptables-nft: nat PREROUTING → DOCKER chain DNAT, filter FORWARD policy
DROP with DOCKER-USER and DOCKER accepts, MASQUERADE out. Probes come from the scanner.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.netns import (
    HOST_V4,
    SCANNER_V4,
    Lab,
    Netns,
    can_make_netns,
    lab,
    portguard_argv,
    throwaway_netns,
)
from tests.probe import (
    FILTERED,
    OPEN,
    SCANNER_V4_EXTRA,
    Probe,
    add_address,
    finish_flow,
    listeners,
    scan,
    start_flow,
)

pytestmark = pytest.mark.netns

BRIDGE_IF, CONTAINER_IF = "pg-ctr0", "pg-ctr1"
HOST_ON_BRIDGE, CONTAINER = "198.51.100.1", "198.51.100.2"
# published port -> container port, as `docker run -p 8080:80 -p 8081:81 -p 5353:53/udp`
PUBLISHED: dict[tuple[Literal["tcp", "udp"], int], int] = {
    ("tcp", 8080): 80,
    ("tcp", 8081): 81,
    ("udp", 5353): 53,
}
PROBE_TIMEOUT = 2.5


def _docker_rules() -> list[list[str]]:
    """Docker 20.10's iptables-nft rules for the three published ports (docker0 → pg-ctr0)."""
    rules = [
        "-t nat -N DOCKER",
        "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        f"-t nat -A POSTROUTING -s 198.51.100.0/24 ! -o {BRIDGE_IF} -j MASQUERADE",
        f"-t nat -A DOCKER -i {BRIDGE_IF} -j RETURN",
        "-N DOCKER",
        "-N DOCKER-USER",
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-USER",
        f"-A FORWARD -o {BRIDGE_IF} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A FORWARD -o {BRIDGE_IF} -j DOCKER",
        f"-A FORWARD -i {BRIDGE_IF} ! -o {BRIDGE_IF} -j ACCEPT",
        "-A DOCKER-USER -j RETURN",
    ]
    for (proto, published), port in PUBLISHED.items():
        rules.append(
            f"-t nat -A DOCKER ! -i {BRIDGE_IF} -p {proto} -m {proto} --dport {published}"
            f" -j DNAT --to-destination {CONTAINER}:{port}"
        )
        rules.append(
            f"-A DOCKER -d {CONTAINER}/32 ! -i {BRIDGE_IF} -o {BRIDGE_IF} -p {proto} -m {proto}"
            f" --dport {port} -j ACCEPT"
        )
    # A routed, non-DNAT path straight to the container's address (another router's job),
    # opened in DOCKER-USER as an admin would.
    rules.append(f"-I DOCKER-USER 1 -d {CONTAINER}/32 -p tcp --dport 81 -j ACCEPT")
    return [rule.split() for rule in rules]


@dataclass(frozen=True)
class DockerLab:
    """The lab, the container namespace, and where the policies go."""

    lab: Lab
    container: Netns
    policy_dir: Path

    def apply(self, text: str, state: Path, *extra: str) -> None:
        """Write `text` as a policy and apply it in the host namespace."""
        policy = self.policy_dir / f"p{abs(hash(text))}.yaml"
        policy.write_text(text)
        argv = ["apply", str(policy), "--yes", "--state-dir", str(state), *extra]
        done = self.lab.host.run(portguard_argv(*argv), check=False)
        assert done.returncode == 0, done.stderr

    def iptables_tables(self) -> str:
        """The iptables-nft tables (ip nat, ip filter) as nft lists them, without counters."""
        return "".join(
            self.lab.host.run(["nft", "-s", "list", "table", "ip", name]).stdout
            for name in ("nat", "filter")
        )


@pytest.fixture(scope="module")
def docker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerLab]:
    """Host, scanner and a published container, with listeners in the container."""
    if (
        not can_make_netns()
        or subprocess.run(["which", "iptables-nft"], check=False, capture_output=True).returncode
    ):
        pytest.skip("needs root, ip, nft and iptables-nft")
    with lab("pgd") as pair, throwaway_netns("pgdc") as container:
        host = pair.host
        host.run(["ip", "link", "add", BRIDGE_IF, "type", "veth", "peer", "name", CONTAINER_IF])
        host.run(["ip", "link", "set", CONTAINER_IF, "netns", container.name])
        host.run(["ip", "addr", "add", f"{HOST_ON_BRIDGE}/24", "dev", BRIDGE_IF])
        host.run(["ip", "link", "set", BRIDGE_IF, "up"])
        container.run(["ip", "addr", "add", f"{CONTAINER}/24", "dev", CONTAINER_IF])
        container.run(["ip", "link", "set", CONTAINER_IF, "up"])
        container.run(["ip", "route", "add", "default", "via", HOST_ON_BRIDGE])
        host.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        pair.scanner.run(["ip", "route", "add", "198.51.100.0/24", "via", HOST_V4])
        add_address(pair.scanner, pair.scanner_if, f"{SCANNER_V4_EXTRA}/24")
        for rule in _docker_rules():
            host.run(["iptables-nft", *rule])
        with listeners(container, tcp=(80, 81), udp=(53,)):
            yield DockerLab(pair, container, tmp_path_factory.mktemp("policies"))


@pytest.fixture
def dl(docker_lab: DockerLab) -> DockerLab:
    """The lab with no portguard table."""
    docker_lab.lab.host.run(["nft", "delete", "table", "inet", "portguard"], check=False)
    return docker_lab


def _reach(dl: DockerLab, src: str = SCANNER_V4) -> dict[str, str]:
    """What the scanner sees on each published port, and routed (no DNAT) to the container."""
    probes = [Probe(proto, HOST_V4, port, src) for proto, port in PUBLISHED]
    probes.append(Probe("tcp", CONTAINER, 81, src))
    results = scan(dl.lab.scanner, probes, PROBE_TIMEOUT)
    return {
        f"{'published' if r.probe.dst == HOST_V4 else 'routed'} {r.probe.proto} {r.probe.port}": (
            r.outcome
        )
        for r in results
    }


ALL_OPEN = {
    "published tcp 8080": OPEN,
    "published tcp 8081": OPEN,
    "published udp 5353": OPEN,
    "routed tcp 81": OPEN,
}


def test_published_ports_obey_the_allow_list(dl: DockerLab, tmp_path: Path) -> None:
    """Before: every published port answers. After: only allowed ones; routed flows untouched."""
    assert _reach(dl) == ALL_OPEN
    before = dl.iptables_tables()
    dl.apply("version: 1\nallow:\n  - port: 22\n  - port: 8080\n", tmp_path / "s")
    assert _reach(dl) == {
        **ALL_OPEN,
        "published tcp 8081": FILTERED,
        "published udp 5353": FILTERED,
    }
    assert dl.iptables_tables() == before  # Docker's tables are not touched


def test_from_and_udp_apply_to_published_ports(dl: DockerLab, tmp_path: Path) -> None:
    """`from` is honoured on the client's address; UDP published ports are filtered too."""
    dl.apply(
        f"version: 1\nallow:\n  - port: 8081\n    from: [{SCANNER_V4}]\n"
        "  - port: 5353\n    proto: udp\n",
        tmp_path / "s",
    )
    assert _reach(dl) == {**ALL_OPEN, "published tcp 8080": FILTERED}
    assert _reach(dl, SCANNER_V4_EXTRA) == {
        **ALL_OPEN,
        "published tcp 8080": FILTERED,
        "published tcp 8081": FILTERED,
    }


def test_forwarded_ignore_restores_the_old_behaviour(dl: DockerLab, tmp_path: Path) -> None:
    """`forwarded: ignore`: published ports answer whatever the list says; then filter again."""
    state = tmp_path / "s"
    dl.apply("version: 1\nforwarded: ignore\nallow:\n  - port: 22\n", state)
    assert _reach(dl) == ALL_OPEN
    dl.apply("version: 1\nallow:\n  - port: 22\n", state)
    assert _reach(dl) == {
        **ALL_OPEN,
        "published tcp 8080": FILTERED,
        "published tcp 8081": FILTERED,
        "published udp 5353": FILTERED,
    }


def test_established_published_flow_survives_reapplies(dl: DockerLab, tmp_path: Path) -> None:
    """A TCP flow through a published port keeps going, without a retransmit, over 10 applies."""
    state = tmp_path / "s"
    policies = [
        "version: 1\nallow:\n  - port: 8080\n",
        "version: 1\nallow:\n  - port: [8080, 22]\n",
    ]
    dl.apply(policies[0], state)
    before = dl.iptables_tables()
    with start_flow(dl.lab.scanner, HOST_V4, 8080) as flow:
        for number in range(10):
            dl.apply(policies[number % 2], state)
        result = finish_flow(flow)
    assert result.error is None and result.exchanges > 10, result
    assert result.retransmits == 0, result
    done = dl.lab.host.run(portguard_argv("remove", "--yes", "--state-dir", str(state)))
    assert done.returncode == 0
    assert dl.iptables_tables() == before
