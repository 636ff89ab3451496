"""The kernel's nftables ruleset generation: a cheap proof that no rule or element changed.

nf_tables counts committed transactions per network namespace (NFT_MSG_GETGEN); any change
to any table, one set element included, makes a new generation. The count restarts with
the namespace and with the boot, so it is kept together with the boot id and the
namespace's cookie (SO_NETNS_COOKIE, never reused within a boot).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Commits", "RulesetGeneration", "generation_from_json", "read_generation"]

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
SO_NETNS_COOKIE = 71  # Linux 5.14
NLMSG_HEADER = struct.Struct("=IHHII")
NFGEN_HEADER = struct.Struct("=BBH")
ATTR_HEADER = struct.Struct("=HH")
NLA_TYPE_MASK = 0x3FFF
RECV_BYTES = 8192
TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class RulesetGeneration:
    """Which committed state of this namespace's whole nftables ruleset is live."""

    boot_id: str
    netns_cookie: int
    genid: int

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {"boot_id": self.boot_id, "netns_cookie": self.netns_cookie, "genid": self.genid}


@dataclass(frozen=True)
class Commits:
    """A command's transactions: the generation before and after, and how many it made."""

    before: RulesetGeneration | None
    after: RulesetGeneration | None
    count: int

    @property
    def alone(self) -> bool:
        """Whether the command's own commits were the only ones between before and after."""
        if self.before is None or self.after is None:
            return False
        same = (self.before.boot_id, self.before.netns_cookie) == (
            self.after.boot_id,
            self.after.netns_cookie,
        )
        return same and self.after.genid == self.before.genid + self.count


def generation_from_json(value: object) -> RulesetGeneration | None:
    """The generation from its JSON form (None for null); ValueError when malformed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("generation is not an object")
    try:
        return RulesetGeneration(
            str(value["boot_id"]), int(str(value["netns_cookie"])), int(str(value["genid"]))
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"damaged generation: {error}") from None


def read_generation() -> RulesetGeneration | None:
    """The live generation, or None where it cannot be read (not Linux, no CAP_NET_ADMIN ...)."""
    try:
        boot_id = BOOT_ID.read_text(encoding="ascii").strip()
        with socket.socket() as probe:
            cookie = struct.unpack("=Q", probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))
        genid = _genid()
    except (OSError, AttributeError, struct.error, ValueError):
        return None
    return None if genid is None else RulesetGeneration(boot_id, cookie[0], genid)


def _genid() -> int | None:
    """Ask nf_tables for its generation id over netlink (one request, one answer)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)  # type: ignore[attr-defined,unused-ignore]
    with contextlib.closing(sock):
        sock.settimeout(TIMEOUT_SECONDS)
        sock.bind((0, 0))
        body = NFGEN_HEADER.pack(socket.AF_UNSPEC, 0, 0)
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind, NLM_F_REQUEST, 1, 0)
        sock.send(header + body)
        data = sock.recv(RECV_BYTES)
    length, answer = NLMSG_HEADER.unpack_from(data)[:2]
    if answer != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
        return None  # NLMSG_ERROR (EPERM, ...) or something unexpected
    offset = NLMSG_HEADER.size + NFGEN_HEADER.size
    while offset + ATTR_HEADER.size <= min(length, len(data)):
        size, kind = ATTR_HEADER.unpack_from(data, offset)
        if size < ATTR_HEADER.size:
            return None
        if kind & NLA_TYPE_MASK == NFTA_GEN_ID:
            return int(struct.unpack_from(">I", data, offset + ATTR_HEADER.size)[0])
        offset += (size + 3) & ~3
    return None
