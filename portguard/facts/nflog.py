"""Read portguard's NFLOG group over netlink: the drops and logged accepts, as typed events.

nftables' `log group N` hands a copy of each packet to nfnetlink_log, which delivers it to
the netlink socket bound to group N in the same network namespace (the kernel log, nf_log,
is off by default in every namespace but the initial one; NFLOG is not). Only the headers
are copied (COPY_RANGE bytes) and parsed here: addresses, protocol and ports.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from portguard.errors import PortguardError

__all__ = ["LogEvent", "NflogReader", "parse_kernel_line", "parse_packet", "parse_prefix"]

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR = 1
NFULA_TIMESTAMP = 3
NFULA_IFINDEX_INDEV = 4
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
COPY_RANGE = 96  # bytes of each packet: IPv6 header (40) + TCP/UDP ports, with room
NLMSG_HEADER = struct.Struct("=IHHII")
NFGEN_HEADER = struct.Struct("=BBH")
ATTRIBUTE = struct.Struct("=HH")
PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
RECEIVE_BUFFER = 1 << 20


@dataclass(frozen=True)
class LogEvent:
    """One logged packet: what portguard did, and the packet's addresses and ports."""

    at: float  # Unix seconds (the kernel's timestamp when it gives one)
    action: str  # "drop" (default verdict, `log: true`) or "accept" (an entry with `log`)
    line: int | None  # the policy line of a logged entry
    interface: str | None
    proto: str
    source: IPv4Address | IPv6Address
    destination: IPv4Address | IPv6Address
    sport: int | None
    dport: int | None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form for `log --format json`."""
        return {
            "at": self.at,
            "action": self.action,
            "line": self.line,
            "interface": self.interface,
            "proto": self.proto,
            "source": str(self.source),
            "destination": str(self.destination),
            "sport": self.sport,
            "dport": self.dport,
        }

    def text(self) -> str:
        """One human-readable line."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.at))
        what = self.action + (f" (line {self.line})" if self.line is not None else "")
        src = f"[{self.source}]" if self.source.version == 6 else str(self.source)
        dst = f"[{self.destination}]" if self.destination.version == 6 else str(self.destination)
        sport = f":{self.sport}" if self.sport is not None else ""
        dport = f":{self.dport}" if self.dport is not None else ""
        return f"{stamp} {what} {self.proto} {src}{sport} -> {dst}{dport} on {self.interface}"


def parse_prefix(prefix: str) -> tuple[str, int | None] | None:
    """("drop", None) or ("accept", LINE) for portguard's prefixes; None for others."""
    text = prefix.rstrip("\0").strip()
    if text == "portguard:":
        return "drop", None
    head = "portguard accept line "
    if text.startswith(head) and text.endswith(":") and text[len(head) : -1].isdigit():
        return "accept", int(text[len(head) : -1])
    return None


def parse_packet(
    payload: bytes,
) -> tuple[str, IPv4Address | IPv6Address, IPv4Address | IPv6Address, int | None, int | None]:
    """Pure: (proto, source, destination, sport, dport) of an IPv4 or IPv6 packet's headers."""
    if not payload:
        raise ValueError("empty packet")
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        header = (payload[0] & 0x0F) * 4
        number, src, dst = payload[9], payload[12:16], payload[16:20]
    elif version == 6 and len(payload) >= 40:
        header, number, src, dst = 40, payload[6], payload[8:24], payload[24:40]
    else:
        raise ValueError("not an IP packet")
    proto = PROTOCOLS.get(number, str(number))
    sport = dport = None
    if number in (6, 17) and len(payload) >= header + 4:
        sport, dport = struct.unpack_from("!HH", payload, header)
    return proto, ip_address(src), ip_address(dst), sport, dport


class NflogReader:
    """A netlink socket bound to one NFLOG group (needs CAP_NET_ADMIN); close() unbinds."""

    def __init__(self, group: int) -> None:
        self.group = group
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as error:
            raise PortguardError(f"cannot open a netfilter netlink socket: {error}") from None
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.bind((0, 0))
        self._sequence = 0
        cmd = ATTRIBUTE.pack(5, NFULA_CFG_CMD) + bytes([NFULNL_CFG_CMD_BIND]) + b"\0" * 3
        self._configure(cmd)
        mode = struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)
        self._configure(ATTRIBUTE.pack(4 + len(mode), NFULA_CFG_MODE) + mode + b"\0" * 2)

    def _configure(self, attributes: bytes) -> None:
        """Send one NFULNL_MSG_CONFIG for the group and wait for the kernel's ack."""
        self._sequence += 1
        body = NFGEN_HEADER.pack(socket.AF_UNSPEC, 0, socket.htons(self.group)) + attributes
        kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
        header = NLMSG_HEADER.pack(
            NLMSG_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, self._sequence, 0
        )
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            _, msg_type, _, sequence, _ = NLMSG_HEADER.unpack_from(data)
            if msg_type == NLMSG_ERROR and sequence == self._sequence:
                (code,) = struct.unpack_from("=i", data, NLMSG_HEADER.size)
                if code != 0:
                    reason = errno.errorcode.get(-code, str(code))
                    raise PortguardError(f"cannot bind NFLOG group {self.group}: {reason}")
                return

    def close(self) -> None:
        """Unbind the group (best effort) and close the socket."""
        try:
            cmd = ATTRIBUTE.pack(5, NFULA_CFG_CMD) + bytes([NFULNL_CFG_CMD_UNBIND]) + b"\0" * 3
            self._configure(cmd)
        except (OSError, PortguardError):
            pass
        self.sock.close()

    def events(self, timeout: float | None = None) -> Iterator[LogEvent]:
        """Logged packets as they come; stop after `timeout` seconds without one (None: never)."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(RECEIVE_BUFFER)
            except TimeoutError:
                return
            yield from _messages(data)


def _messages(data: bytes) -> Iterator[LogEvent]:
    """Every portguard event in one netlink datagram."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, msg_type, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            return
        if msg_type == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            event = _event(data[offset + NLMSG_HEADER.size + NFGEN_HEADER.size : offset + length])
            if event is not None:
                yield event
        offset += (length + 3) & ~3


def _event(attributes: bytes) -> LogEvent | None:
    """A LogEvent from one packet message's attributes (None: not portguard's, or no IP)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + ATTRIBUTE.size <= len(attributes):
        length, kind = ATTRIBUTE.unpack_from(attributes, offset)
        if length < ATTRIBUTE.size:
            break
        found[kind & 0x3FFF] = attributes[offset + ATTRIBUTE.size : offset + length]
        offset += (length + 3) & ~3
    prefix = parse_prefix(found.get(NFULA_PREFIX, b"").decode("ascii", "replace"))
    if prefix is None:
        return None
    try:
        proto, source, destination, sport, dport = parse_packet(found.get(NFULA_PAYLOAD, b""))
    except ValueError:
        return None
    at = time.time()
    stamp = found.get(NFULA_TIMESTAMP)
    if stamp is not None and len(stamp) == 16:
        seconds, micros = struct.unpack("!QQ", stamp)
        at = seconds + micros / 1e6
    interface = None
    index = found.get(NFULA_IFINDEX_INDEV)
    if index is not None and len(index) == 4:
        try:
            interface = socket.if_indextoname(struct.unpack("!I", index)[0])
        except OSError:
            interface = None
    return LogEvent(at, prefix[0], prefix[1], interface, proto, source, destination, sport, dport)


def parse_kernel_line(line: str, at: float) -> LogEvent | None:
    """Pure: a kernel-log (nf_log) line of portguard's drop log, as an event (None: other)."""
    marker = line.find("portguard: IN=")
    if marker < 0:
        return None
    fields = dict(
        item.split("=", 1) for item in line[marker + len("portguard: ") :].split() if "=" in item
    )
    try:
        source, destination = ip_address(fields["SRC"]), ip_address(fields["DST"])
    except (KeyError, ValueError):
        return None
    proto = fields.get("PROTO", "?").lower()
    sport = int(fields["SPT"]) if fields.get("SPT", "").isdigit() else None
    dport = int(fields["DPT"]) if fields.get("DPT", "").isdigit() else None
    interface = fields.get("IN") or None
    return LogEvent(at, "drop", None, interface, proto, source, destination, sport, dport)
