"""The loader: what a valid policy becomes, and the decisions the README documents."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, collapse_addresses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.errors import Location, PolicyError
from portguard.model import DefaultVerdict, IcmpMode, Limit, Policy, PortRange, Proto, RateUnit
from portguard.policy import load_policy, parse_policy
from portguard.policy.yamlnodes import MAX_POLICY_BYTES, decode_text
from portguard.services import load_services
from tests.test_verdict import policies

SERVICES = load_services()


def test_minimal_policy_takes_the_documented_defaults() -> None:
    """version + allow: [] means drop, icmp essential, no log, no entries."""
    policy = parse_policy("version: 1\nallow: []\n", "m.yaml").policy
    assert (policy.version, policy.default, policy.icmp, policy.log) == (
        1,
        DefaultVerdict.DROP,
        IcmpMode.ESSENTIAL,
        False,
    )
    assert policy.allow == ()
    assert policy.path == "m.yaml"


def test_ports_lists_ranges_and_scalars() -> None:
    """A scalar, a list and "A-B" ranges become sorted, de-duplicated PortRanges."""
    text = 'version: 1\nallow:\n  - port: [443, "8000 - 8100", 80, 443]\n  - port: 22\n'
    first, second = parse_policy(text, "p.yaml").policy.allow
    assert first.ports == (PortRange(80, 80), PortRange(443, 443), PortRange(8000, 8100))
    assert second.ports == (PortRange(22, 22),)
    assert first.ports_text() == "80,443,8000-8100"
    assert (first.location, second.location) == (Location("p.yaml", 3, 5), Location("p.yaml", 4, 5))


def test_protocols_default_and_order() -> None:
    """proto defaults to tcp; a scalar or list in any order comes out as (tcp, udp)."""
    text = "version: 1\nallow:\n  - port: 1\n  - port: 2\n    proto: udp\n"
    text += "  - port: 3\n    proto: [udp, tcp, udp]\n"
    protos = [rule.protos for rule in parse_policy(text, "p.yaml").policy.allow]
    assert protos == [(Proto.TCP,), (Proto.UDP,), (Proto.TCP, Proto.UDP)]


def test_services_by_name_and_case() -> None:
    """A service name (any case) becomes its port, and is remembered."""
    text = "version: 1\nallow:\n  - service: SSH\n  - service: domain\n    proto: [tcp, udp]\n"
    ssh, dns = parse_policy(text, "p.yaml").policy.allow
    assert (ssh.ports, ssh.service) == ((PortRange(22, 22),), "SSH")
    assert dns.ports == (PortRange(53, 53),)


def test_sources_inline_sets_and_files(tmp_path: Path) -> None:
    """from mixes addresses and @sets (inline or from a file); networks are collapsed."""
    (tmp_path / "partners.txt").write_text(
        "# partners\r\n203.0.113.0/25\r\n  203.0.113.128/25 # second half\r\n"
        "\r\n2001:db8:1::/48\r\n"
    )
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nsets:\n  office: [192.0.2.0/24, 192.0.2.7]\n"
        "  partners: {file: partners.txt}\nallow:\n"
        "  - port: 443\n    from: ['@office', '@partners', 198.51.100.9]\n"
    )
    policy = load_policy(tmp_path / "policy.yaml").policy
    assert dict(policy.sets)["partners"] == (
        IPv4Network("203.0.113.0/24"),
        IPv6Network("2001:db8:1::/48"),
    )
    (rule,) = policy.allow
    assert rule.source_names == ("@office", "@partners", "198.51.100.9")
    assert rule.sources == (
        IPv4Network("192.0.2.0/24"),
        IPv4Network("198.51.100.9/32"),
        IPv4Network("203.0.113.0/24"),
        IPv6Network("2001:db8:1::/48"),
    )


def test_interface_limit_and_comment() -> None:
    """interface (with a * prefix), limit with spaces, and a 256-character comment load."""
    comment = "c" * 256
    text = "version: 1\nallow:\n  - port: 22\n    interface: 'wg*'\n    limit: 6 / minute\n"
    text += f"    comment: {comment}\n"
    (rule,) = parse_policy(text, "p.yaml").policy.allow
    assert (rule.interface, rule.limit, rule.comment) == ("wg*", Limit(6, RateUnit.MINUTE), comment)


def test_byte_order_mark_and_anchors_are_fine() -> None:
    """A UTF-8 BOM is skipped; an anchor without an alias is harmless and allowed."""
    data = "\ufeffversion: 1\nsets:\n  office: &o [10.0.0.0/8]\nallow: []\n".encode()
    policy = parse_policy(data, "p.yaml").policy
    assert dict(policy.sets)["office"] == (IPv4Network("10.0.0.0/8"),)


def test_oversized_policy_text_is_refused() -> None:
    """Policy text over MAX_POLICY_BYTES (4 MiB) is an error; decode_text can go without one."""
    big = b"#" * (MAX_POLICY_BYTES + 1)
    with pytest.raises(PolicyError, match="larger than"):
        parse_policy(big, "big.yaml")
    assert decode_text("big.txt", big, max_bytes=None) == big.decode()


def test_errors_carry_their_location() -> None:
    """A PolicyError keeps the location and the bare message apart, for other tools."""
    with pytest.raises(PolicyError) as caught:
        parse_policy("version: 1\nallow:\n  - port: 70000\n", "e.yaml")
    assert caught.value.location == Location("e.yaml", 3, 11)
    assert caught.value.message == "port 70000 is out of range 1-65535"


YAML_PIECES = st.sampled_from(
    [
        "version", "allow", "port", "service", "from", "proto", "sets", "limit", "interface",
        "comment", "1", "22", "0", "-", "[", "]", "{", "}", ": ", "\n", "\n  ", "\n  - ", "@x",
        "'", '"', "tcp", "10.0.0.0/8", "::/0", "!!int ", "&a ", "*a", "#", "1-2", "6/minute",
        "null", "true", "1.5", "? ", "|", "\t", "%", "\x00", "\ufeff", ",", "---", "=", "<<",
    ]
)  # fmt: skip
POLICY_INPUTS = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=120),
    st.lists(YAML_PIECES, max_size=30).map("".join),
    st.lists(YAML_PIECES, max_size=25).map(lambda xs: "version: 1\nallow:\n  - " + "".join(xs)),
)


@settings(max_examples=300, deadline=None)
@given(POLICY_INPUTS)
def test_any_input_is_a_policy_or_one_located_error(data: bytes | str) -> None:
    """Whatever the bytes, the loader returns a Policy or raises a one-line PolicyError."""
    try:
        parse_policy(data, "fuzz.yaml", services=SERVICES)
    except PolicyError as error:
        assert str(error).startswith("fuzz.yaml:")
        assert "\n" not in str(error)


def _as_yaml(policy: Policy) -> str:
    """A policy written out as its YAML file (no sets; sources inline)."""
    entries: list[dict[str, object]] = []
    for rule in policy.allow:
        entry: dict[str, object] = {"port": [str(r) for r in rule.ports]}
        entry["proto"] = [p.value for p in rule.protos]
        if rule.sources:
            entry["from"] = [str(n) for n in rule.sources]
        if rule.interface is not None:
            entry["interface"] = rule.interface
        if rule.limit is not None:
            entry["limit"] = str(rule.limit)
        entries.append(entry)
    document = {
        "version": 1,
        "default": policy.default.value,
        "icmp": policy.icmp.value,
        "log": policy.log,
        "forwarded": policy.forwarded.value,
        "allow": entries,
    }
    return yaml.safe_dump(document, sort_keys=False)


@settings(max_examples=100, deadline=None)
@given(policies(max_rules=5))
def test_written_out_policy_loads_back_to_the_same_meaning(policy: Policy) -> None:
    """Ports, protocols, sources (collapsed), interface, limit and defaults survive the file."""
    loaded = parse_policy(_as_yaml(policy), "round.yaml", services=SERVICES).policy
    assert (loaded.default, loaded.icmp, loaded.log) == (policy.default, policy.icmp, policy.log)
    assert loaded.forwarded is policy.forwarded
    assert len(loaded.allow) == len(policy.allow)
    for got, wanted in zip(loaded.allow, policy.allow, strict=True):
        assert got.ports == wanted.ports
        assert got.protos == wanted.protos
        expected_sources = (
            None
            if not wanted.sources
            else tuple(collapse_addresses(n for n in wanted.sources if n.version == 4))
            + tuple(collapse_addresses(n for n in wanted.sources if n.version == 6))
        )
        assert got.sources == expected_sources
        assert (got.interface, got.limit) == (wanted.interface, wanted.limit)
