"""Issue 9, loader side: YAML 1.1 integers, huge numbers, bounded reads, no echo, scale, Unicode."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.errors import Location, PolicyError, PortguardError
from portguard.model import AllowRule, Network
from portguard.policy import load_policy, parse_policy
from portguard.policy.bounded_read import FileReadError, read_regular_file
from portguard.policy.lint import MAX_WARNINGS_PER_KIND, find_overlaps, interfaces_meet
from portguard.policy.networks import NotANetwork, collapse, collapse_parts, parse_network
from portguard.policy.yamlnodes import MAX_ECHO

ROOT = Path(__file__).resolve().parent.parent
HUGE = "9" * 5000


def error_of(text: str) -> PolicyError:
    """The PolicyError that parsing `text` raises."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    return caught.value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("20:21", 'port 20:21 is read by YAML 1.1 as a base-60 number; write a range as "20-21"'),
        ("1:2:3", 'port 1:2:3 is read by YAML 1.1 as a base-60 number; write a range as "A-B"'),
        ("022", "port 022 is read by YAML 1.1 as an octal number; write 22 without the leading"
                " zero"),
        ("0x50", "port 0x50 is read by YAML 1.1 as a hexadecimal number; write it in decimal"),
        ("0b101", "port 0b101 is read by YAML 1.1 as a binary number; write it in decimal"),
        ("1_000", "port 1_000: YAML 1.1 ignores the '_'; write it without one"),
        ("+22", "port +22: write 22 without the '+'"),
        ("09", "port 09: write 9 without the leading zero"),
        ('"022-80"', "port 022: write 22 without the leading zero"),
        ('"0o50"', "'0o50' is not a port or a port range \"A-B\""),
    ],
)  # fmt: skip
def test_yaml11_integer_forms_in_ports_are_located_errors(value: str, message: str) -> None:
    """A port YAML 1.1 would read as another number than it shows is an error at the value."""
    error = error_of(f"version: 1\nallow:\n  - port: {value}\n")
    assert (error.location, error.message) == (Location("p.yaml", 3, 11), message)


def test_yaml11_integer_forms_in_a_port_list() -> None:
    """Inside a flow list the base-60 reading is caught at the item."""
    error = error_of("version: 1\nallow:\n  - port: [80, 20:21]\n")
    assert error.location == Location("p.yaml", 3, 16)
    assert 'write a range as "20-21"' in error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 0x1\nallow: []\n", "version 0x1 is read by YAML 1.1 as a hexadecimal number"),
        ("version: 01\nallow: []\n", "version 01 is read by YAML 1.1 as an octal number"),
        ("version: 1\nallow:\n  - port: 1\n    comment: 1:30\n", "comment 1:30 is read by YAML"),
        ("version: 1\ndescription: 1_0\nallow: []\n", "description 1_0: YAML 1.1 ignores"),
    ],
)
def test_yaml11_integer_forms_anywhere(text: str, message: str) -> None:
    """Every integer the policy reads (version, and numbers where text is due) is checked."""
    assert error_of(text).message.startswith(message)


def test_plain_decimal_integers_still_load() -> None:
    """Ordinary ports, a range and version 1 are unaffected."""
    rules = parse_policy('version: 1\nallow:\n  - port: [22, "20-21", 65535]\n', "p.yaml")
    assert rules.policy.allow[0].ports_text() == "20-21,22,65535"


@pytest.mark.parametrize(
    ("entry", "col", "start"),
    [
        (f"port: {HUGE}", 11, "port 999"),
        (f'port: "{HUGE}"', 11, "port 999"),
        (f'port: "1-{HUGE}"', 11, "port 999"),
        (f'port: "{HUGE}-1"', 11, "port 999"),
        (f"port: [1, {HUGE}]", 15, "port 999"),
        (f'port: 22\n    limit: "{HUGE}/minute"', 12, "limit count 999"),
    ],
)
def test_huge_numbers_are_located_errors(entry: str, col: int, start: str) -> None:
    """5,000 digits anywhere is "out of range" at the value, short, not a ValueError."""
    error = error_of(f"version: 1\nallow:\n  - {entry}\n")
    assert error.message.startswith(start)
    assert "out of range" in error.message or "between 1 and" in error.message
    assert len(str(error)) < 200
    assert error.location.col == col


def test_huge_version_is_a_located_error() -> None:
    """An unquoted 5,000-digit version is out of range, not an int-conversion crash."""
    error = error_of(f"version: {HUGE}\nallow: []\n")
    assert error.location == Location("p.yaml", 1, 10)
    assert error.message.endswith("is out of range") and len(error.message) < 120


def test_huge_port_via_the_cli_has_no_internal_error(tmp_path: Path) -> None:
    """The case from the issue: `check` says where, exit 1, no "internal error"."""
    policy = tmp_path / "p.yaml"
    policy.write_text(f'version: 1\nallow:\n  - port: "{HUGE}"\n')
    done = run_cli("check", "--no-kernel", str(policy))
    assert done.returncode == 1
    assert done.stderr.startswith(f"{policy}:3:11: port 999")
    assert "internal error" not in done.stderr and len(done.stderr.splitlines()) == 1


# --- bounded reads -----------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m portguard ARGS` in a child, with a timeout so a hang fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "portguard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_fifo_policy_and_set_file_are_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO (no writer) as the policy or as a set file is refused at once, not read."""
    os.mkfifo(tmp_path / "fifo")
    done = run_cli("check", "--no-kernel", str(tmp_path / "fifo"), timeout=30)
    assert done.stderr == f"{tmp_path}/fifo: cannot read policy: not a regular file (a FIFO)\n"
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: fifo}\nallow: []\n")
    done = run_cli("check", "--no-kernel", str(policy), timeout=30)
    assert done.returncode == 1
    assert (
        done.stderr == f"{policy}:3:13: cannot read set file 'fifo': not a regular file (a FIFO)\n"
    )


def test_dev_zero_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """A symlink to /dev/zero, as policy or set file, is a device: refused before reading."""
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(
        PortguardError, match=r"zero: cannot read policy: not a regular file \(a ch"
    ):
        load_policy(tmp_path / "zero")
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: zero}\nallow: []\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert caught.value.location == Location(str(policy), 3, 13)
    assert caught.value.message.endswith("not a regular file (a character device)")


def test_socket_and_directory_are_refused(tmp_path: Path) -> None:
    """A unix socket and a directory are named as what they are."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(FileReadError, match=r"not a regular file \(a socket\)"):
            read_regular_file(tmp_path / "sock", 100)
    finally:
        listener.close()
    with pytest.raises(FileReadError, match="Is a directory"):
        read_regular_file(tmp_path, 100)


def test_size_limit_is_enforced_while_reading(tmp_path: Path) -> None:
    """Exactly `limit` bytes is fine, one more is refused; a symlink to a file is fine."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    (tmp_path / "link").symlink_to(path)
    assert read_regular_file(tmp_path / "link", 10) == b"x" * 10
    with pytest.raises(FileReadError) as caught:
        read_regular_file(path, 9)
    assert caught.value.reason == "larger than the limit of 9 bytes"


def test_oversized_set_file_is_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set file over its limit is an error at its `file:` value, naming the limit."""
    monkeypatch.setattr("portguard.policy.load.MAX_SET_FILE_BYTES", 1024 * 1024)
    (tmp_path / "big.txt").write_bytes(b"10.0.0.1\n" * 200_000)
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: big.txt}\nallow: []\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert str(caught.value) == (
        f"{policy}:3:13: cannot read set file 'big.txt':"
        " larger than the limit of 1 MiB (1048576 bytes)"
    )


def test_oversized_policy_file_is_refused(tmp_path: Path) -> None:
    """A policy file over 4 MiB is refused by name, before it is parsed."""
    policy = tmp_path / "p.yaml"
    policy.write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    with pytest.raises(PortguardError) as caught:
        load_policy(policy)
    assert str(caught.value) == (
        f"{policy}: cannot read policy: larger than the limit of 4 MiB (4194304 bytes)"
    )


def test_address_count_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More addresses across the set files than MAX_ADDRESSES is an error at the first extra."""
    monkeypatch.setattr("portguard.policy.load.MAX_ADDRESSES", 3)
    (tmp_path / "a.txt").write_text("10.0.0.1\n10.0.0.2\n")
    (tmp_path / "b.txt").write_text("10.0.0.3\n\n10.0.0.4\n")
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: a.txt}\n  b: {file: b.txt}\nallow: []\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert caught.value.location == Location(str(tmp_path / "b.txt"), 3, 1)


# --- no echo of set-file content ---------------------------------------------------------------

SHADOW = "root:$6$saltsalt$" + "Qw3rTy" * 15 + ":19000:0:99999:7:::"


@pytest.mark.parametrize(
    ("line", "col"),
    [(SHADOW, 1), ("  " + SHADOW, 3), ("10.0.0.0/8," + SHADOW, 11), ("1.2.3.4$x", 8)],
)
def test_set_file_content_is_not_echoed(tmp_path: Path, line: str, col: int) -> None:
    """A non-address line is reported by file:line:col and one character, not its content."""
    (tmp_path / "s.txt").write_text(f"10.0.0.1\n{line}\n")
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: s.txt}\nallow: []\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert caught.value.location == Location(str(tmp_path / "s.txt"), 2, col)
    assert caught.value.message.startswith("not an IP address or CIDR network (it cannot contain")
    assert "$6$" not in str(caught.value) and "Qw3r" not in str(caught.value)


def test_address_like_token_is_quoted_but_truncated(tmp_path: Path) -> None:
    """A token of address characters is quoted back, at most MAX_ECHO characters of it."""
    (tmp_path / "s.txt").write_text("1" * 500 + "\n")
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: s.txt}\nallow: []\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert (
        caught.value.message
        == f"'{'1' * (MAX_ECHO - 1)}\u2026' is not an IP address or CIDR network"
    )


@pytest.mark.skipif(not os.access("/etc/shadow", os.R_OK), reason="/etc/shadow not readable")
def test_etc_shadow_as_a_set_file_is_not_echoed(tmp_path: Path) -> None:
    """`{file: /etc/shadow}` fails without printing any of its lines."""
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: /etc/shadow}\nallow: []\n")
    done = run_cli("check", "--no-kernel", str(policy))
    assert done.returncode == 1
    shadow = Path("/etc/shadow").read_text(errors="replace")
    for entry in shadow.splitlines():
        for field in entry.split(":")[1:2]:  # the hash field
            if len(field) > 2:
                assert field not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and len(done.stderr) < 200


# --- scale: capped warnings, and the sweep agrees with comparing every pair ------------------


def test_host_bit_warnings_are_capped_with_a_count(tmp_path: Path) -> None:
    """1,000 lines with host bits: 50 warnings kept, 950 counted; check prints the count."""
    (tmp_path / "s.txt").write_text("".join(f"10.{n // 250}.{n % 250}.1/24\n" for n in range(1000)))
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nsets:\n  a: {file: s.txt}\nallow: []\n")
    loaded = load_policy(policy)
    assert (len(loaded.warnings), loaded.omitted_warnings) == (MAX_WARNINGS_PER_KIND, 950)
    assert loaded.warning_count == 1000
    done = run_cli("check", "--no-kernel", str(policy))
    lines = done.stderr.splitlines()
    assert len(lines) == MAX_WARNINGS_PER_KIND + 1
    assert lines[-1] == "portguard: \u2026 and 950 more warnings"
    assert "1000 warnings" in done.stdout


def test_overlap_warnings_are_one_per_entry_and_capped() -> None:
    """300 copies of one entry: each later copy warns once (not once per pair), capped at 50."""
    text = "version: 1\nallow:\n" + "  - port: 80\n" * 300
    loaded = parse_policy(text, "p.yaml")
    assert len(loaded.warnings) == MAX_WARNINGS_PER_KIND
    assert loaded.warning_count == 299
    assert str(loaded.warnings[0]) == "p.yaml:4:5: warning: duplicates the entry at line 3"


def test_many_single_hosts_are_one_warning() -> None:
    """A `from` of many public hosts without a comment is one warning naming three."""
    hosts = ", ".join(f"8.8.{n}.1" for n in range(10))
    loaded = parse_policy(f"version: 1\nallow:\n  - port: 22\n    from: [{hosts}]\n", "p.yaml")
    assert [w.message for w in loaded.warnings] == [
        "from single public hosts 8.8.0.1, 8.8.1.1, 8.8.2.1 and more with no comment;"
        " say whose they are"
    ]


NETS = st.one_of(
    st.builds(
        lambda a, p: ipaddress.IPv4Network((a >> (32 - p) << (32 - p), p)),
        st.integers(0, 2**32 - 1),
        st.integers(20, 32),
    ).map(lambda n: n if n.prefixlen > 20 else ipaddress.IPv4Network("10.0.0.0/20")),
    st.sampled_from([ipaddress.IPv6Network("2001:db8::/32"), ipaddress.IPv6Network("::1/128")]),
)  # fmt: skip
SMALL_NETS = st.builds(
    lambda a, p: ipaddress.IPv4Network(((10 << 24 | a) >> (32 - p) << (32 - p), p)),
    st.integers(0, 255),
    st.integers(26, 32),
)


def rule_strategy() -> st.SearchStrategy[str]:
    """One allow entry as YAML: ports, proto, maybe a `from`, maybe an interface."""
    port = st.integers(1, 40).map(str) | st.tuples(st.integers(1, 40), st.integers(0, 10)).map(
        lambda t: f'"{t[0]}-{t[0] + t[1]}"'
    )
    sources = st.none() | st.lists(
        SMALL_NETS.map(str) | st.sampled_from(["2001:db8::/64", "2001:db8::1"]),
        min_size=1,
        max_size=3,
    )
    return st.builds(
        lambda ports, proto, src, iface: (
            f"  - port: [{', '.join(ports)}]\n    proto: {proto}\n"
            + (f"    from: [{', '.join(repr(s) for s in src)}]\n" if src else "")
            + (f"    interface: {iface}\n" if iface else "")
        ),
        st.lists(port, min_size=1, max_size=3),
        st.sampled_from(["tcp", "udp", "[tcp, udp]"]),
        sources,
        st.sampled_from([None, None, "eth1", "eth10", '"eth*"', '"e*"', "wlan0"]),
    )


def pairwise_overlaps(rules: tuple[AllowRule, ...]) -> dict[int, set[int]]:
    """{later: every earlier entry it overlaps}, by comparing every pair (the old way)."""
    found: dict[int, set[int]] = {}
    for i, j in combinations(range(len(rules)), 2):
        a, b = rules[i], rules[j]
        if not interfaces_meet(a.interface, b.interface) or not set(a.protos) & set(b.protos):
            continue
        if not any(x.overlaps(y) for x in a.ports for y in b.ports):
            continue
        if a.sources == () or b.sources == ():
            continue
        pairs = [(x, y) for x in a.sources or () for y in b.sources or ()]
        if pairs and not any(x.version == y.version and x.overlaps(y) for x, y in pairs):
            continue
        found.setdefault(j, set()).add(i)
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(rule_strategy(), min_size=2, max_size=12))
def test_sweep_finds_exactly_the_overlapping_entries(entries: list[str]) -> None:
    """find_overlaps flags the same entries as comparing every pair, each with a true witness."""
    policy = parse_policy("version: 1\nallow:\n" + "".join(entries), "h.yaml").policy
    expected = pairwise_overlaps(policy.allow)
    found = find_overlaps(policy.allow)
    assert set(found) == set(expected)
    for later, earlier in found.items():
        assert earlier in expected[later]


@settings(max_examples=300, deadline=None)
@given(st.lists(NETS | SMALL_NETS, max_size=40))
def test_collapse_matches_ipaddress(networks: list[Network]) -> None:
    """collapse and collapse_parts give exactly ipaddress.collapse_addresses, IPv4 first."""
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    expected = (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))
    assert collapse(networks) == expected
    parts = [(n.version, int(n.network_address), n.prefixlen) for n in networks]
    assert collapse_parts(parts) == expected


V4_TEXT = st.builds(
    lambda a, p: f"{ipaddress.IPv4Address(a)}/{p}", st.integers(0, 2**32 - 1), st.integers(0, 40)
)
V6_TEXT = st.builds(
    lambda a, p: f"{ipaddress.IPv6Address(a)}/{p}", st.integers(0, 2**128 - 1), st.integers(0, 140)
)
ODD_TEXT = st.sampled_from(
    ["01.2.3.4", "1.2.3", "10.0.0.0/255.0.0.0", "10.0.0.0/0.0.0.255", "::/08", "/8", "1.2.3.4/"]
)
ADDRESS_TEXT = st.text(alphabet="0123456789.:/abcdefx ", max_size=24) | V4_TEXT | V6_TEXT | ODD_TEXT


@settings(max_examples=500, deadline=None)
@given(ADDRESS_TEXT)
def test_parse_network_agrees_with_ipaddress(text: str) -> None:
    """parse_network accepts what ip_network(strict=False) does, with the same network."""
    try:
        expected: Network | None = ipaddress.ip_network(text, strict=False)
    except ValueError:
        expected = None
    try:
        parsed = parse_network(text)
    except NotANetwork:
        assert expected is None
        return
    assert expected is not None
    assert parsed.parts == (expected.version, int(expected.network_address), expected.prefixlen)
    address = ipaddress.ip_address(text.split("/", maxsplit=1)[0])
    assert parsed.host_bits == (int(address) != int(expected.network_address))


# --- Unicode: lone surrogates ------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["text", "markdown", "json"])
def test_plan_with_a_lone_surrogate_is_one_located_error(
    tmp_path: Path, output_format: str
) -> None:
    """`plan` of a comment holding "\\ud800" is a located error in every format, no crash."""
    policy = tmp_path / "p.yaml"
    policy.write_text('version: 1\nallow:\n  - port: 22\n    comment: "a \\ud800 b"\n')
    done = run_cli("plan", str(policy), "--format", output_format)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"{policy}:4:14: text contains a lone surrogate U+D800 (not valid Unicode);"
        " write the character itself or its \\U escape\n"
    )


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ('version: 1\ndescription: "\\udfff"\nallow: []\n', Location("p.yaml", 2, 14)),
        ('version: 1\nsets:\n  "a\\ud800": []\nallow: []\n', Location("p.yaml", 3, 3)),
        ('version: 1\nallow:\n  - service: "ssh\\ud800"\n', Location("p.yaml", 3, 14)),
        ('version: 1\nallow:\n  - port: 1\n    interface: "\\ud800"\n', Location("p.yaml", 4, 16)),
    ],
)
def test_lone_surrogates_anywhere_are_errors(text: str, location: Location) -> None:
    """Every string in the policy, keys included, must be valid Unicode."""
    error = error_of(text)
    assert error.location == location
    assert "lone surrogate" in error.message


def test_valid_astral_characters_are_fine() -> None:
    """A real non-BMP character (written or escaped) in a comment is not a surrogate."""
    text = 'version: 1\nallow:\n  - port: 22\n    comment: "ok \\U0001F600 \U0001f600"\n'
    assert parse_policy(text, "p.yaml").policy.allow[0].comment == "ok \U0001f600 \U0001f600"
