"""Published ports: parsed from real listings (tests/published), then judged by the plan."""

from __future__ import annotations

from pathlib import Path

from portguard.cli.plan_cmd import plan_markdown, plan_text
from portguard.drift import RulesetState
from portguard.facts.published import (
    MAX_PORTS_PER_RULE,
    PublishedPort,
    parse_ruleset_listing,
    parse_save,
)
from portguard.model import Proto
from portguard.plan import Plan, SocketVerdict, build_plan, plan_json
from portguard.policy import parse_policy

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


POLICY = """\
version: 1
allow:
  - port: 8080
  - port: 5353
    proto: udp
    from: [198.51.100.0/24]
"""
DOCKER = (
    PublishedPort(TCP, 8080, "172.17.0.2:80", "ip nat"),
    PublishedPort(TCP, 9090, "172.17.0.3:90", "ip nat"),
    PublishedPort(UDP, 5353, "172.17.0.2:53", "ip nat"),
    PublishedPort(TCP, 9090, "[fd00::3]:90", "ip6 nat"),
)


def plan_of(text: str) -> Plan:
    """A plan of `text` over DOCKER's published ports and no sockets."""
    policy = parse_policy(text.encode(), "p.yaml").policy
    return build_plan(policy, (), RulesetState.ABSENT, "", published=DOCKER)


def test_published_verdicts_follow_the_allow_list() -> None:
    """An allowed published port is allowed, an unlisted one blocked, `from` restricts."""
    data = plan_json(plan_of(POLICY))["published"]
    assert isinstance(data, list)
    assert [(p["port"], p["to"], p["verdict"]) for p in data] == [
        (8080, "172.17.0.2:80", "allowed"),
        (9090, "172.17.0.3:90", "blocked"),
        (5353, "172.17.0.2:53", "allowed"),
        (9090, "[fd00::3]:90", "blocked"),
    ]
    assert data[0] == {
        "proto": "tcp",
        "port": 8080,
        "to": "172.17.0.2:80",
        "table": "ip nat",
        "verdict": "allowed",
        "from_anywhere": True,
        "allowed_by": ["anywhere"],
    }
    assert data[2]["from_anywhere"] is False and data[2]["allowed_by"] == ["198.51.100.0/24"]


def test_forwarded_ignore_allows_every_published_port() -> None:
    """Under `forwarded: ignore` portguard leaves published ports alone: all allowed."""
    plan = plan_of(POLICY.replace("allow:", "forwarded: ignore\nallow:"))
    assert {p.verdict for p in plan.published} == {SocketVerdict.ALLOWED}
    assert plan.unreachable_published == ()


def test_text_and_markdown_list_unreachable_published_ports() -> None:
    """The text and markdown plans name the published ports the policy blocks."""
    plan = plan_of(POLICY)
    text = plan_text(plan).split("Published ports this policy makes unreachable:\n")[1]
    section = text.split("\n\n")[0]
    assert "9090" in section and "172.17.0.3:90" in section and "[fd00::3]:90" in section
    assert "8080" not in section and "5353" not in section
    markdown = plan_markdown(plan)
    assert "### Published ports this policy makes unreachable" in markdown
    assert "| tcp | 9090 | 172.17.0.3:90 | ip nat | blocked |" in markdown
    assert "2 unreachable published" not in markdown and "(+2 published)" in markdown


def test_no_published_section_without_published_ports() -> None:
    """A host without published ports gets no published section (goldens unchanged)."""
    policy = parse_policy(POLICY.encode(), "p.yaml").policy
    assert "Published ports" not in plan_text(build_plan(policy, (), RulesetState.ABSENT, ""))
