"""Send one probe in IP fragments from inside a namespace; print "answered" or "silent".

Run as a script in the scanner namespace: `fragment_probe.py KIND IFNAME SRC_MAC DST_MAC SRC
DST PORT TIMEOUT`, KIND one of tcp4-frag8 (a SYN in 8-byte IPv4 fragments), tcp6-atomic (a
SYN behind an IPv6 fragment header with offset 0 and no more fragments), udp4-frag (a UDP
datagram in two IPv4 fragments). Frames are written and read on an AF_PACKET socket, so no
kernel stack on this side reassembles or answers anything for us.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time
from ipaddress import ip_address

__all__ = ["frames", "main"]

ETH_P_ALL = 0x0003
SYN_ACK = 0x12


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp_syn(src: bytes, dst: bytes, sport: int, dport: int, proto_len: bytes) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst + proto_len
    return header[:16] + struct.pack("!H", _checksum(pseudo + header)) + header[18:]


def _ipv4(addresses: tuple[bytes, bytes], proto: int, ident: int, flags_off: int,
          payload: bytes) -> bytes:  # fmt: skip
    src, dst = addresses
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_off, 64, proto,
                       0, src, dst)  # fmt: skip
    return head[:10] + struct.pack("!H", _checksum(head)) + head[12:] + payload


def frames(kind: str, macs: tuple[bytes, bytes], src: str, dst: str, port: int) -> list[bytes]:
    """The Ethernet frames of one fragmented probe; `macs` is (source, destination)."""
    src_mac, dst_mac = macs
    s, d = ip_address(src).packed, ip_address(dst).packed
    sport = 40000 + port % 1000
    if kind == "tcp6-atomic":
        syn = _tcp_syn(s, d, sport, port, struct.pack("!I3xB", 20, 6))
        frag = struct.pack("!BBHI", 6, 0, 0, 0x1234)  # next TCP, offset 0, M=0
        ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(frag) + len(syn), 44, 64, s, d)
        return [dst_mac + src_mac + b"\x86\xdd" + ip6 + frag + syn]
    eth = dst_mac + src_mac + b"\x08\x00"
    if kind == "tcp4-frag8":
        syn = _tcp_syn(s, d, sport, port, struct.pack("!BBH", 0, 6, 20))
        pieces = [syn[0:8], syn[8:16], syn[16:20]]
        return [
            eth + _ipv4((s, d), 6, 0x4242, (0x2000 if i < 2 else 0) | i, piece)
            for i, piece in enumerate(pieces)
        ]
    body = b"fragmented-probe-0123456789abcdef"
    udp = struct.pack("!HHHH", sport, port, 8 + len(body), 0) + body
    pseudo = s + d + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    return [
        eth + _ipv4((s, d), 17, 0x4343, 0x2000, udp[:16]),
        eth + _ipv4((s, d), 17, 0x4343, 2, udp[16:]),
    ]


def _answered(frame: bytes, kind: str, dst: str, port: int) -> bool:
    ethertype = frame[12:14]
    if kind == "tcp6-atomic":
        if ethertype != b"\x86\xdd" or frame[20] != 6 or frame[22:38] != ip_address(dst).packed:
            return False
        tcp = frame[54:]
        return struct.unpack("!H", tcp[:2])[0] == port and tcp[13] & SYN_ACK == SYN_ACK
    if ethertype != b"\x08\x00" or frame[26:30] != ip_address(dst).packed:
        return False
    ihl = (frame[14] & 0x0F) * 4
    proto, l4 = frame[23], frame[14 + ihl :]
    if struct.unpack("!H", l4[:2])[0] != port:
        return False
    return proto == 17 if kind == "udp4-frag" else proto == 6 and l4[13] & SYN_ACK == SYN_ACK


def main(argv: list[str]) -> int:
    """Send the probe's frames and wait for an answer from the target."""
    kind, ifname, src_mac, dst_mac, src, dst, port_text, timeout_text = argv
    port, timeout = int(port_text), float(timeout_text)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    macs = (bytes.fromhex(src_mac.replace(":", "")), bytes.fromhex(dst_mac.replace(":", "")))
    for frame in frames(kind, macs, src, dst, port):
        sock.send(frame)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0] and _answered(sock.recv(65535), kind, dst, port):
            print("answered")
            return 0
    print("silent")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
