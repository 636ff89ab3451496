"""services.py: /etc/services parsing, aliases, and the built-in fallback."""

from __future__ import annotations

from pathlib import Path

from portguard.model import Proto
from portguard.services import BUILTIN_SERVICES, load_services, parse_services

SAMPLE = """\
# /etc/services sample
#
tcpmux		1/tcp				# TCP port service multiplexer
ssh		22/tcp				# SSH Remote Login Protocol
domain		53/tcp
domain		53/udp
http		80/tcp		www www-http	# WorldWideWeb HTTP
kerberos	88/tcp		kerberos5 krb5 kerberos-sec	# Kerberos v5
kerberos	88/udp		kerberos5 krb5 kerberos-sec	# Kerberos v5
zephyr-srv	2102/udp
broken-line
nonumber	abc/tcp
appletalk	1/ddp				# other protocols are ignored
  indented	7/tcp	# leading blanks are fine
www		8080/tcp			# a later duplicate does not override
"""


def test_parse_names_ports_and_protocols() -> None:
    """Each name/proto pair maps to its port; comments and blank lines are skipped."""
    table = parse_services(SAMPLE)
    assert table[("ssh", "tcp")] == 22
    assert table[("domain", "udp")] == 53
    assert table[("zephyr-srv", "udp")] == 2102
    assert ("ssh", "udp") not in table
    assert ("zephyr-srv", "tcp") not in table
    assert table[("indented", "tcp")] == 7


def test_aliases_resolve_to_the_same_port() -> None:
    """Aliases after the port column name the same port; the first definition wins."""
    table = parse_services(SAMPLE)
    assert table[("www", "tcp")] == 80
    assert table[("www-http", "tcp")] == 80
    assert table[("krb5", "udp")] == 88


def test_malformed_and_foreign_lines_are_skipped() -> None:
    """Lines without a port/proto, a non-numeric port or another protocol add nothing."""
    table = parse_services(SAMPLE)
    names = {name for name, _ in table}
    assert {"broken-line", "nonumber", "appletalk", "#"} & names == set()


def test_load_reads_the_file_and_looks_up_by_alias(tmp_path: Path) -> None:
    """A services file is read; lookup is by name or alias, case-insensitively."""
    path = tmp_path / "services"
    path.write_text(SAMPLE)
    table = load_services(path)
    assert table.source == str(path)
    assert table.lookup("WWW", Proto.TCP) == 80
    assert table.lookup("kerberos5", Proto.UDP) == 88
    assert table.lookup("ssh", Proto.UDP) is None
    assert table.knows("Krb5")
    assert not table.knows("nosuch")


def test_missing_file_falls_back_to_built_in(tmp_path: Path) -> None:
    """Without a services file (Windows, minimal containers) the built-in table answers."""
    table = load_services(tmp_path / "absent")
    assert table.source == "built-in"
    assert table.lookup("ssh", Proto.TCP) == 22
    assert table.lookup("rdp", Proto.TCP) == 3389
    assert table.lookup("wireguard", Proto.UDP) == 51820
    assert table.lookup("wireguard", Proto.TCP) is None
    assert len({name for name, _ in table.ports}) == len(BUILTIN_SERVICES)


def test_empty_or_unusable_file_falls_back_too(tmp_path: Path) -> None:
    """A file with no usable line, or a directory, also means the built-in table."""
    empty = tmp_path / "services"
    empty.write_text("# nothing here\n\n")
    assert load_services(empty).source == "built-in"
    assert load_services(tmp_path).source == "built-in"


def test_undecodable_bytes_do_not_break_parsing(tmp_path: Path) -> None:
    """A stray non-UTF-8 byte in a comment leaves the rest of the file readable."""
    path = tmp_path / "services"
    path.write_bytes(b"ssh 22/tcp # caf\xe9\nntp 123/udp\n")
    table = load_services(path)
    assert table.lookup("ntp", Proto.UDP) == 123
    assert table.lookup("ssh", Proto.TCP) == 22
