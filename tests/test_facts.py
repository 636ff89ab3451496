"""Linux socket facts: the sock_diag parser, the inode-to-process map, and a real namespace."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import types
from ipaddress import IPv4Address, IPv6Address

import pytest

from portguard import facts
from portguard.facts.sockets import DIAG_MESSAGE, RawSocket, owners_of, parse_diag_messages
from portguard.model import ListeningSocket, Proto
from tests.netns import Netns

# Inside the namespace: listeners that must be listed, and sockets that must not be.
SCENE = """
import json, socket
from portguard.facts import listening_sockets
with open("/proc/self/comm", "w") as comm:
    comm.write("facts-scene")
keep = []
def sock(family, kind, bind, listen=False):
    s = socket.socket(family, kind)
    s.bind(bind)
    if listen:
        s.listen()
    keep.append(s)
    return s
A4, A6, TCP, UDP = socket.AF_INET, socket.AF_INET6, socket.SOCK_STREAM, socket.SOCK_DGRAM
server = sock(A4, TCP, ("0.0.0.0", 7001), listen=True)
sock(A6, TCP, ("::1", 7002), listen=True)
sock(A6, UDP, ("::", 7003))
only6 = socket.socket(A6, TCP)
only6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
only6.bind(("::", 7007))
only6.listen()
keep.append(only6)
sock(A4, UDP, ("127.0.0.1", 7004))
sock(A4, TCP, ("0.0.0.0", 7005))                # bound, never listening: not listed
connected = sock(A4, UDP, ("127.0.0.1", 7006))  # connected UDP: not listed
connected.connect(("127.0.0.1", 7004))
client = socket.create_connection(("127.0.0.1", 7001))  # established pair: not listed
accepted, _ = server.accept()
found = [
    [s.proto.value, str(s.address), s.port, s.pid, s.process, s.exposed, s.v6only]
    for s in listening_sockets()
]
print(json.dumps({"pid": __import__("os").getpid(), "found": found}))
"""


def diag_message(family: int, port: int, address: bytes, inode: int) -> bytes:
    """An inet_diag_msg body as the kernel sends it."""
    return DIAG_MESSAGE.pack(
        family, 10, 0, 0, port.to_bytes(2, "big"), b"\0\0", address.ljust(16, b"\0"),
        b"\0" * 16, 0, b"\0" * 8, 0, 0, 0, 0, inode,
    )  # fmt: skip


def test_parser_reads_family_address_port_and_inode() -> None:
    """IPv4, IPv6 and IPv4-mapped answers become RawSockets; port 0 is skipped."""
    bodies = [
        diag_message(socket.AF_INET, 22, bytes([192, 0, 2, 1]), 11),
        diag_message(socket.AF_INET6, 443, IPv6Address("2001:db8::1").packed, 12),
        diag_message(socket.AF_INET6, 53, IPv6Address("::ffff:127.0.0.1").packed, 13),
        diag_message(socket.AF_INET, 0, bytes(4), 14),
    ]
    assert list(parse_diag_messages(Proto.TCP, bodies)) == [
        RawSocket(Proto.TCP, IPv4Address("192.0.2.1"), 22, 11),
        RawSocket(Proto.TCP, IPv6Address("2001:db8::1"), 443, 12),
        RawSocket(Proto.TCP, IPv4Address("127.0.0.1"), 53, 13),
    ]


def test_owners_of_finds_this_process() -> None:
    """The inode of a socket this test holds maps to this pid and its comm name."""
    with socket.socket() as held:
        inode = os.fstat(held.fileno()).st_ino
        owners = owners_of({inode, 999_999_999})
    with open("/proc/self/comm", encoding="utf-8") as comm:
        name = comm.read().strip()
    assert owners == {inode: (os.getpid(), name)}
    assert owners_of(set()) == {}


def test_dispatch_picks_the_windows_module_on_win32(monkeypatch: pytest.MonkeyPatch) -> None:
    """On win32 listening_sockets() imports portguard.facts.windows lazily and uses it."""
    expected = (ListeningSocket(Proto.UDP, IPv4Address("0.0.0.0"), 53, 4, "dns.exe"),)
    fake = types.ModuleType("portguard.facts.windows")
    fake.listening_sockets = lambda: expected  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "portguard.facts.windows", fake)
    monkeypatch.setattr(facts, "windows", fake, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    assert facts.listening_sockets() == expected


@pytest.mark.netns
def test_only_listeners_and_unconnected_udp_in_a_namespace(netns: Netns) -> None:
    """A real namespace: listeners and bound UDP are listed with owner; the rest is not."""
    result = netns.run([sys.executable, "-c", SCENE])
    data = json.loads(result.stdout)
    pid = data["pid"]
    assert sorted(data["found"]) == sorted(
        [
            ["tcp", "0.0.0.0", 7001, pid, "facts-scene", True, False],
            ["tcp", "::1", 7002, pid, "facts-scene", False, True],  # bound: v6 only
            ["udp", "::", 7003, pid, "facts-scene", True, False],
            ["udp", "127.0.0.1", 7004, pid, "facts-scene", False, False],
            ["tcp", "::", 7007, pid, "facts-scene", True, True],
        ]
    )


def test_struct_layout_matches_the_kernel_header() -> None:
    """inet_diag_msg is 72 bytes: 4 of header, 48 of socket id, five 32-bit counters."""
    assert DIAG_MESSAGE.size == 72
    assert struct.calcsize("=BBBB") + 48 + 5 * 4 == 72
