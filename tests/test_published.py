"""Published ports parsed from real listings (tests/published, captured in a namespace)."""

from __future__ import annotations

from pathlib import Path

from portguard.facts.published import (
    MAX_PORTS_PER_RULE,
    PublishedPort,
    parse_ruleset_listing,
    parse_save,
)
from portguard.model import Proto

DATA = Path(__file__).parent / "published"
TCP, UDP = Proto.TCP, Proto.UDP


def listing() -> str:
    """The captured `list ruleset` text."""
    return (DATA / "ruleset.txt").read_text(encoding="utf-8")


def test_docker_iptables_nft_rules_from_the_listing() -> None:
    """iptables-nft DNAT rules in `ip nat` read as nft translated them, multiport included."""
    found = [p for p in parse_ruleset_listing(listing()).ports if p.table == "ip nat"]
    assert PublishedPort(TCP, 8080, "172.17.0.2:80", "ip nat") in found
    assert PublishedPort(UDP, 5353, "172.17.0.2:53", "ip nat") in found
    assert PublishedPort(TCP, 9000, "172.17.0.3:9000", "ip nat") in found
    assert PublishedPort(TCP, 81, "172.17.0.5:81", "ip nat") in found
    assert PublishedPort(TCP, 82, "172.17.0.5:82", "ip nat") in found
    ranged = [p.port for p in found if p.to == "172.17.0.4:8000-8010"]
    assert ranged == list(range(8000, 8011))


def test_untranslated_ip6_xt_rule_is_skipped_in_the_listing() -> None:
    """The `ip6 nat` rule lists without its target, so the listing yields nothing for it."""
    assert not [p for p in parse_ruleset_listing(listing()).ports if p.table == "ip6 nat"]


def test_native_dnat_shapes() -> None:
    """Native `dnat to`, `dnat ip/ip6 to`, ranges, sets, `th dport` and comments are read."""
    found = set(parse_ruleset_listing(listing()).ports)
    expected = {
        PublishedPort(TCP, 8080, "10.0.0.2:80", "ip natv"),
        PublishedPort(UDP, 53, "10.0.0.2:53", "ip natv"),
        PublishedPort(TCP, 8010, "10.0.0.4:8010", "ip natv"),
        PublishedPort(TCP, 443, "10.0.0.5:443", "ip natv"),
        PublishedPort(TCP, 5000, "10.0.0.6:5000", "ip natv"),
        PublishedPort(UDP, 5000, "10.0.0.6:5000", "ip natv"),
        PublishedPort(TCP, 2222, "10.0.0.7:22", "ip natv"),
        PublishedPort(TCP, 7000, "10.0.0.10-10.0.0.12:7000", "ip natv"),
        PublishedPort(TCP, 8080, "10.0.0.2:80", "inet natw"),
        PublishedPort(TCP, 8080, "[fd00::2]:80", "inet natw"),
        PublishedPort(UDP, 53, "[fd00::3]:53", "inet natw"),
    }
    assert expected <= found


def test_map_dnat_is_skipped() -> None:
    """`dnat to tcp dport map { ... }` is not followed (ports 81/82 of ip natv are absent)."""
    ports = {p.port for p in parse_ruleset_listing(listing()).ports if p.table == "ip natv"}
    assert not {81, 82} & ports


def test_save_output_of_both_families() -> None:
    """iptables-nft-save and ip6tables-nft-save output give the same rules, IPv6 included."""
    v4 = parse_save((DATA / "iptables-nft-save.txt").read_text(encoding="utf-8"), "ip").ports
    v6 = parse_save((DATA / "ip6tables-nft-save.txt").read_text(encoding="utf-8"), "ip6").ports
    from_listing = [p for p in parse_ruleset_listing(listing()).ports if p.table == "ip nat"]
    assert list(v4) == from_listing
    assert v6 == (PublishedPort(TCP, 8080, "[fd00::2]:80", "ip6 nat"),)


def test_portguard_table_output_chains_and_negation_are_skipped() -> None:
    """Own table, nat output-hook chains and `dport !=` publish nothing."""
    text = (
        "table inet portguard {\n\tchain input {\n\t\ttcp dport 1 dnat ip to 10.0.0.1\n\t}\n}\n"
        "table ip n {\n\tchain out {\n\t\ttype nat hook output priority -100; policy accept;\n"
        "\t\ttcp dport 2 dnat to 10.0.0.2\n\t}\n\n\tchain pre {\n"
        "\t\ttcp dport != 3 dnat to 10.0.0.3\n\t}\n}\n"
    )
    assert parse_ruleset_listing(text).ports == ()


def test_large_range_is_capped_with_a_note() -> None:
    """A range wider than the cap lists its first ports and says so."""
    text = "table ip n {\n\tchain pre {\n\t\ttcp dport 1000-60000 dnat to 10.0.0.9\n\t}\n}\n"
    result = parse_ruleset_listing(text)
    assert len(result.ports) == MAX_PORTS_PER_RULE
    assert result.ports[0] == PublishedPort(TCP, 1000, "10.0.0.9:1000", "ip n")
    assert "of 59001 ports" in result.notes[0]


def test_unknown_shapes_never_crash() -> None:
    """Garbage, service names and named sets are skipped quietly."""
    text = (
        "table ip n {\n\tchain pre {\n\t\ttcp dport ssh dnat to 10.0.0.1\n"
        "\t\ttcp dport @ports dnat to 10.0.0.1\n\t\tdnat to\n\t\t}}} {{ dnat ip6 to [\n"
        "\t\tth dport 7 dnat to 10.0.0.1\n\t}\n}\n"
    )
    assert {(p.proto, p.port) for p in parse_ruleset_listing(text).ports} == {(TCP, 7), (UDP, 7)}
