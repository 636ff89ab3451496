"""The live table fact, parsed from the kernel's stateless listing (pure)."""

from __future__ import annotations

from portguard.facts.ruleset import parse_live_table

LISTING = """table inet portguard {
\tset open_tcp_g0 {
\t\ttype inet_service
\t\tflags interval
\t\telements = { 22, 80 }
\t}

\tset open_tcp_g1 {
\t\ttype inet_service
\t\tflags interval
\t\telements = { 9999 }
\t}

\tset from4_tcp_g1 {
\t\ttype ipv4_addr . inet_service
\t\tflags interval
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tiif "lo" accept comment "portguard rendering 0123456789abcdef"
\t\ttcp dport @open_tcp_g0 accept comment "not @from4_tcp_g1 at all"
\t}
}
"""


def test_marker_sets_and_leftovers_are_read_from_the_listing() -> None:
    """The marker, every set, and the unused generation sets (a comment names none)."""
    live = parse_live_table(LISTING)
    assert live.marker == "0123456789abcdef"
    assert live.set_names == ("from4_tcp_g1", "open_tcp_g0", "open_tcp_g1")  # sorted
    assert live.leftover_sets == ("open_tcp_g1", "from4_tcp_g1")
    assert live.used_generation == "_g0"
    assert live.has_chain and not live.foreign


def test_leftover_blocks_are_cut_from_the_compared_listing() -> None:
    """The listing drift compares has no leftover set block and no blank line of its own."""
    listing = parse_live_table(LISTING).listing
    assert listing is not None
    assert "open_tcp_g1" not in listing and "from4_tcp_g1 {" not in listing
    assert "\tset open_tcp_g0 {" in listing
    assert "\n\n\n" not in listing and "\t}\n\n\tchain input {" in listing


def test_objects_portguard_never_makes_are_foreign() -> None:
    """A map, another chain or table flags make the table foreign (replaced whole)."""
    with_map = LISTING.replace(
        "\tchain input {", "\tmap m {\n\t\ttype ipv4_addr : verdict\n\t}\n\n\tchain input {"
    )
    other_chain = LISTING.replace("\n}\n", "\n\n\tchain sneaky {\n\t}\n}\n")
    owned = LISTING.replace(
        "table inet portguard {\n", "table inet portguard { # progname x\n\tflags owner\n\n"
    )
    for listing in (with_map, other_chain, owned):
        live = parse_live_table(listing)
        assert live.foreign and live.leftover_sets == ()


def test_a_table_of_sets_only_has_no_chain() -> None:
    """A first apply killed between its transactions left sets only: no chain, all leftovers."""
    sets_only = "table inet portguard {\n\tset open_tcp_g0 {\n\t\ttype inet_service\n\t}\n}\n"
    live = parse_live_table(sets_only)
    assert not live.has_chain and live.leftover_sets == ("open_tcp_g0",)
    assert live.marker is None
