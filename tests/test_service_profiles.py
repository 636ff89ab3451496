"""Built-in service profiles: multi-port, multi-protocol `service:` entries, and `services`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portguard.cli import main
from portguard.errors import PolicyError
from portguard.model import PortRange, Proto
from portguard.policy.load import parse_policy
from portguard.service_profiles import PROFILES
from portguard.services import ServiceTable, builtin_services, load_services, parse_services
from tests.netns import HOST_V4, SCANNER_V4, Lab
from tests.probe import FILTERED, OPEN, Probe, apply_in_host, listeners, prepare_lab, scan

ETC = load_services(Path("/nonexistent"))  # the built-in fallback table: same on every host
SERVICES = ServiceTable(
    ports=parse_services("https 443/tcp\nhttps 443/udp\nsubmission 587/tcp\n"), source="test"
)


def _rules(entry: str, table: ServiceTable = SERVICES) -> list[tuple[tuple[str, ...], str]]:
    """The (protocols, ports) of each rule one allow entry becomes."""
    policy = parse_policy(f"version: 1\nallow:\n  - {entry}\n", "p.yaml", services=table).policy
    return [(tuple(p.value for p in r.protos), r.ports_text()) for r in policy.allow]


def test_at_least_thirty_profiles_with_ports() -> None:
    """≥30 profiles, each with a port; several span both protocols or several ports."""
    assert len(PROFILES) >= 30
    assert all(p.tcp or p.udp for p in PROFILES.values())
    assert sum(1 for p in PROFILES.values() if len(p.protos) == 2) >= 5
    for name in ("ssh", "http", "https", "dns", "samba", "ntp", "mysql", "postgresql", "rdp"):
        assert name in PROFILES


def test_multi_protocol_profile_without_proto() -> None:
    """`service: dns` is tcp and udp 53 in one rule (same ports)."""
    assert _rules("service: dns") == [(("tcp", "udp"), "53")]


def test_multi_port_profile_splits_by_protocol() -> None:
    """`service: samba` is tcp 139,445 and udp 137-138: two rules from one entry."""
    assert _rules("service: samba") == [(("tcp",), "139,445"), (("udp",), "137-138")]


def test_proto_narrows_a_profile() -> None:
    """`proto: udp` keeps only the profile's udp ports."""
    assert _rules("{service: samba, proto: udp}") == [(("udp",), "137-138")]


def test_proto_beyond_the_profile_falls_back_to_etc_services() -> None:
    """https is tcp 443 as a profile; asked for udp too, /etc/services gives udp 443."""
    assert _rules("{service: https, proto: [tcp, udp]}") == [(("tcp", "udp"), "443")]


def test_names_without_a_profile_use_etc_services() -> None:
    """`service: submission` (no profile) is tcp 587 from the services file."""
    assert _rules("service: submission") == [(("tcp",), "587")]


def test_unknown_service_is_a_located_error() -> None:
    """An unknown name names the file, line and column."""
    with pytest.raises(PolicyError, match=r"^p\.yaml:3:14: unknown service 'nope'"):
        _rules("service: nope")


def test_builtin_fallback_table_still_works() -> None:
    """Without /etc/services, the small built-in table resolves non-profile names."""
    assert ETC.source == "built-in"
    assert ETC.ports == builtin_services()
    assert _rules("service: submission", ETC) == [(("tcp",), "587")]
    assert _rules("service: samba", ETC)[0] == (("tcp",), "139,445")


def test_services_command_lists_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    """`portguard services -f json` lists every profile with its tcp and udp ports."""
    assert main(["services", "-f", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == set(PROFILES)
    assert listing["samba"] == {
        "description": PROFILES["samba"].description,
        "tcp": ["139", "445"],
        "udp": ["137-138"],
    }
    assert main(["services"]) == 0
    text = capsys.readouterr().out
    assert f"{len(PROFILES)} built-in service profiles" in text
    assert PROFILES["samba"].ports(Proto.UDP) == (PortRange(137, 138),)


@pytest.mark.netns
def test_samba_profile_on_real_packets(net_lab: Lab, tmp_path: Path) -> None:
    """With `service: samba`, tcp 445 and udp 137 pass; tcp 137 and udp 445 are dropped."""
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nallow:\n  - service: samba\n", encoding="utf-8")
    prepare_lab(net_lab)
    probes = [
        Probe("tcp", HOST_V4, 445, SCANNER_V4),
        Probe("udp", HOST_V4, 137, SCANNER_V4),
        Probe("tcp", HOST_V4, 137, SCANNER_V4),
        Probe("udp", HOST_V4, 445, SCANNER_V4),
    ]
    with listeners(net_lab.host, tcp=(445, 137), udp=(137, 445)):
        before = [r.outcome for r in scan(net_lab.scanner, probes)]
        assert before == [OPEN] * 4  # control: every port answers without rules
        apply_in_host(net_lab, policy, tmp_path / "state")
        after = [r.outcome for r in scan(net_lab.scanner, probes)]
    assert after == [OPEN, OPEN, FILTERED, FILTERED]
