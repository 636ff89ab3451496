"""The integer path (set-file fast parse, NetworkSet, key collapse, element text) against the
ipaddress definition on random inputs: the speed-up must not change what a set means."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.errors import PolicyError
from portguard.model import Network
from portguard.policy.load import parse_policy
from portguard.policy.networks import (
    NetworkSet,
    collapse,
    contains,
    host_routes,
    in_family,
    network_parts,
    network_texts,
    union,
)
from portguard.render.nftables import render_table

V4_BASE = 10 << 24  # a small neighbourhood, so that draws overlap and touch
V6_BASES = (
    0x2001_0DB8 << 96,
    0,  # ::/96, IPv4-compatible: written in hex by ipaddress, dotted by inet_ntop
    0xFFFF << 32,  # ::ffff:0:0/96, IPv4-mapped: the same
)


def _v4(offset: int, prefix: int) -> Network:
    return ipaddress.IPv4Network((V4_BASE + offset, prefix), strict=False)


def _v6(base: int, offset: int, prefix: int) -> Network:
    return ipaddress.IPv6Network((base + offset, prefix), strict=False)


NEAR_V4 = st.builds(_v4, st.integers(0, 300), st.integers(22, 32))
NEAR_V6 = st.builds(_v6, st.sampled_from(V6_BASES), st.integers(0, 300), st.integers(118, 128))
ANY_V4 = st.builds(
    lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
ANY_V6 = st.builds(
    lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
EVERYTHING = st.sampled_from([ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0")])
NETWORKS = st.lists(st.one_of(NEAR_V4, NEAR_V4, NEAR_V6, ANY_V4, ANY_V6, EVERYTHING), max_size=60)


def expected_collapse(networks: list[Network]) -> tuple[Network, ...]:
    """The definition: ipaddress.collapse_addresses per family, IPv4 first."""
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))


def set_file_line(network: Network, host: int, style: int) -> str:
    """`network` as a set-file line: maybe with host bits, no prefix, blanks or a comment."""
    size = network.num_addresses
    address = network.network_address + (host % size)
    if style == 0 and network.prefixlen == network.max_prefixlen:
        text = str(address)  # a bare address is a host route
    else:
        text = f"{address}/{network.prefixlen}"
    return ("", "  ", "\t")[style % 3] + text + ("", " # note", "\t")[style % 3 if style else 0]


@settings(max_examples=300, deadline=None)
@given(NETWORKS)
def test_collapse_is_ipaddress_collapse(networks: list[Network]) -> None:
    """collapse gives ipaddress.collapse_addresses' networks and str() texts, per family."""
    expected = expected_collapse(networks)
    got = collapse(networks)
    assert isinstance(got, NetworkSet)
    assert got == expected
    assert tuple(got) == expected
    assert network_texts(got) == [str(n) for n in expected]
    for family in (4, 6):
        assert tuple(in_family(got, family)) == tuple(n for n in expected if n.version == family)
    assert list(network_parts(got)) == [
        (n.version, int(n.network_address), n.prefixlen) for n in expected
    ]
    hosts = [(n.version, int(n.network_address)) for n in expected if n.num_addresses == 1]
    assert list(host_routes(got)) == hosts
    assert list(host_routes(expected)) == hosts


ADDRESSES = st.lists(
    st.one_of(
        st.builds(lambda n: ipaddress.IPv4Address(V4_BASE + n), st.integers(-5, 320)),
        st.builds(
            lambda b, n: ipaddress.IPv6Address(b + n),
            st.sampled_from(V6_BASES),
            st.integers(0, 320),
        ),
        st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
        st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(NETWORKS, ADDRESSES)
def test_contains_is_membership(
    networks: list[Network], addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> None:
    """contains (a bisection into a NetworkSet) answers `address in net` for some network."""
    got = collapse(networks)
    for network in got[:5]:  # each collapsed network's edges, inside and just outside
        first, last = int(network.network_address), int(network.broadcast_address)
        edges = [first - 1, first, last, last + 1]
        top = (1 << network.max_prefixlen) - 1
        addresses += [
            ipaddress.IPv4Address(e) if network.version == 4 else ipaddress.IPv6Address(e)
            for e in edges
            if 0 <= e <= top
        ]
    for address in addresses:
        expected = any(address.version == n.version and address in n for n in networks)
        assert contains(got, address) == expected
        assert contains(tuple(networks), address) == expected


@settings(max_examples=200, deadline=None)
@given(NETWORKS, NETWORKS)
def test_union_of_sets_is_the_collapse_of_all(first: list[Network], second: list[Network]) -> None:
    """union reads NetworkSets by their keys and tuples by objects, with the same result."""
    expected = expected_collapse(first + second)
    assert union([collapse(first), collapse(second)]) == expected
    assert union([collapse(first), tuple(second)]) == expected
    assert union([collapse(first + second)]) == expected


@settings(max_examples=200, deadline=None)
@given(NETWORKS, st.integers(-70, 70))
def test_network_set_is_the_tuple_it_replaces(networks: list[Network], index: int) -> None:
    """Length, indexing, slicing, equality, hash and repr are those of the equal tuple."""
    expected = expected_collapse(networks)
    got = collapse(networks)
    assert len(got) == len(expected)
    assert got[1:-1] == expected[1:-1]
    assert got[::2] == expected[::2]
    if -len(expected) <= index < len(expected):
        assert got[index] == expected[index]
    assert hash(got) == hash(expected)
    assert repr(got) == repr(expected)
    assert (got == expected[:-1]) == (len(expected) == 0)
    assert bool(got) == bool(expected)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(NEAR_V4, NEAR_V4, NEAR_V6, ANY_V4, ANY_V6, EVERYTHING),
            st.integers(0, 2**128),
            st.integers(0, 5),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_set_file_loads_and_renders_as_ipaddress_reads_it(
    lines: list[tuple[Network, int, int]],
) -> None:
    """A random set file (host bits, bare hosts, blanks, comments) loads to ipaddress's collapse
    of ip_network(line, strict=False) and renders exactly str() of each collapsed network."""
    text = "".join(set_file_line(net, host, style) + "\n" for net, host, style in lines)
    text = "# a header\n\n" + text
    reference = [
        ipaddress.ip_network(line.split("#")[0].strip(), strict=False)
        for line in text.splitlines()
        if line.split("#")[0].strip()
    ]
    expected = expected_collapse(reference)
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        (directory / "s.txt").write_text(text)
        policy_text = (
            "version: 1\nsets:\n  s: {file: s.txt}\nallow:\n  - port: 22\n    from: ['@s']\n"
        )
        policy = parse_policy(policy_text, str(directory / "p.yaml")).policy
    assert policy.sets[0][1] == expected
    assert policy.allow[0].sources == expected
    table = render_table(policy, piece_sources_max=0)  # every family in an address set
    elements = {s.name: s.elements for s in table.sets}
    for family in (4, 6):
        want = tuple(str(n) for n in expected if n.version == family)
        assert elements.get(f"from{family}_tcp_1", ()) == want


EDGE_LINES = [
    *("1.2.3.4", "1.2.3.4/24", " 1.2.3.0/24 # c", "\t1.2.3.4/033", "1.2.3.4/0", "1.2.3.4/024"),
    *("1.2.3.4/0024", "01.2.3.4", "1.2.3", "1.2.3.4/", "1.2.3.4/x", "1.2.3.4 /24", "1.2.3.4/ 24"),
    *("1.2.3.4/255.255.0.0", "1.2.3.4/0.0.0.255", "::1", "::ffff:1.2.3.4/128", "2001:db8::1/64"),
    *("1.2.3.4/\u0663", "\u0661.2.3.4", "1.2.3.4/33", "1.2.3.4/-1", "1.2.3.256", "1.2.3.4,"),
    *("0.0.0.0/0", "::/0", "1.2.3.4/32/1", "1.2.3.04", "1.2.3.4/+8", "1.2.3.4/8 8"),
]


@pytest.mark.parametrize("line", EDGE_LINES)
def test_set_file_line_is_read_as_ip_network_reads_it(line: str, tmp_path: Path) -> None:
    """An odd set-file line (the fast path's edges) loads iff ip_network(strict=False) reads it,
    to the same network; else it is one located error on its own line."""
    token = line.split("#", maxsplit=1)[0].strip()
    try:
        expected: tuple[Network, ...] | None = expected_collapse(
            [ipaddress.ip_network(token, strict=False), ipaddress.ip_network("10.0.0.0/8")]
        )
    except ValueError:
        expected = None
    (tmp_path / "s.txt").write_text(f"# header\n{line}\n10.0.0.0/8\n")
    policy_text = "version: 1\nsets:\n  s: {file: s.txt}\nallow:\n  - port: 22\n    from: ['@s']\n"
    try:
        loaded = parse_policy(policy_text, str(tmp_path / "p.yaml"))
    except PolicyError as error:
        assert expected is None
        assert error.location.file == str(tmp_path / "s.txt")
        assert error.location.line == 2
        return
    assert loaded.policy.sets[0][1] == expected
